# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nwfilter rule vocabulary: protocols, their attributes, datatypes and canonical values.

The attribute tables follow libvirt's (src/conf/nwfilter_conf.c), in libvirt's order, which is
also the order attributes are printed in.  ``canonical_value`` validates one LITERAL value and
returns the single spelling every later stage relies on:

==============  ==========================================================================
datatype        canonical form
==============  ==========================================================================
MAC_ADDR/MASK   ``aa:bb:cc:dd:ee:ff`` lowercase (masks: contiguous ones, as libvirt checks)
IP_ADDR         dotted quad
IP_MASK         prefix length ``'24'`` (input: 0-32 or a dotted mask)
IPV6_ADDR       compressed lowercase
IPV6_MASK       prefix length (input: 0-128 or an IPv6 mask)
UINT8/16/32     decimal (input: decimal or ``0x`` hex)
MAC_PROTOCOLID  decimal ethertype (names arp rarp ipv4 ipv6 vlan; numbers >= 0x600)
VLAN_ENCAP      decimal ethertype (same names; numbers >= 0x3c)
ARP_OPCODE      decimal (names Request .. ARP_NAK = 1 .. 9, case-insensitive)
IP_PROTOCOL     lowercase name when libvirt knows one (also for its number), else decimal
STATE           uppercase comma list in the given order, duplicates dropped; NONE alone
TCP_FLAGS       ``MASK/FLAGS`` in libvirt's bit order FIN,SYN,RST,PSH,ACK,URG; ALL / NONE
BOOLEAN         ``true`` / ``false``
IPSETFLAGS      lowercase ``src,dst`` list, 1 to 6 items
COMMENT         kept as written, at most 255 bytes in UTF-8 (what the kernel keeps)
==============  ==========================================================================

Where we are deliberately stricter than libvirt (each would be a silent surprise there):
numbers must be decimal or ``0x``-prefixed (libvirt also reads bare hex such as ``ff``);
IPv4 addresses must be plain dotted quads (libvirt's getaddrinfo also takes ``10.1``);
booleans other than true/yes/1/false/no/0 are errors (libvirt reads them as false);
comments longer than 255 bytes are errors (libvirt truncates them; the kernel would cut a character).
"""

from __future__ import annotations

import re

from ..errors import FilterXMLError, ToolMissingError

try:
    import netaddr
    NETADDR_IMPORT_ERROR = None
except ImportError as exc:  # the modules report the missing library; importing must not fail
    netaddr = None
    NETADDR_IMPORT_ERROR = str(exc)

MAC_ADDR = "MAC_ADDR"
MAC_MASK = "MAC_MASK"
IP_ADDR = "IP_ADDR"
IP_MASK = "IP_MASK"
IPV6_ADDR = "IPV6_ADDR"
IPV6_MASK = "IPV6_MASK"
UINT8 = "UINT8"
UINT16 = "UINT16"
UINT16_DEC = "UINT16_DEC"  # connlimit-above: libvirt takes decimal only
UINT32 = "UINT32"
PORT = "PORT"
DSCP = "DSCP"
VLAN_ID = "VLAN_ID"
MAC_PROTOCOLID = "MAC_PROTOCOLID"
VLAN_ENCAP = "VLAN_ENCAP"
ARP_OPCODE = "ARP_OPCODE"
IP_PROTOCOL = "IP_PROTOCOL"
STATE = "STATE"
TCP_FLAGS = "TCP_FLAGS"
BOOLEAN = "BOOLEAN"
IPSET_NAME = "IPSET_NAME"
IPSET_FLAGS = "IPSET_FLAGS"
COMMENT = "COMMENT"

# datatypes whose canonical literal is a plain decimal number
NUMERIC_TYPES = frozenset(
    (UINT8, UINT16, UINT16_DEC, UINT32, PORT, DSCP, VLAN_ID, MAC_PROTOCOLID, VLAN_ENCAP,
     ARP_OPCODE, IP_MASK, IPV6_MASK)
)

_L2_MAC = (("srcmacaddr", MAC_ADDR), ("srcmacmask", MAC_MASK),
           ("dstmacaddr", MAC_ADDR), ("dstmacmask", MAC_MASK))
_PORTS = (("srcportstart", PORT), ("srcportend", PORT),
          ("dstportstart", PORT), ("dstportend", PORT))
_COMMENT = (("comment", COMMENT),)


def _l3_common(addr, mask):
    # libvirt's COMMON_IP_PROPS hard-codes the IPv4 type for 'dstipto' even in the *-ipv6
    # tables, so an IPv6 dstipto can never be defined there.  That is a typo, not a design:
    # we type it like its siblings (IPv6 in *-ipv6), so IPv6 ranges work end to end.
    return (("srcmacaddr", MAC_ADDR), ("srcipaddr", addr), ("srcipmask", mask),
            ("dstipaddr", addr), ("dstipmask", mask), ("srcipfrom", addr), ("srcipto", addr),
            ("dstipfrom", addr), ("dstipto", addr), ("dscp", DSCP),
            ("connlimit-above", UINT16_DEC), ("state", STATE), ("ipset", IPSET_NAME),
            ("ipsetflags", IPSET_FLAGS))


_V4 = _l3_common(IP_ADDR, IP_MASK)
_V6 = _l3_common(IPV6_ADDR, IPV6_MASK)
_ICMP = (("type", UINT8), ("code", UINT8))
_STP = (
    ("srcmacaddr", MAC_ADDR), ("srcmacmask", MAC_MASK), ("type", UINT8), ("flags", UINT8),
    ("root-priority", UINT16), ("root-priority-hi", UINT16), ("root-address", MAC_ADDR),
    ("root-address-mask", MAC_MASK), ("root-cost", UINT32), ("root-cost-hi", UINT32),
    ("sender-priority", UINT16), ("sender-priority-hi", UINT16), ("sender-address", MAC_ADDR),
    ("sender-address-mask", MAC_MASK), ("port", UINT16), ("port-hi", UINT16), ("age", UINT16),
    ("age-hi", UINT16), ("max-age", UINT16), ("max-age-hi", UINT16), ("hello-time", UINT16),
    ("hello-time-hi", UINT16), ("forward-delay", UINT16), ("forward-delay-hi", UINT16),
)
_ARP = _L2_MAC + (
    ("hwtype", UINT16), ("protocoltype", UINT16), ("opcode", ARP_OPCODE),
    ("arpsrcmacaddr", MAC_ADDR), ("arpdstmacaddr", MAC_ADDR), ("arpsrcipaddr", IP_ADDR),
    ("arpsrcipmask", IP_MASK), ("arpdstipaddr", IP_ADDR), ("arpdstipmask", IP_MASK),
    ("gratuitous", BOOLEAN),
) + _COMMENT
_IP_HDR = (("protocol", IP_PROTOCOL),) + _PORTS

PROTOCOLS = {
    "mac": _L2_MAC + (("protocolid", MAC_PROTOCOLID),) + _COMMENT,
    "vlan": _L2_MAC + (("vlanid", VLAN_ID), ("encap-protocol", VLAN_ENCAP)) + _COMMENT,
    "stp": _STP + _COMMENT,
    "arp": _ARP,
    "rarp": _ARP,
    "ip": _L2_MAC + (("srcipaddr", IP_ADDR), ("srcipmask", IP_MASK), ("dstipaddr", IP_ADDR),
                     ("dstipmask", IP_MASK)) + _IP_HDR + (("dscp", DSCP),) + _COMMENT,
    "ipv6": _L2_MAC + (("srcipaddr", IPV6_ADDR), ("srcipmask", IPV6_MASK),
                       ("dstipaddr", IPV6_ADDR), ("dstipmask", IPV6_MASK)) + _IP_HDR
    + (("type", UINT8), ("typeend", UINT8), ("code", UINT8), ("codeend", UINT8)) + _COMMENT,
    "tcp": _V4 + _PORTS + (("option", UINT8), ("flags", TCP_FLAGS)) + _COMMENT,
    "udp": _V4 + _PORTS + _COMMENT,
    "udplite": _V4 + _COMMENT,
    "sctp": _V4 + _PORTS + _COMMENT,
    "icmp": _V4 + _ICMP + _COMMENT,
    "igmp": _V4 + _COMMENT,
    "esp": _V4 + _COMMENT,
    "ah": _V4 + _COMMENT,
    "all": _V4 + _COMMENT,
    # libvirt's tcp-ipv6 table has no 'flags' although its documentation lists it; libvirt
    # ignores the attribute there.  We keep the table as libvirt has it, so the parser reports
    # 'flags' on tcp-ipv6 as an ignored attribute (warning, or error when strict).
    "tcp-ipv6": _V6 + _PORTS + (("option", UINT8),) + _COMMENT,
    "udp-ipv6": _V6 + _PORTS + _COMMENT,
    "udplite-ipv6": _V6 + _COMMENT,
    "sctp-ipv6": _V6 + _PORTS + _COMMENT,
    "icmpv6": _V6 + _ICMP + _COMMENT,
    "esp-ipv6": _V6 + _COMMENT,
    "ah-ipv6": _V6 + _COMMENT,
    "all-ipv6": _V6 + _COMMENT,
}

_TYPES = {proto: dict(attrs) for proto, attrs in PROTOCOLS.items()}

L2_PROTOCOLS = ("mac", "vlan", "stp", "arp", "rarp", "ip", "ipv6")
PORT_ATTRS = frozenset(name for name, datatype in _PORTS)

# NB: libvirt's own lookup table lacks 'stp', so a chain 'stp…' without priority gets 0
# there; we use the documented -810 (the brief and formatnwfilter.rst agree on it).
DEFAULT_CHAIN_PRIORITY = {
    "root": 0, "stp": -810, "mac": -800, "vlan": -750, "ipv4": -700, "ipv6": -600,
    "arp": -500, "rarp": -400,
}
CHAIN_PREFIXES = ("mac", "vlan", "stp", "arp", "rarp", "ipv4", "ipv6")
MAX_CHAIN_LEN = 12
MIN_PRIORITY, MAX_PRIORITY = -1000, 1000

_ETHERTYPES = {"arp": 0x0806, "rarp": 0x8035, "ipv4": 0x0800, "ipv6": 0x86DD, "vlan": 0x8100}
ARP_OPCODES = ("Request", "Reply", "Request_Reverse", "Reply_Reverse", "DRARP_Request",
               "DRARP_Reply", "DRARP_Error", "InARP_Request", "ARP_NAK")
IP_PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "udplite": 136, "esp": 50, "ah": 51, "icmp": 1,
                       "igmp": 2, "sctp": 132, "icmpv6": 58}
_IP_PROTOCOL_NAMES = {num: name for name, num in IP_PROTOCOL_NUMBERS.items()}
# protocols for which libvirt accepts port attributes in an ip/ipv6 rule (33 = dccp)
PORT_PROTOCOLS = frozenset(("tcp", "udp", "sctp", "33"))
_STATES = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "NONE")
_TCP_FLAG_BITS = (("FIN", 0x1), ("SYN", 0x2), ("RST", 0x4), ("PSH", 0x8), ("ACK", 0x10),
                  ("URG", 0x20))
_TCP_ALL = 0x3F
# the kernel's xt_comment keeps 256 bytes with the terminating NUL: 255 bytes of UTF-8
MAX_COMMENT_BYTES = 255
MAX_IPSET_NAME_LEN = 31

_CHAIN_CHARS = re.compile(r"^[A-Za-z0-9_.:-]+\Z")
_IPSET_CHARS = re.compile(r"^[A-Za-z0-9_.:+ -]+\Z")
# libvirt (virNWFilterVarAccessParse) allows blanks inside the brackets and after them
_VAR_REF = re.compile(r"^\$([A-Za-z0-9_]+)(?:\[[ \t\r\n]*(@?)[ \t\r\n]*([0-9]+)[ \t\r\n]*\][ \t\r\n]*)?\Z")
MAX_ITERATOR_ID = 1000  # libvirt's VIR_NWFILTER_MAX_ITERID
_MAC = re.compile(r"^[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5}\Z")


def is_l2(protocol):
    """True for protocols handled at layer 2 (ebtables), False for iptables/ip6tables ones."""
    return protocol in L2_PROTOCOLS


def check_chain_name(chain):
    """Return ``chain`` if libvirt accepts it as a filter chain name, else raise."""
    if not isinstance(chain, str) or not chain:
        raise FilterXMLError("chain name must be a non-empty string", chain=chain)
    if len(chain) > MAX_CHAIN_LEN:
        raise FilterXMLError(
            "chain name %r is longer than %d characters" % (chain, MAX_CHAIN_LEN), chain=chain)
    if not _CHAIN_CHARS.match(chain):
        raise FilterXMLError(
            "chain name %r contains characters other than A-Z a-z 0-9 _ . : -" % chain,
            chain=chain)
    if chain == "root" or chain.startswith(CHAIN_PREFIXES):
        return chain
    raise FilterXMLError(
        "invalid chain name %r: use 'root' or a name starting with one of %s"
        % (chain, ", ".join(CHAIN_PREFIXES)), chain=chain)


def chain_prefix(chain):
    """The protocol prefix of a valid chain name ('root' for root)."""
    if chain == "root":
        return "root"
    # longest match first so 'rarp-x' is not taken for 'arp'
    for prefix in sorted(CHAIN_PREFIXES, key=len, reverse=True):
        if chain.startswith(prefix):
            return prefix
    raise FilterXMLError("invalid chain name %r" % chain, chain=chain)


def chain_priority(chain, priority=None):
    """Effective priority of a filter's chain: the explicit one, else the prefix default."""
    if priority is not None:
        return int(priority)
    return DEFAULT_CHAIN_PRIORITY[chain_prefix(check_chain_name(chain))]


def parse_var_ref(value):
    """Split a variable reference: None for a literal, else (name, index, iterator).

    ``$X`` -> (X, None, None); ``$X[2]`` -> (X, 2, None); ``$X[@1]`` -> (X, None, 1).  Blanks
    inside and after the brackets are allowed, as libvirt allows them: ``$X[ @1 ] `` is ``$X[@1]``.
    A value starting with ``$`` that is not a well-formed reference raises FilterXMLError.
    """
    if not isinstance(value, str) or not value.startswith("$"):
        return None
    found = _VAR_REF.match(value)
    if not found:
        raise FilterXMLError(
            "malformed variable reference %r: use $NAME, $NAME[index] or $NAME[@iterator] "
            "(NAME of letters, digits and _)" % value, value=value)
    name, at, number = found.groups()
    if number is None:
        return (name, None, None)
    if not at:
        return (name, int(number), None)
    if int(number) > MAX_ITERATOR_ID:
        raise FilterXMLError("iterator id in %r is above %d: use a smaller one" % (value, MAX_ITERATOR_ID),
                             value=value)
    return (name, None, int(number))


def canonical_var_ref(value):
    """The reference as libvirt prints it back (``$X[ 0]`` -> ``$X[0]``, ``$X[@0]`` -> ``$X``),
    or None for a literal."""
    ref = parse_var_ref(value)
    if ref is None:
        return None
    name, index, iterator = ref
    if index is not None:
        return "$%s[%d]" % (name, index)
    return "$%s[@%d]" % (name, iterator) if iterator else "$" + name


def attr_type(protocol, attr):
    """Datatype of ``attr`` in ``protocol``, or None when libvirt has no such attribute."""
    if protocol not in _TYPES:
        raise FilterXMLError("unknown protocol %r" % protocol, protocol=protocol)
    return _TYPES[protocol].get(attr)


def canonical_value(protocol, attr, value):
    """Validate a literal attribute value and return its canonical string."""
    datatype = attr_type(protocol, attr)
    if datatype is None:
        raise FilterXMLError("<%s>: unknown attribute %r (known: %s)" % (
            protocol, attr, ", ".join(name for name, datatype in PROTOCOLS[protocol])),
            protocol=protocol, attribute=attr)
    if not isinstance(value, str):
        raise _bad(protocol, attr, value, "not a string")
    return _CANON[datatype](protocol, attr, value)


def xml_value(protocol, attr, value):
    """The spelling libvirt prints for a canonical value (names, hex ethertypes)."""
    datatype = attr_type(protocol, attr)
    # isdigit() is also true for '²' and other digits int() refuses
    if parse_var_ref(value) is not None or not (value.isascii() and value.isdigit()):
        return value
    number = int(value)
    if datatype in (MAC_PROTOCOLID, VLAN_ENCAP):
        names = {num: name for name, num in _ETHERTYPES.items()}
        return names.get(number, "0x%x" % number)
    if datatype == ARP_OPCODE and 1 <= number <= len(ARP_OPCODES):
        return ARP_OPCODES[number - 1]
    return value


def _bad(protocol, attr, value, expected):
    return FilterXMLError("<%s %s>: %r is %s" % (protocol, attr, value, expected),
                          protocol=protocol, attribute=attr, value=value)


def _number(protocol, attr, value, low, high, hex_ok=True):
    text = value.strip()
    if re.match(r"^[0-9]+\Z", text):
        number = int(text, 10)
    elif hex_ok and re.match(r"^0[xX][0-9A-Fa-f]+\Z", text):
        number = int(text, 16)
    else:
        raise _bad(protocol, attr, value, "not a number (expected decimal%s in %d-%d)"
                   % (" or 0x hex" if hex_ok else "", low, high))
    if not low <= number <= high:
        raise _bad(protocol, attr, value, "out of range %d-%d" % (low, high))
    return number


def _uint(high, hex_ok=True):
    def canon(protocol, attr, value):
        return str(_number(protocol, attr, value, 0, high, hex_ok))
    return canon


def _mac_bytes(protocol, attr, value):
    if not _MAC.match(value):
        raise _bad(protocol, attr, value, "not a MAC address (expected aa:bb:cc:dd:ee:ff)")
    return [int(part, 16) for part in value.split(":")]


def _contiguous(number, bits):
    """True when ``number`` is some ones followed by zeros in a ``bits``-wide word."""
    inverted = ~number & ((1 << bits) - 1)
    return inverted & (inverted + 1) == 0


def _mac_addr(protocol, attr, value):
    return ":".join("%02x" % byte for byte in _mac_bytes(protocol, attr, value))


def _mac_mask(protocol, attr, value):
    octets = _mac_bytes(protocol, attr, value)
    if not _contiguous(int("".join("%02x" % o for o in octets), 16), 48):
        raise _bad(protocol, attr, value, "not a contiguous MAC mask (ones, then zeros)")
    return ":".join("%02x" % byte for byte in octets)


def _ip_addr(protocol, attr, value, version):
    if netaddr is None:
        raise ToolMissingError("the Python library 'netaddr' is required to check IP addresses (%s): "
                               "install it (pip install netaddr or the python3-netaddr package)"
                               % NETADDR_IMPORT_ERROR, library="netaddr")
    try:
        address = netaddr.IPAddress(value, version, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        family = "IPv4" if version == 4 else "IPv6"
        raise _bad(protocol, attr, value, "not an %s address" % family) from None
    return str(address)


def _ip_mask(protocol, attr, value, version):
    bits = 32 if version == 4 else 128
    if value.strip().isdigit():
        return str(_number(protocol, attr, value, 0, bits, hex_ok=False))
    address = netaddr.IPAddress(_ip_addr(protocol, attr, value, version))
    if not _contiguous(int(address), bits):
        raise _bad(protocol, attr, value, "not a contiguous netmask")
    return str(bits - (~int(address) & ((1 << bits) - 1)).bit_length())


def _ethertype(minimum):
    def canon(protocol, attr, value):
        name = value.strip().lower()
        if name in _ETHERTYPES:
            return str(_ETHERTYPES[name])
        if not re.match(r"^(0[xX][0-9A-Fa-f]+|[0-9]+)\Z", value.strip()):
            raise _bad(protocol, attr, value, "not an ethertype (expected one of %s or a "
                       "number 0x%x-0xffff)" % (", ".join(_ETHERTYPES), minimum))
        return str(_number(protocol, attr, value, minimum, 0xFFFF))
    return canon


def _arp_opcode(protocol, attr, value):
    lowered = {name.lower(): index + 1 for index, name in enumerate(ARP_OPCODES)}
    if value.strip().lower() in lowered:
        return str(lowered[value.strip().lower()])
    if not re.match(r"^(0[xX][0-9A-Fa-f]+|[0-9]+)\Z", value.strip()):
        raise _bad(protocol, attr, value, "not an ARP opcode (expected one of %s or a number)"
                   % ", ".join(ARP_OPCODES))
    return str(_number(protocol, attr, value, 0, 0xFFFF))


def _ip_protocol(protocol, attr, value):
    name = value.strip().lower()
    if name in IP_PROTOCOL_NUMBERS:
        return name
    if not re.match(r"^(0[xX][0-9A-Fa-f]+|[0-9]+)\Z", name):
        raise _bad(protocol, attr, value, "not an IP protocol (expected one of %s or 0-255)"
                   % ", ".join(IP_PROTOCOL_NUMBERS))
    number = _number(protocol, attr, value, 0, 255)
    return _IP_PROTOCOL_NAMES.get(number, str(number))


def _words(protocol, attr, value, allowed, separators=r"[,\s]+"):
    words = [word.upper() for word in re.split(separators, value.strip()) if word]
    unknown = [word for word in words if word not in allowed]
    if unknown or not words:
        raise _bad(protocol, attr, value, "not a list of %s" % ", ".join(allowed))
    return words


def _state(protocol, attr, value):
    words = _words(protocol, attr, value, _STATES)
    if "NONE" in words:
        return "NONE"  # libvirt: NONE wins over every other state
    return ",".join(dict.fromkeys(words))


def _tcp_flag_set(protocol, attr, value, text):
    bit_of = dict(_TCP_FLAG_BITS, ALL=_TCP_ALL, NONE=0)
    bits = 0
    for word in _words(protocol, attr, text, tuple(bit_of), separators=","):
        bits |= bit_of[word]
    if bits == 0:
        return "NONE"
    if bits == _TCP_ALL:
        return "ALL"
    return ",".join(name for name, bit in _TCP_FLAG_BITS if bits & bit)


def _tcp_flags(protocol, attr, value):
    if value.count("/") != 1:
        raise _bad(protocol, attr, value, "not MASK/FLAGS (e.g. 'SYN,ACK/SYN')")
    mask, flags = value.split("/")
    return "%s/%s" % (_tcp_flag_set(protocol, attr, value, mask),
                      _tcp_flag_set(protocol, attr, value, flags))


def _boolean(protocol, attr, value):
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1"):
        return "true"
    if lowered in ("false", "no", "0"):
        return "false"
    raise _bad(protocol, attr, value, "not a boolean (expected true or false)")


def _ipset_name(protocol, attr, value):
    if not value or len(value) > MAX_IPSET_NAME_LEN or not _IPSET_CHARS.match(value):
        raise _bad(protocol, attr, value, "not an ipset name (1-%d of A-Z a-z 0-9 _ . : - + "
                   "and space)" % MAX_IPSET_NAME_LEN)
    return value


def _ipset_flags(protocol, attr, value):
    words = value.lower().split(",")
    if not 1 <= len(words) <= 6 or any(word not in ("src", "dst") for word in words):
        raise _bad(protocol, attr, value, "not 1 to 6 comma-separated src/dst flags")
    return ",".join(words)


def _comment(protocol, attr, value):
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise _bad(protocol, attr, value[:40], "not valid Unicode text (a lone surrogate): write it as UTF-8") from None
    if size > MAX_COMMENT_BYTES:
        raise _bad(protocol, attr, value[:40] + "...", "%d bytes in UTF-8 (%d characters), more than the %d bytes "
                   "the kernel keeps: shorten it (a non-ASCII character takes 2 to 4 bytes)"
                   % (size, len(value), MAX_COMMENT_BYTES))
    return value


_CANON = {
    MAC_ADDR: _mac_addr,
    MAC_MASK: _mac_mask,
    IP_ADDR: lambda p, a, v: _ip_addr(p, a, v, 4),
    IP_MASK: lambda p, a, v: _ip_mask(p, a, v, 4),
    IPV6_ADDR: lambda p, a, v: _ip_addr(p, a, v, 6),
    IPV6_MASK: lambda p, a, v: _ip_mask(p, a, v, 6),
    UINT8: _uint(0xFF),
    UINT16: _uint(0xFFFF),
    UINT16_DEC: _uint(0xFFFF, hex_ok=False),
    UINT32: _uint(0xFFFFFFFF),
    PORT: _uint(0xFFFF),
    DSCP: _uint(63),
    # libvirt accepts 4095, but it is 802.1Q's reserved id and ebtables refuses it at apply time
    VLAN_ID: _uint(4094),
    MAC_PROTOCOLID: _ethertype(0x600),
    VLAN_ENCAP: _ethertype(0x3C),
    ARP_OPCODE: _arp_opcode,
    IP_PROTOCOL: _ip_protocol,
    STATE: _state,
    TCP_FLAGS: _tcp_flags,
    BOOLEAN: _boolean,
    IPSET_NAME: _ipset_name,
    IPSET_FLAGS: _ipset_flags,
    COMMENT: _comment,
}
