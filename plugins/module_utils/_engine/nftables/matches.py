# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nft forms of the nwfilter attributes that are more than ``expr value``, as nft 1.0.6 prints them.

Each function takes canonical attribute values (see language.schema) and returns one or more
statements of the writer (``Match``, ``Masked``, ``TcpFlags``, ...) whose text is the form
``nft list`` prints back, so that desired and live rules compare equal.  The name tables are nft 1.0.6's own (found by loading every value into a
table and listing it); values without a name are printed as numbers.

Where nft prints a match in a form that does not load back with the same meaning, the match
is written in a form that does (see ``tos``).  Where nftables has no form at all, the caller
raises ``NoNftForm`` with the reason, and the error says so.
"""

from __future__ import annotations

import ipaddress

from .writer import CountUpdate, Exists, Masked, Match, Set, TcpFlags

DSCP_NAMES = {0: "cs0", 1: "lephb", 8: "cs1", 10: "af11", 12: "af12", 14: "af13", 16: "cs2", 18: "af21", 20: "af22",
              22: "af23", 24: "cs3", 26: "af31", 28: "af32", 30: "af33", 32: "cs4", 34: "af41", 36: "af42", 38: "af43",
              40: "cs5", 44: "va", 46: "ef", 48: "cs6", 56: "cs7"}
ICMP_TYPES = {0: "echo-reply", 3: "destination-unreachable", 4: "source-quench", 5: "redirect", 8: "echo-request",
              9: "router-advertisement", 10: "router-solicitation", 11: "time-exceeded", 12: "parameter-problem",
              13: "timestamp-request", 14: "timestamp-reply", 15: "info-request", 16: "info-reply",
              17: "address-mask-request", 18: "address-mask-reply"}
ICMPV6_TYPES = {1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem",
                128: "echo-request", 129: "echo-reply", 130: "mld-listener-query", 131: "mld-listener-report",
                132: "mld-listener-done", 133: "nd-router-solicit", 134: "nd-router-advert", 135: "nd-neighbor-solicit",
                136: "nd-neighbor-advert", 137: "nd-redirect", 138: "router-renumbering", 141: "ind-neighbor-solicit",
                142: "ind-neighbor-advert", 143: "mld2-listener-report"}
# nft names codes without looking at the type
ICMP_CODES = {0: "net-unreachable", 1: "host-unreachable", 2: "prot-unreachable", 3: "port-unreachable",
              4: "frag-needed", 9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}
ICMPV6_CODES = {0: "no-route", 1: "admin-prohibited", 3: "addr-unreachable", 4: "port-unreachable",
                5: "policy-fail", 6: "reject-route"}
TCP_OPTIONS = {0: "eol", 1: "nop", 2: "maxseg", 3: "window", 4: "sack-perm", 5: "sack", 8: "timestamp",
               19: "md5sig", 30: "mptcp", 34: "fastopen"}
# libvirt's flag order is the bit order; nft prints flags in the same order, lower case
TCP_FLAGS = (("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20))
ARP_PTYPES = {0x0800: "ip", 0x86DD: "ip6", 0x0806: "arp", 0x8100: "8021q", 0x88A8: "8021ad"}

STP_GROUP = "01:80:c2:00:00:00"
# STP fields by libvirt attribute: (bit offset from the start of the Ethernet header, bits, kind).
# The frame is 802.3: 14 bytes of Ethernet header, the LLC header 42 42 03, then the BPDU
# (IEEE 802.1D 9.3: protocol id 2 bytes, version, type, then the configuration fields).
STP_LLC = ("@ll,112,24", "0x424203")
STP_TYPE = (160, 8)
STP_FIELDS = (
    ("flags", 168, 8, "value"), ("root-priority", 176, 16, "range"), ("root-address", 192, 48, "mac"),
    ("root-cost", 240, 32, "range"), ("sender-priority", 272, 16, "range"), ("sender-address", 288, 48, "mac"),
    ("port", 336, 16, "range"), ("age", 352, 16, "range"), ("max-age", 368, 16, "range"),
    ("hello-time", 384, 16, "range"), ("forward-delay", 400, 16, "range"),
)


class NoNftForm(ValueError):
    """An attribute combination nftables (1.0.6, this kernel) cannot express; the message says why."""


def number(value):
    return int(value, 0)


def match(expr, value, negate=False):
    return Match(expr, value, negate)


def _named(names, num):
    return names.get(num, str(num))


def _hex(num):
    return "0x%x" % num


def _raw(lo, hi=None):
    """A raw payload value, always as a range: nft merges adjacent raw equality matches into one
    wider match when it prints them (``@ll,352,16 0x0 @ll,368,16 0x1400`` -> ``@ll,352,32 0x1400``),
    but leaves ranges as written."""
    return "%s-%s" % (_hex(lo), _hex(lo if hi is None else hi))


def masked_mac(expr, addr, mask, negate=False):
    """``ether saddr & MASK == ADDR`` (ADDR with the mask applied), or ``!=``."""
    mask_num = int(mask.replace(":", ""), 16)
    value = int(addr.replace(":", ""), 16) & mask_num
    return Masked(expr, _mac(mask_num), _mac(value), negate)


def _mac(num):
    raw = "%012x" % num
    return ":".join(raw[i:i + 2] for i in range(0, 12, 2))


def ip_range(expr, start, end, negate=False):
    """``ip saddr A-B`` (a range of one address is that address)."""
    lo, hi = ipaddress.ip_address(start), ipaddress.ip_address(end)
    return match(expr, str(lo) if lo == hi else "%s-%s" % (lo, hi), negate)


def dscp(family, value, negate=False):
    """The DSCP field of a layer 3/4 rule (xtables: ``-m dscp --dscp``)."""
    num = number(value)
    return match("%s dscp" % family, DSCP_NAMES.get(num, "0x%02x" % num), negate)


def tos(value, negate=False):
    """libvirt's layer-2 ``dscp``: ebtables ``--ip-tos``, which compares the whole TOS byte.

    nft prints ``@nh,8,8 10`` as ``ip dscp 0x02 ip ecn ect0`` and its negation as two ``!=``
    matches, which load back as a different rule; a one-value range stays raw in both cases."""
    return match("@nh,8,8", _raw(number(value)), negate)


def tcp_flags(spec, negate=False):
    """libvirt ``MASK/FLAGS`` -> ``tcp flags FLAGS / MASK`` as nft prints it."""
    mask_text, flags_text = spec.split("/")
    mask, flags = _flag_bits(mask_text), _flag_bits(flags_text)
    if mask == 0:
        raise NoNftForm("tcp flags '%s' test no bit: nft refuses an empty mask; use a mask of at least one flag"
                        % spec)
    return TcpFlags(_flag_names(flags), _flag_names(mask), negate)


def _flag_bits(text):
    bits = 0
    for name in text.upper().split(","):
        if name == "ALL":
            bits |= 0x3F
        elif name != "NONE":
            bits |= dict(TCP_FLAGS)[name]
    return bits


def _flag_names(bits):
    return tuple(name.lower() for name, bit in TCP_FLAGS if bits & bit)


def tcp_option(value, negate=False):
    """xtables ``--tcp-option N``: the option is present."""
    return Exists("tcp option %s" % _named(TCP_OPTIONS, number(value)), negate)


def icmp(version, kind, code, negate_type=False, negate_code=False):
    """``icmp type T [icmp code C]`` for a layer 3/4 icmp/icmpv6 rule."""
    word, types, codes = ("icmp", ICMP_TYPES, ICMP_CODES) if version == 4 else ("icmpv6", ICMPV6_TYPES, ICMPV6_CODES)
    out = [match("%s type" % word, _named(types, number(kind)), negate_type)]
    if code is not None:
        out.append(match("%s code" % word, _named(codes, number(code)), negate_code))
    return out


def icmpv6_l2(kind, kind_end, code, code_end, negate=False):
    """ebtables ``--ip6-icmp-type T[:T]/C[:C]``: defaults as libvirt's driver fills them in (no type:
    0-255; no code: 0-255; a missing end: the start)."""
    lo = number(kind) if kind is not None else 0
    hi = number(kind_end) if kind_end is not None else (lo if kind is not None else 255)
    clo = number(code) if code is not None else 0
    chi = number(code_end) if code_end is not None else (clo if code is not None else 255)
    if negate and (lo, hi) != (0, 255) and (clo, chi) != (0, 255):
        raise NoNftForm("a negated ICMPv6 type and code range in one layer-2 rule means 'type or code differs', "
                        "which one nft rule cannot say; split the rule into one on the type and one on the code")
    out = []
    if (lo, hi) != (0, 255) or (clo, chi) == (0, 255):
        out.append(match("icmpv6 type", _named(ICMPV6_TYPES, lo) if lo == hi else "%d-%d" % (lo, hi), negate))
    if (clo, chi) != (0, 255):
        out.append(match("icmpv6 code", _named(ICMPV6_CODES, clo) if clo == chi else "%d-%d" % (clo, chi), negate))
    return out


def arp_htype(value, negate=False, rarp=False):
    num = number(value)
    if rarp:
        return match("@nh,0,16", _raw(num), negate)
    return match("arp htype", str(num), negate)


def arp_ptype(value, negate=False, rarp=False):
    num = number(value)
    if rarp:
        return match("@nh,16,16", _raw(num), negate)
    return match("arp ptype", ARP_PTYPES.get(num, "0x%04x" % num), negate)


def stp(attrs):
    """The payload matches of an stp rule: {attribute: (value, negated)} -> statement texts.

    Configuration fields are only defined for configuration BPDUs, so a rule on any of them
    also requires type 0 (configuration), unless the rule names a type itself."""
    out = [match(*STP_LLC)]
    config = [name for name, _offset, _bits, _kind in STP_FIELDS if name in attrs]
    if "type" in attrs:
        value, negate = attrs["type"]
        out.append(match("@ll,%d,%d" % STP_TYPE, _raw(number(value)), negate))
    elif config:
        out.append(match("@ll,%d,%d" % STP_TYPE, _raw(0)))
    for name, offset, bits, kind in STP_FIELDS:
        if name not in attrs:
            continue
        value, negate = attrs[name]
        expr = "@ll,%d,%d" % (offset, bits)
        if kind == "mac":
            mask = attrs.get(name + "-mask", ("ff:ff:ff:ff:ff:ff", False))[0]
            out.append(_raw_masked(expr, value, mask, negate))
        elif kind == "range":
            hi = attrs.get(name + "-hi", (value, False))[0]
            out.append(match(expr, _raw(number(value), number(hi)), negate))
        else:
            out.append(match(expr, _raw(number(value)), negate))
    return out


def _raw_masked(expr, addr, mask, negate):
    mask_num = int(mask.replace(":", ""), 16)
    value = int(addr.replace(":", ""), 16) & mask_num
    if mask_num == (1 << 48) - 1:
        return match(expr, _raw(value), negate)
    return Masked(expr, _hex(mask_num), _hex(value), negate)


def connlimit(set_name, version, limit, negate=False):
    """xtables ``-m connlimit --connlimit-above N --connlimit-mask 32|128 --connlimit-saddr``:
    connections counted per source address (and per port: the set is keyed by the port's mark)."""
    return CountUpdate(set_name, ("meta mark", "%s saddr" % ("ip" if version == 4 else "ip6")), number(limit),
                       over=not negate)


def connlimit_set(name, version):
    """The dynamic set a connlimit rule counts in (declared as nft prints it)."""
    return Set(name, ("mark", "ipv4_addr" if version == 4 else "ipv6_addr"), size=65535, flags=("dynamic",))
