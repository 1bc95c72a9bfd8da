# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every chain name we build, built here, with the kernel's limits checked here.

Names follow libvirt's so a host can move between libvirtd and this collection.
"""

from __future__ import annotations

import re

from ..errors import DeviceNameError
from ..language.devices import TAP_PREFIX, check_device

# iptables: XT_EXTENSION_MAXNAMELEN is 29 with the terminator; ebtables: 32 with it
MAX_CHAIN = {"eb": 31, "ip4": 28, "ip6": 28}

# global nwfilter chains in the iptables/ip6tables filter table
NWF_IN = "libvirt-in"
NWF_OUT = "libvirt-out"
NWF_IN_POST = "libvirt-in-post"
NWF_HOST_IN = "libvirt-host-in"
NWF_GLOBAL = (NWF_IN, NWF_OUT, NWF_IN_POST, NWF_HOST_IN)

# virtual network chains (libvirt >= 5.1)
NET_FILTER_CHAINS = ("LIBVIRT_INP", "LIBVIRT_OUT", "LIBVIRT_FWX", "LIBVIRT_FWI", "LIBVIRT_FWO")
NET_PRT = "LIBVIRT_PRT"

# our one fixed rule in a built-in chain (guest_nic_filter drop_unbound_taps): it jumps to no chain
# of ours, so it is recognised by its exact text; a wildcard is safe here because we wrote it
UNBOUND_TAP_DROP = "-i %s+ -j DROP" % TAP_PREFIX
FIXED_HOOKS = frozenset({("eb", "nat", "PREROUTING", UNBOUND_TAP_DROP)})

_OWNED = {
    "eb": re.compile(r"^(libvirt-[IOJP]-[A-Za-z0-9_.-]{1,15}|[IOJP]-[A-Za-z0-9_.-]{1,15}-[A-Za-z0-9_.:-]{1,12})\Z"),
    "ip": re.compile(r"^(F[IOJP]-[A-Za-z0-9_.-]{1,15}|H[IJ]-[A-Za-z0-9_.-]{1,15}|libvirt-(in|out|in-post|host-in))\Z"),
}


def _checked(tool, name):
    if len(name) > MAX_CHAIN[tool]:
        raise DeviceNameError(
            "chain name %r is %d characters, more than the %d %s allows: use a shorter device "
            "name or chain suffix" % (name, len(name), MAX_CHAIN[tool], "ebtables" if tool == "eb" else "iptables"),
            chain=name,
        )
    return name


def eb_root(direction, dev):
    """ebtables root chain of a NIC: 'I' = from the guest, 'O' = to the guest."""
    return _checked("eb", "libvirt-%s-%s" % (direction, check_device(dev)))


def eb_sub(direction, dev, suffix):
    return _checked("eb", "%s-%s-%s" % (direction, check_device(dev), suffix))


def ipt_nic(kind, dev, tool="ip4"):
    """Per-NIC iptables chain: kind is 'FI' (from guest), 'FO' (to guest) or 'HI' (guest to host)."""
    return _checked(tool, "%s-%s" % (kind, check_device(dev)))


def is_owned_chain(tool, table, name, manage_networks=True):
    """True for a chain we own.  Network chains count only where the host store manages networks."""
    if tool == "eb":
        return table == "nat" and bool(_OWNED["eb"].match(name))
    if table == "filter":
        if _OWNED["ip"].match(name):
            return True
        return manage_networks and name in NET_FILTER_CHAINS
    if table in ("nat", "mangle"):
        return manage_networks and name == NET_PRT
    return False


def device_of_chain(name):
    """The NIC a per-NIC chain belongs to, or None for global chains."""
    match = re.match(r"^(?:libvirt-[IOJP]-|F[IOJP]-|H[IJ]-)([A-Za-z0-9_.-]+)\Z", name)
    if match:
        return match.group(1)
    match = re.match(r"^[IOJP]-([A-Za-z0-9_.-]{1,15}?)-(?:mac|vlan|stp|arp|rarp|ipv4|ipv6)[A-Za-z0-9_.:-]*\Z", name)
    return match.group(1) if match else None


def is_fixed_hook(tool, table, builtin, rule):
    """True for a rule in a built-in chain that is ours although it jumps to none of our chains."""
    return (tool, table, builtin, rule) in FIXED_HOOKS
