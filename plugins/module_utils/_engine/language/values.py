# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Canonical values of nwfilter attributes, the same for every backend.

The resolver hands out values as libvirt's XML gives them (decimal, hex, names).  Each backend
prints them its own way (``*-save`` forms in xtables/printed.py, nft forms in the nft compilers);
what a value MEANS (which number, which network, which port range) is decided once, here.
"""

from __future__ import annotations

import ipaddress
import socket

# the names libvirt accepts for <ip protocol=...>, as numbers
LIBVIRT_IP_PROTOCOLS = {
    "tcp": 6, "udp": 17, "udplite": 136, "esp": 50, "ah": 51, "icmp": 1, "igmp": 2, "sctp": 132,
    "icmpv6": 58,
}

# IP protocol names as netbase's /etc/protocols has them (iptables and nft print these)
IP_PROTOCOL_NAMES = {
    0: "ip", 1: "icmp", 2: "igmp", 3: "ggp", 4: "ipencap", 5: "st", 6: "tcp", 8: "egp", 9: "igp",
    12: "pup", 17: "udp", 20: "hmp", 22: "xns-idp", 27: "rdp", 29: "iso-tp4", 33: "dccp", 36: "xtp",
    37: "ddp", 38: "idpr-cmtp", 41: "ipv6", 43: "ipv6-route", 44: "ipv6-frag", 45: "idrp",
    46: "rsvp", 47: "gre", 50: "esp", 51: "ah", 57: "skip", 58: "ipv6-icmp", 59: "ipv6-nonxt",
    60: "ipv6-opts", 73: "rspf", 81: "vmtp", 88: "eigrp", 89: "ospf", 93: "ax.25", 94: "ipip",
    97: "etherip", 98: "encap", 103: "pim", 108: "ipcomp", 112: "vrrp", 115: "l2tp", 124: "isis",
    132: "sctp", 133: "fc", 135: "mobility-header", 136: "udplite", 137: "mpls-in-ip", 138: "manet",
    139: "hip", 140: "shim6", 141: "wesp", 142: "rohc", 143: "ethernet",
}

CT_STATE_ORDER = ("INVALID", "NEW", "RELATED", "ESTABLISHED")
_FULL_MAC = (1 << 48) - 1


def number(value):
    """Parse a canonical decimal string (hex tolerated, as libvirt accepts it)."""
    return int(value, 0)


def ip_protocol_number(value):
    return LIBVIRT_IP_PROTOCOLS[value] if value in LIBVIRT_IP_PROTOCOLS else number(value)


def ip_protocol(value):
    """The protocol's name as the tools print it, else its number."""
    num = ip_protocol_number(value)
    return IP_PROTOCOL_NAMES.get(num, str(num))


def port_bounds(start, end=None):
    """(first, last) port of ``start[:end]``; a single port has first == last."""
    first = number(start)
    return first, first if end is None else number(end)


def mac_int(mac):
    return int(mac.replace(":", ""), 16)


def mac_str(num):
    raw = "%012x" % num
    return ":".join(raw[i:i + 2] for i in range(0, 12, 2))


def masked_mac(addr, mask=None):
    """(masked address, mask) as lower-case text; the mask is None when it covers all 48 bits."""
    mask_num = _FULL_MAC if mask is None else mac_int(mask)
    return mac_str(mac_int(addr) & mask_num), None if mask_num == _FULL_MAC else mac_str(mask_num)


def ip_network(addr, prefix=None, version=4):
    """The network ``addr/prefix`` (host bits cleared); a missing prefix is the host prefix."""
    bits = 32 if version == 4 else 128
    net = ipaddress.ip_network("%s/%s" % (addr, prefix if prefix is not None else bits), strict=False)
    if net.version != version:
        raise ValueError("address %r is not IPv%d" % (addr, version))
    return net


def address_text(address):
    """Addresses as the tools print them (inet_ntop: ``::ffff:10.1.0.0``, not ``::ffff:a01:0``)."""
    if address.version == 4:
        return str(address)
    return socket.inet_ntop(socket.AF_INET6, address.packed)


def ct_states(text):
    """A state list in canonical order, upper case, without duplicates."""
    wanted = {s.strip().upper() for s in text.split(",")}
    return ",".join(s for s in CT_STATE_ORDER if s in wanted)
