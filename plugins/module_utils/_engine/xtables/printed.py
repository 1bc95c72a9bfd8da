# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Values in the exact form ``ebtables-save`` / ``iptables-save`` print them back.

Desired and live rules are compared as strings, so every value the compiler emits is first turned
into its printed form here.  The name tables are the ones the tools ship with (Debian 12,
iptables 1.8.9, netbase): ethertype names from /etc/ethertypes, IP protocol names from
/etc/protocols, ICMPv6 type/code names built into ebtables' ip6 match.
"""

from __future__ import annotations

import re

from ..language.values import address_text, ip_network, mac_int, mac_str, number, port_bounds

_ETHERTYPES = {
    0x0800: "IPv4", 0x0805: "X25", 0x0806: "ARP", 0x0808: "FR_ARP", 0x08FF: "BPQ", 0x22F3: "TRILL",
    0x22F4: "L2-IS-IS", 0x6558: "TEB", 0x6559: "RAW_FR", 0x8035: "RARP", 0x809B: "ATALK",
    0x80F3: "AARP", 0x8100: "802_1Q", 0x8137: "IPX", 0x8191: "NetBEUI", 0x86DD: "IPv6",
    0x880B: "PPP", 0x8847: "MPLS", 0x8848: "MPLS_MULTI", 0x884C: "ATMMPOA", 0x8863: "PPP_DISC",
    0x8864: "PPP_SES", 0x8884: "ATMFATE", 0x888E: "EAPOL", 0x88A8: "S-TAG", 0x88C7: "EAP_PREAUTH",
    0x88CC: "LLDP", 0x88E5: "MACSEC", 0x88E7: "PBB", 0x88F5: "MVRP", 0x88F7: "PTP", 0x8906: "FCOE",
    0x8914: "FIP", 0x8915: "ROCE", 0xA0ED: "LoWPAN",
}

# ebtables' ip6 match prints a (type, code range) it has a name for by that name
_ICMPV6_NAMES = {
    (1, 0, 255): "destination-unreachable", (1, 0, 0): "no-route",
    (1, 1, 1): "communication-prohibited", (1, 2, 2): "beyond-scope",
    (1, 3, 3): "address-unreachable", (1, 4, 4): "port-unreachable", (1, 5, 5): "failed-policy",
    (1, 6, 6): "reject-route", (2, 0, 255): "packet-too-big", (3, 0, 255): "time-exceeded",
    (3, 0, 0): "ttl-zero-during-transit", (3, 1, 1): "ttl-zero-during-reassembly",
    (4, 0, 255): "parameter-problem", (4, 0, 0): "bad-header", (4, 1, 1): "unknown-header-type",
    (4, 2, 2): "unknown-option", (128, 0, 255): "echo-request", (129, 0, 255): "echo-reply",
    (133, 0, 255): "router-solicitation", (134, 0, 255): "router-advertisement",
    (135, 0, 255): "neighbour-solicitation", (136, 0, 255): "neighbour-advertisement",
    (137, 0, 255): "redirect",
}

ARP_OPCODES = {
    1: "Request", 2: "Reply", 3: "Request_Reverse", 4: "Reply_Reverse", 5: "DRARP_Request",
    6: "DRARP_Reply", 7: "DRARP_Error", 8: "InARP_Request", 9: "ARP_NAK",
}

STP_TYPES = {0: "config", 128: "tcn"}
STP_FLAGS = {1: "topology-change", 128: "topology-change-ack"}

# ebtables prints these (address, mask) pairs by name
_MAC_NAMES = {
    ("01:80:c2:00:00:00", "ff:ff:ff:ff:ff:ff"): "BGA",
    ("ff:ff:ff:ff:ff:ff", "ff:ff:ff:ff:ff:ff"): "Broadcast",
    ("01:00:00:00:00:00", "01:00:00:00:00:00"): "Multicast",
    ("00:00:00:00:00:00", "01:00:00:00:00:00"): "Unicast",
}

TCP_FLAG_BITS = (("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20))

_NO_QUOTE = re.compile(r"^[A-Za-z0-9_-]+\Z")


# ebtables-nft prints an exact 0x0600 match by this name (see written_rule)
LENGTH = "Length"


def ethertype(value):
    num = number(value)
    if num == 0x0600:
        return LENGTH
    return _ETHERTYPES.get(num, "0x%x" % num)


def eb_mac(addr, mask=None, named=True):
    """A MAC with optional mask: masked address, full masks dropped, well-known pairs named.

    Only ``-s``/``-d`` print the names (BGA, Broadcast, ...); the arp and stp matches print
    addresses as numbers (``named=False``)."""
    full = (1 << 48) - 1
    mask_num = full if mask is None else mac_int(mask)
    addr_num = mac_int(addr) & mask_num
    key = (mac_str(addr_num), mac_str(mask_num))
    if named and key in _MAC_NAMES:
        return _MAC_NAMES[key]
    if mask_num == full:
        return key[0]
    return "%s/%s" % key


def eb_ip(addr, prefix=None, version=4):
    """ebtables: masked network, host prefix dropped."""
    net = ip_network(addr, prefix if prefix is not None else (32 if version == 4 else 128), version)
    if net.prefixlen == net.max_prefixlen:
        return address_text(net.network_address)
    return "%s/%d" % (address_text(net.network_address), net.prefixlen)


def ipt_ip(addr, prefix=None, version=4):
    """iptables: masked network, always with the prefix length."""
    net = ip_network(addr, prefix if prefix is not None else (32 if version == 4 else 128), version)
    return "%s/%d" % (address_text(net.network_address), net.prefixlen)


def ipt_range(start, end=None, version=4):
    first = ip_network(start, 32 if version == 4 else 128, version).network_address
    last = first if end is None else ip_network(end, 32 if version == 4 else 128, version).network_address
    return "%s-%s" % (address_text(first), address_text(last))


def port_range(start, end=None):
    """Both tools print a single port for ``N:N``."""
    first, last = port_bounds(start, end)
    return str(first) if first == last else "%d:%d" % (first, last)


def ipt_mac(addr):
    """iptables' mac match prints the address in lower case."""
    return mac_str(mac_int(addr))


def icmp_type(base, type_num, code=None):
    """iptables' ``--icmp-type``/``--icmpv6-type`` value: ``T`` or ``T/C``.  ICMP type 255 is
    iptables' wildcard: it matches every type and code, and prints as ``any`` whatever code was
    given (ip6tables has no such wildcard)."""
    if base == "icmp" and type_num == 255:
        return "any"
    return str(type_num) if code is None else "%d/%d" % (type_num, code)


def icmpv6_eb(type_lo, type_hi, code_lo, code_hi):
    """A named (type, code range) by its name, else ``T[:T]/C[:C]`` with single values collapsed."""
    if type_lo == type_hi:
        name = _ICMPV6_NAMES.get((type_lo, code_lo, code_hi))
        if name:
            return name
        text = str(type_lo)
    else:
        text = "%d:%d" % (type_lo, type_hi)
    if code_lo == code_hi:
        return "%s/%d" % (text, code_lo)
    return "%s/%d:%d" % (text, code_lo, code_hi)


def tcp_flags(spec):
    """``MASK/FLAGS`` (names, ALL, NONE) -> iptables' printed ``MASK FLAGS`` pair."""
    mask, flags = spec.split("/")
    return "%s %s" % (_tcp_flag_list(mask), _tcp_flag_list(flags))


def _tcp_flag_list(text):
    bits = 0
    for name in text.upper().split(","):
        if name == "ALL":
            bits |= 0x3F
        elif name != "NONE":
            bits |= dict(TCP_FLAG_BITS)[name]
    names = [name for name, bit in TCP_FLAG_BITS if bits & bit]
    return ",".join(names) if names else "NONE"


def quote(value):
    """A string argument the way iptables-save prints it (xtables_save_string)."""
    if _NO_QUOTE.match(value):
        return value
    return '"%s"' % re.sub(r'(["\\\'])', r"\\\1", value)


# printed forms the tool reads back as a different rule: what the payload says instead
_WRITTEN = {
    # ebtables-nft prints an exact ethertype 0x0600 as 'Length', which it parses as "below 0x0600"
    # (802.3 length frames); 0x600 is the only value whose printed name means something else
    "eb": (("-p Length ", "-p 0x600 "),),
}


def written_rule(tool, rule):
    """The rule text to restore for a rule in printed form (the same text unless the tool would
    read its own printed form back as another rule)."""
    for printed, written in _WRITTEN.get(tool, ()):
        if rule.startswith(printed):
            return written + rule[len(printed):]
    return rule
