# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Instantiations covering every construct of the xtables compiler, shared by the golden unit test
and the kernel round-trip integration test."""

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import (
    Instantiation, ResolvedMatch, RuleInstance,
)

MAC = "52:54:00:12:34:56"
_DEFAULT_PRIO = {"root": 0, "stp": -810, "mac": -800, "vlan": -750, "ipv4": -700, "ipv6": -600,
                 "arp": -500, "rarp": -400}


def R(action, direction, proto=None, attrs=(), negate=False, priority=500, chain="root",
      chain_priority=None, statematch=True, extra=()):
    """A rule instance; ``extra`` adds further (attrs, negate) elements of the same protocol."""
    if chain_priority is None:
        chain_priority = next((p for k, p in _DEFAULT_PRIO.items() if chain.startswith(k)), 0)
    matches = ()
    if proto:
        matches = (ResolvedMatch(proto, tuple(attrs), negate),)
        matches += tuple(ResolvedMatch(proto, tuple(a), n) for a, n in extra)
    return RuleInstance("f", chain, chain_priority, priority, action, direction, statematch, matches)


def nic(dev, *rules, mac=MAC):
    rules = sorted(rules, key=lambda r: (r.chain != "root", r.priority))
    subs = {}
    for rule in rules:
        if rule.chain != "root":
            subs.setdefault(rule.chain, rule.chain_priority)
    subchains = tuple(sorted(subs.items(), key=lambda item: item[1]))
    return Instantiation(dev, mac, tuple(rules), subchains, frozenset({"f"}))


CASES = {
    "mac": [nic(
        "vnet0",
        R("accept", "out", "mac", [("srcmacaddr", "01:02:03:04:05:06"), ("srcmacmask", "ff:ff:ff:ff:ff:ff"),
                                   ("protocolid", "2054")]),
        R("accept", "in", "mac", [("dstmacaddr", "aa:bb:cc:dd:ee:ff"), ("dstmacmask", "ff:ff:00:00:00:00"),
                                  ("protocolid", "2048")]),
        R("accept", "in", "mac", [("protocolid", "1537")]),
        R("accept", "in", "mac", [("protocolid", "65535")]),
        R("drop", "out", "mac", [("srcmacaddr", MAC)], negate=True, priority=10),
        R("accept", "out", "mac", [("protocolid", "2101")], priority=600),
        R("reject", "inout", "mac", [("srcmacaddr", "01:80:c2:00:00:00"), ("dstmacaddr", "ff:ff:ff:ff:ff:ff"),
                                     ("protocolid", "34525")], priority=700),
        R("return", "inout", "mac", [("srcmacaddr", "01:00:00:00:00:00"), ("srcmacmask", "01:00:00:00:00:00"),
                                     ("protocolid", "32821")], priority=800),
        R("continue", "out", "mac", [("dstmacaddr", "00:00:00:00:00:00"), ("dstmacmask", "01:00:00:00:00:00")],
          extra=[([("protocolid", "33024")], True)], priority=900),
        R("drop", "inout", priority=1000),
    )],
    "vlan": [nic(
        "vnet0",
        R("continue", "inout", "vlan", [("srcmacaddr", "01:02:03:04:05:06"), ("dstmacaddr", "aa:bb:cc:dd:ee:ff"),
                                        ("vlanid", "291")]),
        R("return", "in", "vlan", [("vlanid", "4094")], negate=True),
        R("drop", "out", "vlan", [("encap-protocol", "2054")]),
        R("accept", "out", "vlan", [("encap-protocol", "34525")], negate=True),
        R("accept", "in", "vlan", [("vlanid", "0"), ("encap-protocol", "60")]),
    )],
    "stp": [nic(
        "vnet0",
        R("continue", "in", "stp", [("srcmacaddr", "01:02:03:04:05:06"), ("type", "18"), ("flags", "68")],
          chain="stp-xyz"),
        R("return", "out", "stp", [("root-priority", "4660"), ("root-priority-hi", "9029"),
                                   ("root-address", "06:05:04:03:02:01"),
                                   ("root-address-mask", "ff:ff:ff:00:00:00"),
                                   ("root-cost", "287454020"), ("root-cost-hi", "573785173")], chain="stp-xyz"),
        R("drop", "in", "stp", [("sender-priority", "4660"), ("sender-address", "06:05:04:03:02:01"),
                                ("port", "123"), ("port-hi", "234"), ("age", "5544"), ("age-hi", "5555"),
                                ("max-age", "7777"), ("max-age-hi", "8888"), ("hello-time", "12345"),
                                ("hello-time-hi", "12346"), ("forward-delay", "54321"),
                                ("forward-delay-hi", "65432")], chain="stp-xyz"),
        R("drop", "inout", "stp", [("type", "0"), ("flags", "1")], negate=True, chain="stp-xyz"),
        R("accept", "inout", "stp", [("type", "128"), ("flags", "128"), ("root-cost", "7"),
                                     ("root-cost-hi", "7")], chain="stp-xyz"),
    )],
    "arp": [nic(
        "vnet0",
        R("accept", "out", "arp", [("srcmacaddr", "01:02:03:04:05:06"), ("dstmacaddr", "aa:bb:cc:dd:ee:ff"),
                                   ("hwtype", "12"), ("protocoltype", "34"), ("opcode", "1"),
                                   ("arpsrcmacaddr", "01:02:03:04:05:06"),
                                   ("arpdstmacaddr", "0a:0b:0c:0d:0e:0f")], chain="arp"),
        R("accept", "out", "arp", [("opcode", "11"), ("hwtype", "256"), ("protocoltype", "65535")], chain="arp"),
        R("accept", "in", "arp", [("gratuitous", "true")], chain="arp"),
        R("drop", "in", "arp", [("gratuitous", "true"), ("opcode", "2")], negate=True, chain="arp"),
        R("return", "inout", "arp", [("arpsrcipaddr", "10.0.0.1"), ("arpdstipaddr", "10.1.2.3"),
                                     ("arpdstipmask", "8"), ("opcode", "2"), ("protocoltype", "2048"),
                                     ("arpsrcmacaddr", MAC)], chain="arp-ip"),
        R("drop", "out", "arp", [("arpsrcmacaddr", MAC)], negate=True, chain="arp-mac", priority=1000),
        R("accept", "out", "rarp", [("srcmacaddr", MAC), ("dstmacaddr", "ff:ff:ff:ff:ff:ff"), ("opcode", "3"),
                                    ("arpsrcmacaddr", MAC), ("arpdstmacaddr", MAC)], chain="rarp"),
        R("drop", "inout", "rarp", [("opcode", "4"), ("arpsrcipaddr", "192.168.1.7"),
                                    ("arpsrcipmask", "24")], chain="rarp"),
        R("accept", "inout", "rarp", [("opcode", "9")], chain="rarp", priority=600),
        R("accept", "in", "rarp", [("opcode", "10")], chain="rarp", priority=700),
    )],
    "ip-eb": [nic(
        "vnet0",
        R("accept", "out", "ip", [("srcmacaddr", "01:02:03:04:05:06"), ("dstmacaddr", "aa:bb:cc:dd:ee:ff"),
                                  ("srcipaddr", "10.1.2.3"), ("srcipmask", "32"), ("dstipaddr", "10.1.2.3"),
                                  ("protocol", "udp"), ("srcportstart", "20"), ("srcportend", "22"),
                                  ("dstportstart", "100"), ("dstportend", "101")], chain="ipv4"),
        R("accept", "out", "ip", [("srcipaddr", "10.1.2.3"), ("srcipmask", "17"), ("dstipaddr", "10.1.2.3"),
                                  ("dstipmask", "24"), ("protocol", "17"), ("dscp", "63")], chain="ipv4"),
        R("accept", "in", "ip", [("srcipaddr", "10.1.2.3"), ("srcipmask", "31"), ("protocol", "255"),
                                 ("dscp", "0")], chain="ipv4"),
        R("drop", "inout", "ip", [("protocol", "tcp"), ("dstportstart", "80"), ("dstportend", "80")],
          extra=[([("srcipaddr", "10.0.0.0"), ("srcipmask", "8")], True)], chain="ipv4-ip"),
        R("drop", "inout", "ip", [("protocol", "tcp")], negate=True, chain="ipv4-ip"),
        R("return", "inout", "ip", [("protocol", "sctp"), ("srcportstart", "5"), ("dstipaddr", "1.2.3.4")],
          chain="ipv4-ip", priority=100),
        R("accept", "out", "ip", [("protocol", "icmp"), ("dscp", "10")], chain="ipv4", priority=700),
        R("accept", "out", "ip", [("protocol", "igmp")], extra=[([("dscp", "10")], True)], chain="ipv4"),
        R("accept", "out", "ip", [("protocol", "esp")], chain="ipv4", priority=800),
        R("accept", "out", "ip", [("protocol", "ah")], chain="ipv4", priority=800),
        R("accept", "out", "ip", [("protocol", "udplite")], chain="ipv4", priority=800),
        R("accept", "out", "ip", [("protocol", "33")], chain="ipv4", priority=800),
    )],
    "ipv6-eb": [nic(
        "vnet0",
        R("accept", "out", "ipv6", [("srcmacaddr", "01:02:03:04:05:06"), ("srcmacmask", "ff:ff:ff:ff:ff:fe"),
                                    ("dstmacaddr", "aa:bb:cc:dd:ee:ff"), ("dstmacmask", "ff:ff:ff:ff:ff:80"),
                                    ("srcipaddr", "::ffff:10.1.2.3"), ("srcipmask", "22"),
                                    ("dstipaddr", "::ffff:10.1.2.3"), ("dstipmask", "113"), ("protocol", "udp"),
                                    ("srcportstart", "20"), ("srcportend", "22"), ("dstportstart", "100"),
                                    ("dstportend", "101")], chain="ipv6"),
        R("accept", "inout", "ipv6", [("srcipaddr", "1::2"), ("srcipmask", "128"), ("dstipaddr", "a:b:c::"),
                                      ("dstipmask", "65"), ("protocol", "6"), ("srcportstart", "255"),
                                      ("srcportend", "256"), ("dstportstart", "65535"),
                                      ("dstportend", "65535")], chain="ipv6"),
        R("accept", "inout", "ipv6", [("protocol", "icmpv6"), ("type", "1"), ("typeend", "11"), ("code", "10"),
                                      ("codeend", "11")], chain="ipv6"),
        R("accept", "inout", "ipv6", [("protocol", "icmpv6"), ("type", "1"), ("code", "10")], chain="ipv6"),
        R("accept", "inout", "ipv6", [("protocol", "icmpv6"), ("code", "10")], chain="ipv6"),
        R("accept", "inout", "ipv6", [("protocol", "icmpv6"), ("type", "1")], chain="ipv6"),
        R("accept", "in", "ipv6", [("protocol", "icmpv6"), ("type", "1"), ("code", "3")], chain="ipv6"),
        R("drop", "in", "ipv6", [("protocol", "icmpv6")], extra=[([("type", "135")], True)], chain="ipv6"),
        R("accept", "in", "ipv6", [("protocol", "icmpv6"), ("type", "5")], chain="ipv6"),
        R("drop", "out", "ipv6", [("srcipaddr", "fe80::1"), ("srcipmask", "10")], negate=True, chain="ipv6",
          priority=900),
    )],
    "subchains": [nic(
        "vnet0",
        R("drop", "out", "mac", [("srcmacaddr", MAC)], negate=True, chain="mac", priority=10),
        R("return", "out", "ip", [("srcipaddr", "10.0.0.5")], chain="ipv4-ip", chain_priority=-710),
        R("drop", "out", None, chain="ipv4-ip", chain_priority=-710, priority=1000),
        R("return", "out", "arp", [("arpsrcmacaddr", MAC)], chain="arp-mac", chain_priority=-520, priority=350),
        R("drop", "out", None, chain="arp-mac", chain_priority=-520, priority=1000),
        R("accept", "out", "mac", [("protocolid", "2048")], priority=-650),
        R("accept", "in", "ip", [("protocol", "tcp")], chain="ipv4", priority=500),
        R("accept", "inout", "mac", [("protocolid", "2054")], priority=-500),
        R("accept", "out", "mac", [("protocolid", "2101")], priority=-400),
        R("accept", "in", "ipv6", [], chain="ipv6-in", chain_priority=300),
        R("drop", "inout", None, priority=1000),
    )],
    "tcp": [nic(
        "vnet0",
        R("accept", "out", "tcp", [("srcmacaddr", "01:02:03:04:05:06"), ("dstipaddr", "10.1.2.3"),
                                   ("dstipmask", "32"), ("dscp", "2")]),
        R("accept", "in", "tcp", [("srcmacaddr", "01:02:03:04:05:06"), ("srcipaddr", "10.1.2.3"),
                                  ("srcipmask", "24"), ("dscp", "33"), ("srcportstart", "20"),
                                  ("srcportend", "21"), ("dstportstart", "100"), ("dstportend", "1111")]),
        R("accept", "in", "tcp", [("srcipaddr", "10.1.2.3"), ("dscp", "63"), ("srcportstart", "255"),
                                  ("srcportend", "256"), ("dstportstart", "65535"), ("dstportend", "65535")]),
        R("accept", "in", "tcp", [("flags", "SYN/ALL")]),
        R("accept", "in", "tcp", [("flags", "SYN/SYN,ACK")]),
        R("accept", "in", "tcp", [("flags", "RST/NONE")]),
        R("accept", "in", "tcp", [("flags", "ALL/FIN,URG")]),
        R("drop", "in", "tcp", [("flags", "SYN,ACK/SYN"), ("option", "5"), ("dstportstart", "22")], negate=True),
        R("reject", "out", "tcp", [("srcmacaddr", MAC)]),
        R("accept", "in", "tcp", [("srcmacaddr", MAC)], negate=True),
        R("return", "inout", "tcp", [("dstportstart", "22")], extra=[([("srcportstart", "1024")], True)]),
        R("continue", "out", "tcp", [("option", "2")]),
    )],
    "l4-protocols": [nic(
        "vnet0",
        R("accept", "out", "udp", [("srcipaddr", "192.168.1.1"), ("srcportstart", "68"), ("dstportstart", "67")]),
        R("accept", "in", "udp", [("dstipaddr", "10.0.0.0"), ("dstipmask", "8"), ("dstportstart", "53"),
                                  ("dstportend", "54")]),
        R("accept", "inout", "sctp", [("srcportstart", "5"), ("dstportstart", "6"), ("dstportend", "9")]),
        R("drop", "out", "udplite", [("dstipaddr", "1.2.3.4")], negate=True),
        R("accept", "out", "esp", [("srcipaddr", "1.2.3.4")]),
        R("accept", "in", "ah", [("dscp", "8")]),
        R("accept", "out", "igmp", []),
        R("drop", "inout", "all", [], priority=1000),
    )],
    # values whose printed form differs from the obvious one (xtables/printed.py)
    "printed-edges": [nic(
        "vnet0",
        R("accept", "out", "icmp", [("type", "255")]),
        R("accept", "out", "icmp", [("type", "255"), ("code", "0")], priority=510),
        R("accept", "in", "tcp", [("srcmacaddr", "12:34:56:78:9a:bc")], negate=True, priority=520),
        R("accept", "out", "mac", [("protocolid", "1536")], priority=530),
        R("accept", "out", "mac", [("protocolid", "1537")], priority=540),
        R("accept", "out", "arp", [("arpsrcmacaddr", "ff:ff:ff:ff:ff:ff"), ("arpdstmacaddr", "01:80:c2:00:00:00")],
          priority=550),
        R("accept", "in", "stp", [("root-address", "01:80:c2:00:00:00"), ("sender-address", "ff:ff:ff:ff:ff:ff")],
          priority=560),
        R("accept", "out", "mac", [("srcmacaddr", "ff:ff:ff:ff:ff:ff")], priority=570),
    )],
    "icmp": [nic(
        "vnet0",
        R("accept", "out", "icmp", [("type", "8")]),
        R("accept", "in", "icmp", [("type", "0"), ("code", "0")]),
        R("accept", "inout", "icmp", [("type", "3")]),
        R("accept", "in", "icmp", []),
        R("drop", "in", "icmp", [("type", "255")], negate=True),
        R("accept", "out", "icmp", [("dstipaddr", "10.0.0.1")]),
    )],
    "state": [nic(
        "vnet0",
        R("accept", "out", "all", [("state", "ESTABLISHED,RELATED"), ("comment", "out: existing and related (ftp)")]),
        R("accept", "in", "all", [("state", "ESTABLISHED"), ("comment", "in: existing connections")]),
        R("accept", "in", "tcp", [("dstportstart", "21"), ("dstportend", "22"), ("state", "NEW")]),
        R("accept", "in", "icmp", [("state", "NEW"), ("type", "8")]),
        R("accept", "out", "udp", [("dstportstart", "53"), ("state", "NEW")]),
        R("drop", "inout", "all", [("state", "INVALID,NEW")]),
        R("accept", "in", "all", [("state", "NONE"), ("comment", "in+NONE")]),
        R("accept", "out", "all", [("state", "NONE")]),
        R("accept", "out", "tcp", [("state", "NEW")], statematch=False),
        R("accept", "in", "udp", [], statematch=False),
        R("drop", "inout", "all", [("comment", "inout: drop all non-accepted traffic")], priority=1000),
    )],
    "ip-extras": [nic(
        "vnet0",
        R("accept", "out", "all", [("srcipfrom", "10.0.0.1"), ("srcipto", "10.0.0.9"), ("dstipfrom", "10.0.1.1")]),
        R("accept", "in", "udp", [("srcipfrom", "10.0.0.1"), ("dstipfrom", "10.0.1.1"), ("dstipto", "10.0.1.5")],
          negate=True),
        R("accept", "out", "tcp", [("srcipaddr", "10.0.0.1"), ("srcipfrom", "10.9.9.9"), ("dstportstart", "80")]),
        R("accept", "out", "tcp", [("connlimit-above", "5"), ("dstportstart", "22")]),
        R("drop", "out", "tcp", [("connlimit-above", "9")]),
        R("accept", "in", "tcp", [("connlimit-above", "5")]),
        R("accept", "out", "all", [("connlimit-above", "3"), ("state", "NEW")]),
        R("accept", "out", "all", [("dscp", "46")], negate=True),
        R("accept", "out", "all", [("comment", "a b 'c' \"d\" \\ e")]),
        R("accept", "out", "all", [("comment", "plain_word-1")]),
        R("accept", "out", "all", [("comment", "x.y")]),
        R("accept", "out", "all", [("ipset", "tck_test"), ("ipsetflags", "src,dst")]),
        R("accept", "in", "all", [("ipset", "tck_test"), ("ipsetflags", "dst,src,dst")]),
        R("accept", "inout", "all", [("ipset", "tck_test"), ("ipsetflags", "src,dst"), ("comment", "inout")]),
        R("accept", "out", "all", [("ipset", "tck_test")]),
    )],
    "ipv6-l3": [nic(
        "vnet0",
        R("accept", "out", "tcp-ipv6", [("srcipaddr", "2001:db8::1"), ("srcipmask", "64"), ("dstportstart", "22"),
                                        ("option", "3")]),
        R("accept", "in", "udp-ipv6", [("dstipaddr", "fe80::"), ("dstipmask", "10"), ("srcportstart", "547")]),
        R("accept", "inout", "sctp-ipv6", [("dstportstart", "7")]),
        R("accept", "out", "udplite-ipv6", []),
        R("accept", "out", "esp-ipv6", [("dscp", "1")]),
        R("accept", "out", "ah-ipv6", [("srcipfrom", "2001:db8::1"), ("srcipto", "2001:db8::9")]),
        R("accept", "out", "icmpv6", [("type", "128")]),
        R("accept", "in", "icmpv6", [("type", "1"), ("code", "3")]),
        R("accept", "out", "icmpv6", []),
        R("accept", "out", "all-ipv6", [("connlimit-above", "4"), ("srcmacaddr", MAC)]),
        R("reject", "in", "all-ipv6", [("comment", "no \"more\"")]),
        R("drop", "inout", "all-ipv6", [("ipset", "tck_test6"), ("ipsetflags", "dst")], priority=1000),
    )],
    "multi-nic": [
        nic("vnet9", R("accept", "out", "tcp", [("dstportstart", "443")]),
            R("drop", "inout", None, priority=1000)),
        nic("vnet1", R("accept", "in", "ipv6", [], chain="ipv6"),
            R("accept", "out", "tcp-ipv6", [("dstportstart", "80")]), mac="52:54:00:00:00:01"),
        nic("eth.x_1", R("accept", "inout", "all", [])),
        nic("vnet5"),
    ],
}

# ipsets a case needs to exist in the kernel before its rules can be restored: name -> family
IPSETS = {"ip-extras": {"tck_test": "inet"}, "ipv6-l3": {"tck_test6": "inet6"}}
