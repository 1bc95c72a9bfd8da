# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Documentation shared by every module of hypervisor.firewall."""

from __future__ import annotations


class ModuleDocFragment:
    """Shared options (common), attributes of changing modules (common.attributes) and of
    read-only modules (common.info_attributes)."""

    DOCUMENTATION = r"""
requirements:
  - On the hypervisor, Python 3.8 or later (every Python ansible-core 2.19 can target; the collection's
    tests compile and import the modules under 3.8 to 3.13)
  - On the hypervisor, the Python libraries C(lxml) and C(netaddr) (Debian, Ubuntu, EL and Fedora packages
    C(python3-lxml) and C(python3-netaddr)); a module names every missing one in one message
  - On the hypervisor, the tools of the backend in use, with their C(-save) and C(-restore) programs
    C(iptables), C(ip6tables) and C(ebtables) (backend C(xtables)); C(nft) (backend C(nftables))
  - "Root on the hypervisor (C(become: true)) for every state that reads or writes the kernel or the store;
    a module that fails for want of privilege says so. C(state=rendered) needs neither root nor the tools"
options:
  config_dir:
    description:
      - Directory of the host store that holds the firewall definitions.
      - It contains C(filters/) (nwfilter XML documents), C(bindings/) (filters bound to guest
        interfaces) and C(networks/) (virtual networks).
      - On hosts that share one filesystem, for example several network namespaces on one
        machine, give each host its own directory.
    type: path
    default: /etc/hypervisor-firewall
  lock_file:
    description:
      - File locked with C(flock) across read, plan and apply, so that two writers on one host
        never interleave.
      - Hosts that share one filesystem need one lock file each.
      - Its directory must be writable by its owner (root) alone, and the file is never opened through a
        symbolic link nor used when another user owns it; otherwise the task fails and names the fix.
    type: path
    default: /run/hypervisor-firewall/lock
  lock_timeout:
    description:
      - Seconds to wait for O(lock_file).
      - The task fails when the lock is still held after this many seconds.
    type: int
    default: 30
"""

    BACKEND = r"""
options:
  backend:
    description:
      - Which firewall backend filters guest NICs on this host.
      - V(xtables) compiles each NIC's filters into ebtables, iptables and ip6tables chains, one
        copy per NIC, as libvirt does.
      - V(nftables) compiles them into one nftables table C(bridge hfw_nwfilter) whose chains are
        shared by all NICs with the same filters; per-NIC values (MAC, IP list) live in sets keyed
        by interface, and packets reach their chain through a verdict map. Layer 3/4 rules go to
        C(inet hfw_nwfilter), told apart by a per-port packet mark, their host addresses in sets
        keyed by that mark. Every attribute of libvirt's ebiptables driver has an nftables form except
        C(ipset) and a few combinations (for example C(gratuitous) ARP with no fixed address); those
        fail with a clear message; see O(backend_fallback).
      - The value is kept in the store (C(config_dir/backend)) as the host's default; when not
        given, the host's default applies, else V(xtables).
      - Switching removes the other backend's NIC rules in the same run.
    type: str
    choices: [xtables, nftables]
  backend_fallback:
    description:
      - With O(backend=nftables), what to do when the nftables backend cannot filter this host, because a
        binding's filter uses a rule nftables cannot express (the error names it), or the kernel
        lacks a feature the nftables tables need (the probe fails), or C(nft) is missing.
      - V(false) fails the task with that message.
      - V(true) filters the whole host (every NIC and network) with V(xtables) for this run instead
        and warns why. The stored backend stays V(nftables), so every later run tries nftables again
        and warns again until the cause is fixed, so a fixed cause needs no further change.
      - Kept in the store next to O(backend), so the re-apply command and the qemu hook fall back
        the same way; when not given, the stored choice applies, else V(false).
    type: bool
"""

    ATTRIBUTES = r"""
attributes:
  check_mode:
    description: Computes the plan without changing the kernel or the store; C(changed) is computed
      the same way as in a real run.
    support: full
  diff_mode:
    description: Returns the before and after text of the chains the collection owns, one entry
      per tool and table.
    support: full
  platform:
    description: Runs on Linux hypervisors with the iptables, ip6tables and ebtables tools.
    support: full
    platforms: linux
"""

    INFO_ATTRIBUTES = r"""
attributes:
  check_mode:
    description: Reads only, so it runs unchanged in check mode.
    support: full
  diff_mode:
    description: Changes nothing, so there is no diff to return.
    support: N/A
  platform:
    description: Runs on Linux hypervisors with the iptables, ip6tables and ebtables tools.
    support: full
    platforms: linux
"""
