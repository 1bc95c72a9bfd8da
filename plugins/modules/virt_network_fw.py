#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: virt_network_fw
short_description: Manage the firewall rules around a libvirt virtual network's bridge
version_added: "0.1.0"
description:
  - Declares the iptables/ip6tables rules libvirt's virtual network driver (5.1 and later) puts around
    a bridge network, in its private chains C(LIBVIRT_INP), C(LIBVIRT_OUT), C(LIBVIRT_FWX),
    C(LIBVIRT_FWI), C(LIBVIRT_FWO) (filter table) and C(LIBVIRT_PRT) (nat and mangle tables).
  - Modes C(isolated), C(nat), C(route) and C(open) behave as libvirt's do. Several networks coexist;
    removing one leaves the others and everything not owned by this collection untouched.
  - The network is stored in O(config_dir) as libvirt C(<network>) XML so the host can re-apply it.
  - Once a network is managed on a host, the C(LIBVIRT_*) chains belong to this collection; do not let
    libvirtd's network driver manage the same host's firewall at the same time.
options:
  name:
    description:
      - Name of the network. Defaults to the bridge name.
      - With O(state=absent), O(name) alone (or O(bridge) alone) says which stored network to remove.
    type: str
  bridge:
    description: The bridge device, e.g. C(virbr0). Required with O(state=present) unless O(network_xml) is given.
    type: str
  mode:
    description:
      - Forward mode. When not given, V(nat) (with O(network_xml), its C(<forward>) says).
    type: str
    choices: [isolated, nat, route, open]
  ipv4:
    description:
      - The bridge's IPv4 address with prefix, e.g. C(192.168.122.1/24), or a list of them.
      - Like libvirt, each address gets its own forwarding and NAT rules; DHCP is served on the first
        address with room for a range.
    type: list
    elements: str
  ipv6:
    description: The bridge's IPv6 address with prefix, e.g. C(fd00:122::1/64), or a list of them.
    type: list
    elements: str
  forward_dev:
    description: Only forward through this uplink device (libvirt's C(<forward dev=...>)).
    type: str
  dhcp:
    description:
      - The network serves DHCP on its IPv4 address (libvirt's C(<dhcp>) with a range), which adds
        libvirt's checksum fix for DHCP replies.
      - Like libvirt, the host accepts DHCP (udp/tcp 67, DHCPv6 udp 547) and DNS from the guests whatever
        this says; a C(<network>) without C(<dhcp>) is libvirt's default, hence V(false) when not given.
    type: bool
  dns:
    description:
      - The network runs its DNS server (libvirt's C(<dns enable=...>)); kept in the stored network XML.
      - Like libvirt, the host accepts DNS (udp/tcp 53) from the guests either way.
      - V(true) when not given.
    type: bool
  tftp:
    description: Accept TFTP from guests to the host. V(false) when not given.
    type: bool
  nat_ports:
    description: Source port range for masqueraded tcp/udp traffic, C([start, end]); C([1024, 65535]) when not given.
    type: list
    elements: int
  nat_address:
    description: SNAT to this address range instead of masquerading, C([start, end]) (end optional).
    type: list
    elements: str
  nat_ipv6:
    description: Masquerade IPv6 too; otherwise IPv6 is routed. V(false) when not given.
    type: bool
  network_xml:
    description:
      - A libvirt C(<network>) document as C(virsh net-dumpxml) prints it.
      - It describes the whole network, so it cannot be combined with O(bridge), O(mode), O(ipv4), O(ipv6),
        O(forward_dev), O(dhcp), O(dns), O(tftp), O(nat_ports), O(nat_address) or O(nat_ipv6); O(name), if
        given, must be the document's name.
      - When the host has libvirt's schemas (C(/usr/share/libvirt/schemas)), the document must validate against
        C(network.rng).
    type: str
  state:
    description:
      - V(present) adds or updates the network's rules; V(absent) removes them.
      - V(rendered) returns the restore payloads for this network alone without touching the host.
      - V(gathered) returns the live C(LIBVIRT_*) chains.
    type: str
    choices: [present, absent, rendered, gathered]
    default: present
extends_documentation_fragment:
  - hypervisor.firewall.common
  - hypervisor.firewall.common.backend
  - hypervisor.firewall.common.attributes
notes:
  - nwfilter's chains stand before the network chains in FORWARD. Unlike libvirt, the final accept in
    C(libvirt-in-post) only matches bridged traffic, so a guest filter never lets routed traffic escape
    an isolated network.
  - If firewalld runs (C(firewall-cmd --state)), the module puts the bridge in firewalld's C(libvirt) zone
    (C(libvirt-routed) for routed networks, none for mode V(open)) as libvirt does, in the runtime and the
    permanent configuration, so a firewalld reload, restart or a reboot keeps it there; removing the network
    takes the bridge out of that zone. The zones are libvirt's (its packages install them); without them
    the module warns with the fix and leaves the bridge's zone alone. Check mode reports the move without
    making it.
seealso:
  - module: hypervisor.firewall.guest_nic_filter
author:
  - hypervisor.firewall contributors (@hypervisor-firewall)
"""

EXAMPLES = r"""
- name: The default NAT network (named after its bridge), serving DHCP like libvirt's default
  hypervisor.firewall.virt_network_fw:
    bridge: virbr0
    mode: nat
    ipv4: 192.168.122.1/24
    dhcp: true

- name: A routed network with IPv6, only via bond0
  hypervisor.firewall.virt_network_fw:
    name: routed
    bridge: virbr1
    mode: route
    ipv4: 10.20.0.1/24
    ipv6: fd00:20::1/64
    forward_dev: bond0

- name: Take a network as libvirt defines it
  hypervisor.firewall.virt_network_fw:
    network_xml: "{{ lookup('ansible.builtin.file', 'default.xml') }}"

- name: Remove a network's rules
  hypervisor.firewall.virt_network_fw:
    name: routed
    state: absent
"""

RETURN = r"""
network:
  description: The network as stored (its options, C(name) filled in); V(null) after removal.
  returned: when state is present or absent
  type: dict
  sample: {"name": "default", "bridge": "virbr0", "mode": "nat", "ipv4": ["192.168.122.1/24"], "ipv6": [],
           "forward_dev": null, "dhcp": true, "dns": true, "tftp": false, "nat_ports": [1024, 65535],
           "nat_address": null, "nat_ipv6": false}
firewalld_zone:
  description:
    - The firewalld zone the bridge is in (or, in check mode, would be put in) when firewalld runs;
      V(null) without firewalld, for mode V(open), when libvirt's zone is missing, and after removal.
  returned: when state is present or absent
  type: str
  sample: libvirt
changed_chains:
  description: Owned chains the change rewrote or deleted (or would, in check mode).
  returned: when state is present or absent
  type: list
  elements: str
rebuilt_devices:
  description:
    - Guest NICs whose chains the run rewrote (or would rewrite in check mode). Usually empty; a run
      converges the whole host, so NIC chains that drifted are rebuilt too.
  returned: when state is present or absent
  type: list
  elements: str
rendered:
  description:
    - Restore payloads by tool (C(iptables), C(ip6tables)); with the V(nftables) backend, the
      C(nft -f) text under C(nft) instead.
  returned: when state is rendered
  type: dict
gathered:
  description:
    - The live C(LIBVIRT_*) chains of every managed network, by C(TOOL TABLE CHAIN), each a list of its
      rules in order with the kernel's counters (C(*-save -c); reading never zeroes them).
    - Empty on a host whose store manages no network. Only the C(xtables) backend's chains are listed.
  returned: when state is gathered
  type: dict
  sample:
    iptables filter LIBVIRT_FWX:
      - {rule: "-i virbr0 -o virbr0 -j ACCEPT", packets: 812, bytes: 68208}
    iptables nat LIBVIRT_PRT:
      - {rule: "-s 192.168.122.0/24 -d 224.0.0.0/24 -j RETURN", packets: 4, bytes: 160}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hypervisor.firewall.plugins.module_utils._module import (
    common_argument_spec,
    run_action,
)


NETWORK_OPTIONS = ("bridge", "mode", "ipv4", "ipv6", "forward_dev", "dhcp", "dns", "tftp", "nat_ports", "nat_address",
                   "nat_ipv6")


def main():
    module = AnsibleModule(
        argument_spec=common_argument_spec(
            name=dict(type="str"),
            bridge=dict(type="str"),
            mode=dict(type="str", choices=["isolated", "nat", "route", "open"]),
            ipv4=dict(type="list", elements="str"),
            ipv6=dict(type="list", elements="str"),
            forward_dev=dict(type="str"),
            dhcp=dict(type="bool"),
            dns=dict(type="bool"),
            tftp=dict(type="bool"),
            nat_ports=dict(type="list", elements="int"),
            nat_address=dict(type="list", elements="str"),
            nat_ipv6=dict(type="bool"),
            network_xml=dict(type="str"),
            state=dict(type="str", choices=["present", "absent", "rendered", "gathered"], default="present"),
        ),
        # the document says everything about the network: an option next to it would be ignored
        mutually_exclusive=[("network_xml", option) for option in NETWORK_OPTIONS],
        # gathered reads every LIBVIRT_* chain: it names no network
        required_if=[("state", state, ("network_xml", "bridge", "name"), True)
                     for state in ("present", "absent", "rendered")],
        supports_check_mode=True,
    )
    run_action(module, "virt_network_fw", module.check_mode)


if __name__ == "__main__":
    main()
