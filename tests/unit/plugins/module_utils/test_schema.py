# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import schema  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import FilterXMLError

ALL_PROTOCOLS = {
    "mac", "vlan", "stp", "arp", "rarp", "ip", "ipv6", "tcp", "udp", "udplite", "sctp", "icmp",
    "igmp", "esp", "ah", "all", "tcp-ipv6", "udp-ipv6", "udplite-ipv6", "sctp-ipv6", "icmpv6",
    "esp-ipv6", "ah-ipv6", "all-ipv6",
}


def test_protocol_set_is_libvirts():
    assert set(schema.PROTOCOLS) == ALL_PROTOCOLS


def test_l2_protocols():
    assert [p for p in schema.PROTOCOLS if schema.is_l2(p)] == list(schema.L2_PROTOCOLS)
    assert not schema.is_l2("tcp") and not schema.is_l2("icmpv6")


def test_attribute_order_follows_libvirt():
    names = [name for name, datatype in schema.PROTOCOLS["ip"]]
    assert names == ["srcmacaddr", "srcmacmask", "dstmacaddr", "dstmacmask", "srcipaddr",
                     "srcipmask", "dstipaddr", "dstipmask", "protocol", "srcportstart",
                     "srcportend", "dstportstart", "dstportend", "dscp", "comment"]
    tcp = [name for name, datatype in schema.PROTOCOLS["tcp"]]
    assert tcp[:3] == ["srcmacaddr", "srcipaddr", "srcipmask"]
    assert tcp[-3:] == ["option", "flags", "comment"]


def test_stp_uses_code_spelling_not_doc_spelling():
    names = dict(schema.PROTOCOLS["stp"])
    assert "port-hi" in names and "age" in names and "age-hi" in names
    assert "port_hi" not in names and "msg-age" not in names
    assert names["root-cost"] == schema.UINT32


def test_l3_tables_have_no_dst_mac():
    for proto in ("tcp", "udp-ipv6", "all", "icmpv6"):
        names = dict(schema.PROTOCOLS[proto])
        assert "srcmacaddr" in names and "dstmacaddr" not in names and "srcmacmask" not in names


def test_quirk_tcp_ipv6_has_no_flags():
    assert schema.attr_type("tcp", "flags") == schema.TCP_FLAGS
    assert schema.attr_type("tcp-ipv6", "flags") is None


def test_quirk_dstipto_is_typed_per_family():
    assert schema.attr_type("udp-ipv6", "dstipto") == schema.IPV6_ADDR
    assert schema.canonical_value("udp-ipv6", "dstipto", "2001:DB8::9") == "2001:db8::9"
    with pytest.raises(FilterXMLError):
        schema.canonical_value("udp-ipv6", "dstipto", "10.0.0.1")


def test_igmp_has_no_ipv6_twin():
    assert "igmp-ipv6" not in schema.PROTOCOLS


VALID = [
    ("mac", "srcmacaddr", "52:54:0:AB:cd:1", "52:54:00:ab:cd:01"),
    ("mac", "srcmacmask", "FF:FF:FF:00:00:00", "ff:ff:ff:00:00:00"),
    ("mac", "dstmacmask", "00:00:00:00:00:00", "00:00:00:00:00:00"),
    ("mac", "protocolid", "arp", "2054"),
    ("mac", "protocolid", "RARP", "32821"),
    ("mac", "protocolid", "ipv6", "34525"),
    ("mac", "protocolid", "vlan", "33024"),
    ("mac", "protocolid", "0x835", "2101"),
    ("mac", "protocolid", "1536", "1536"),
    ("vlan", "vlanid", "4094", "4094"),
    ("vlan", "vlanid", "0x10", "16"),
    ("vlan", "encap-protocol", "0x3c", "60"),
    ("vlan", "encap-protocol", "ipv4", "2048"),
    ("stp", "root-cost", "4294967295", "4294967295"),
    ("stp", "root-cost", "0xffffffff", "4294967295"),
    ("stp", "flags", "0xff", "255"),
    ("arp", "opcode", "Request", "1"),
    ("arp", "opcode", "arp_nak", "9"),
    ("arp", "opcode", "DRARP_Error", "7"),
    ("arp", "opcode", "300", "300"),
    ("arp", "arpsrcipaddr", "10.1.2.3", "10.1.2.3"),
    ("arp", "arpsrcipmask", "255.255.0.0", "16"),
    ("arp", "gratuitous", "yes", "true"),
    ("arp", "gratuitous", "1", "true"),
    ("rarp", "gratuitous", "FALSE", "false"),
    ("ip", "srcipmask", "0.0.0.0", "0"),
    ("ip", "srcipmask", "32", "32"),
    ("ip", "dstipmask", "255.255.255.252", "30"),
    ("ip", "protocol", "TCP", "tcp"),
    ("ip", "protocol", "17", "udp"),
    ("ip", "protocol", "0x84", "sctp"),
    ("ip", "protocol", "33", "33"),
    ("ip", "protocol", "icmpv6", "icmpv6"),
    ("ip", "dscp", "63", "63"),
    ("ipv6", "srcipaddr", "FE80:0:0::1", "fe80::1"),
    ("ipv6", "srcipmask", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "128"),
    ("ipv6", "dstipmask", "8", "8"),
    ("ipv6", "typeend", "255", "255"),
    ("tcp", "dstportstart", "65535", "65535"),
    ("tcp", "dstportend", "0x50", "80"),
    ("tcp", "state", "new,established", "NEW,ESTABLISHED"),
    ("tcp", "state", "RELATED,NEW,related", "RELATED,NEW"),
    ("tcp", "state", "NEW,NONE", "NONE"),
    ("tcp", "state", "invalid", "INVALID"),
    ("tcp", "flags", "syn,ack/syn", "SYN,ACK/SYN"),
    ("tcp", "flags", "ACK,FIN,URG,PSH,RST,SYN/none", "ALL/NONE"),
    ("tcp", "flags", "ALL/urg,fin", "ALL/FIN,URG"),
    ("tcp", "connlimit-above", "10", "10"),
    ("tcp", "ipset", "my set:_.-+", "my set:_.-+"),
    ("udp", "ipsetflags", "SRC,dSt,src", "src,dst,src"),
    ("udp", "ipsetflags", "dst", "dst"),
    ("icmp", "type", "8", "8"),
    ("all", "comment", "x" * 255, "x" * 255),
    ("all", "comment", "\u00e9" * 127, "\u00e9" * 127),
    ("all", "comment", "\u20ac" * 85, "\u20ac" * 85),
    ("all", "comment", "keeps 'Case' & spaces ", "keeps 'Case' & spaces "),
    ("all-ipv6", "srcipfrom", "::FFFF:10.0.0.1", "::ffff:10.0.0.1"),
]


@pytest.mark.parametrize("protocol,attr,value,expected", VALID)
def test_canonical_value_valid(protocol, attr, value, expected):
    assert schema.canonical_value(protocol, attr, value) == expected
    # canonical forms are fixed points
    assert schema.canonical_value(protocol, attr, expected) == expected


INVALID = [
    ("mac", "srcmacaddr", "52:54:00:ab:cd", "MAC address"),
    ("mac", "srcmacaddr", "52-54-00-ab-cd-01", "MAC address"),
    ("mac", "srcmacaddr", "52:54:00:ab:cd:123", "MAC address"),
    ("mac", "srcmacmask", "ff:00:ff:00:00:00", "contiguous"),
    ("mac", "protocolid", "0x5ff", "out of range"),
    ("mac", "protocolid", "ipx", "ethertype"),
    ("mac", "protocolid", "0x10000", "out of range"),
    ("vlan", "vlanid", "4095", "out of range 0-4094"),
    ("vlan", "encap-protocol", "0x3b", "out of range"),
    ("stp", "type", "256", "out of range 0-255"),
    ("stp", "root-cost", "4294967296", "out of range"),
    ("stp", "port", "-1", "not a number"),
    ("arp", "opcode", "Ask", "ARP opcode"),
    ("arp", "opcode", "65536", "out of range"),
    ("arp", "gratuitous", "maybe", "boolean"),
    ("arp", "arpsrcipaddr", "fe80::1", "IPv4"),
    ("arp", "arpsrcipmask", "255.0.255.0", "contiguous"),
    ("ip", "srcipaddr", "10.1", "IPv4"),
    ("ip", "srcipaddr", "2001:db8::1", "IPv4"),
    ("ip", "srcipaddr", "10.0.0.256", "IPv4"),
    ("ip", "srcipmask", "33", "out of range 0-32"),
    ("ip", "protocol", "gre", "IP protocol"),
    ("ip", "protocol", "256", "out of range 0-255"),
    ("ip", "dscp", "64", "out of range 0-63"),
    ("ipv6", "srcipaddr", "10.0.0.1", "IPv6"),
    ("ipv6", "srcipaddr", "fe80::1::2", "IPv6"),
    ("ipv6", "srcipmask", "129", "out of range 0-128"),
    ("ipv6", "srcipmask", "ffff::ffff", "contiguous"),
    ("tcp", "dstportstart", "70000", "out of range 0-65535"),
    ("tcp", "dstportstart", "ff", "not a number"),
    ("tcp", "dstportstart", "22a", "not a number"),
    ("tcp", "dstportstart", "", "not a number"),
    ("tcp", "state", "NEW,CLOSED", "list of"),
    ("tcp", "state", "", "list of"),
    ("tcp", "flags", "SYN", "MASK/FLAGS"),
    ("tcp", "flags", "SYN/ECE", "list of"),
    ("tcp", "flags", "a/b/c", "MASK/FLAGS"),
    ("tcp", "connlimit-above", "0x10", "not a number"),
    ("tcp", "ipset", "a" * 32, "ipset name"),
    ("tcp", "ipset", "bad/name", "ipset name"),
    ("udp", "ipsetflags", "src,dst,src,dst,src,dst,src", "1 to 6"),
    ("udp", "ipsetflags", "src dst", "1 to 6"),
    ("udp", "ipsetflags", "", "1 to 6"),
    ("icmp", "code", "0x100", "out of range"),
    ("all", "comment", "x" * 256, "256 bytes in UTF-8 (256 characters), more than the 255 bytes"),
    ("all", "comment", "\u00e9" * 200, "400 bytes in UTF-8 (200 characters), more than the 255 bytes"),
    ("all", "comment", "\u20ac" * 86, "258 bytes in UTF-8 (86 characters)"),
    ("all", "comment", "\U0001f600" * 64, "256 bytes in UTF-8 (64 characters)"),
    ("all", "comment", "caf\udce9", "not valid Unicode text"),
]


@pytest.mark.parametrize("protocol,attr,value,fragment", INVALID)
def test_canonical_value_invalid(protocol, attr, value, fragment):
    with pytest.raises(FilterXMLError) as err:
        schema.canonical_value(protocol, attr, value)
    assert fragment in str(err.value)
    assert "<%s %s>" % (protocol, attr) in str(err.value)
    assert err.value.context["attribute"] == attr


def test_error_message_names_attr_value_and_range():
    with pytest.raises(FilterXMLError) as err:
        schema.canonical_value("tcp", "dstportstart", "70000")
    assert str(err.value) == "<tcp dstportstart>: '70000' is out of range 0-65535"


def test_unknown_attribute_and_protocol():
    with pytest.raises(FilterXMLError, match="unknown attribute 'dstmacaddr'"):
        schema.canonical_value("tcp", "dstmacaddr", "00:11:22:33:44:55")
    with pytest.raises(FilterXMLError, match="unknown protocol"):
        schema.canonical_value("gre", "srcipaddr", "10.0.0.1")


def test_every_attribute_has_a_validator():
    for protocol, attrs in schema.PROTOCOLS.items():
        assert len({name for name, datatype in attrs}) == len(attrs), protocol
        for name, datatype in attrs:
            assert datatype in schema._CANON, (protocol, name)


@pytest.mark.parametrize("value,expected", [
    ("10.0.0.1", None),
    ("", None),
    ("$IP", ("IP", None, None)),
    ("$IP[2]", ("IP", 2, None)),
    ("$IP[@1]", ("IP", None, 1)),
    ("$DHCPSERVER_V6[@1000]", ("DHCPSERVER_V6", None, 1000)),
    ("$A[ 0]", ("A", 0, None)),
    ("$B[  @0 ] ", ("B", None, 0)),
    ("$C[@ 7\t]\n", ("C", None, 7)),
    ("$D[ 03 ]", ("D", 3, None)),
])
def test_parse_var_ref(value, expected):
    assert schema.parse_var_ref(value) == expected


@pytest.mark.parametrize("value,expected", [
    ("10.0.0.1", None),
    ("$IP", "$IP"),
    ("$A[ 0]", "$A[0]"),
    ("$B[  @0 ] ", "$B"),
    ("$B[@0]", "$B"),
    ("$C[ @2]", "$C[@2]"),
    ("$D[ 03 ]  ", "$D[3]"),
])
def test_canonical_var_ref_prints_what_libvirt_prints(value, expected):
    assert schema.canonical_var_ref(value) == expected


@pytest.mark.parametrize("value", ["$", "$IP[", "$IP[x]", "$IP[@]", "$I-P", "$IP[1][2]",
                                   "$IP[@1001]", "$IP ", "$IP[-1]", "$IP [0]", "$IP[@ 1001 ]",
                                   "$IP[0] x", "$IP[+1]", "$IP[\u0663]"])
def test_parse_var_ref_malformed(value):
    with pytest.raises(FilterXMLError):
        schema.parse_var_ref(value)


@pytest.mark.parametrize("chain", ["root", "mac", "arp-xyz", "ipv4-ip", "rarp", "stp:1",
                                   "vlan_2.a", "ipv6abcdefgh", "mac123456789"])
def test_chain_names_accepted(chain):
    assert schema.check_chain_name(chain) == chain


@pytest.mark.parametrize("chain,fragment", [
    ("rootx", "invalid chain name"),
    ("tcp", "invalid chain name"),
    ("", "non-empty"),
    ("ipv4-too-long", "longer than 12"),
    ("arp ip", "characters"),
    ("arp/ip", "characters"),
])
def test_chain_names_rejected(chain, fragment):
    with pytest.raises(FilterXMLError, match=fragment):
        schema.check_chain_name(chain)


@pytest.mark.parametrize("chain,priority,expected", [
    ("root", None, 0), ("stp", None, -810), ("mac-x", None, -800), ("vlan", None, -750),
    ("ipv4-ip", None, -700), ("ipv6", None, -600), ("arp-mac", None, -500),
    ("rarp", None, -400), ("arp-ip", -510, -510), ("root", 7, 7),
])
def test_chain_priority(chain, priority, expected):
    assert schema.chain_priority(chain, priority) == expected


def test_xml_value_prints_names_like_libvirt():
    assert schema.xml_value("mac", "protocolid", "2048") == "ipv4"
    assert schema.xml_value("mac", "protocolid", "2101") == "0x835"
    assert schema.xml_value("arp", "opcode", "3") == "Request_Reverse"
    assert schema.xml_value("arp", "opcode", "300") == "300"
    assert schema.xml_value("mac", "protocolid", "$PROTO") == "$PROTO"
    assert schema.xml_value("tcp", "dstportstart", "22") == "22"
