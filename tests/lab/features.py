"""The language-feature battery: one filter per attribute family of libvirt's ebiptables driver,
each with probes whose expected verdict is read off the filter.

Every feature is bound to guest g0 alone; g1 is its unfiltered peer. A probe is a frame that g0
sends to g1 (``out``, it meets the filter's out/inout rules) or g1 sends to g0 (``in``), and its
verdict is whether it arrived at the receiving guest's eth0. ``expect`` says what the filter
does to it, and ``why`` says which rule decides (the reasoning a reviewer checks against the
XML). Every feature has probes that pass and probes that are dropped, so a filter that does
nothing, or drops everything, fails.

Probes of ``phase`` 1 are sent after every phase-0 probe has had its window (conntrack state
that phase 0 created is then in place). ``connect`` probes are real TCP connections from the
sender to a listener on the peer, made one after the other: ``expect`` lists which connect.
"""

from __future__ import annotations

import select
import socket
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

from . import feature_frames as FF
from . import frames as F
from .battery import Case, run_battery
from .netns import in_netns, tcp_listener

SPOOF_MAC = "52:54:00:de:ad:01"
OTHER_MAC = "52:54:00:dd:ad:01"
MASKED_PEER_MAC = "52:54:00:00:00:f5"
G1_SECOND_IP = "192.168.100.12"


@dataclass(frozen=True)
class Probe:
    """``build(lab, marker, src, dst) -> frame`` where src/dst are the lab's guests."""

    name: str
    direction: str  # out: g0 -> g1, in: g1 -> g0
    build: Optional[Callable]
    expect: object  # bool, or a tuple of bools for a connect probe
    why: str
    phase: int = 0
    connect: Optional[Tuple[int, int]] = None  # (port, connections)


@dataclass(frozen=True)
class Feature:
    name: str
    family: str
    filters: Tuple[str, ...]  # XML of the filter named ``name`` first, then the ones it references
    probes: Tuple[Probe, ...]
    parameters: Tuple[Tuple[str, str], ...] = field(default=())


def _udp(dport, sport=40000, src_mac=None, src_ip=None, dst_ip=None, dscp=0, tos=None):
    def build(lab, marker, src, dst):
        return FF.udp4(src_mac or src.mac, dst.mac, src_ip or src.ipv4, dst_ip or dst.ipv4, sport, dport,
                       marker, tos=dscp << 2 if tos is None else tos)
    return build


def _udp6(dport, sport=40000, src_ip=None):
    def build(lab, marker, src, dst):
        return FF.udp6(src.mac, dst.mac, src_ip or src.ipv6, dst.ipv6, sport, dport, marker)
    return build


def _tcp(dport, flags=FF.TCP_SYN, options=b""):
    def build(lab, marker, src, dst):
        return FF.tcp4(src.mac, dst.mac, src.ipv4, dst.ipv4, 40000, dport, marker, flags, options)
    return build


def _icmp(kind, code):
    def build(lab, marker, src, dst):
        return FF.icmp4(src.mac, dst.mac, src.ipv4, dst.ipv4, kind, code, marker)
    return build


def _icmp6(kind, code):
    def build(lab, marker, src, dst):
        return FF.icmp6(src.mac, dst.mac, src.ipv6, dst.ipv6, kind, code, marker)
    return build


def _ethertype(ethertype, vlan=None):
    def build(lab, marker, src, dst):
        return F.raw_ethertype(dst.mac, src.mac, ethertype, marker, vlan=vlan)
    return build


def _vlan_udp(vlan):
    def build(lab, marker, src, dst):
        return F.ipv4_udp(src.mac, dst.mac, src.ipv4, dst.ipv4, 40000, 41008, marker, vlan=vlan)
    return build


def _arp(op=F.ARP_REQUEST, target_ip=None, htype=1, ptype=F.ETH_IPV4):
    def build(lab, marker, src, dst):
        return FF.arp_custom(src.mac, F.BROADCAST, op, src.ipv4, target_ip or dst.ipv4, marker, htype, ptype)
    return build


def _stp(**fields):
    def build(lab, marker, src, dst):
        return FF.stp_bpdu(src.mac, marker, **fields)
    return build


def _proto(builder):
    def build(lab, marker, src, dst):
        return builder(src.mac, dst.mac, src.ipv4, dst.ipv4, marker)
    return build


def _raw(proto):
    def build(lab, marker, src, dst):
        return FF.raw4(src.mac, dst.mac, src.ipv4, dst.ipv4, proto, marker)
    return build


def _sctp(dport):
    def build(lab, marker, src, dst):
        return FF.sctp4(src.mac, dst.mac, src.ipv4, dst.ipv4, 40000, dport, marker)
    return build


def _filter(name, body, chain=None):
    head = "<filter name='%s'%s>" % (name, " chain='%s'" % chain if chain else "")
    return head + body + "</filter>"


def _drop(direction, match, priority=None):
    prio = " priority='%d'" % priority if priority is not None else ""
    return "<rule action='drop' direction='%s'%s>%s</rule>" % (direction, prio, match)


def _p(name, direction, build, expect, why, **kw):
    return Probe(name, direction, build, expect, why, **kw)


def _features():
    yes, no = True, False
    out = []

    def add(name, family, body, probes, extra=(), parameters=(), chain=None):
        out.append(Feature(name, family, (_filter(name, body, chain),) + tuple(extra), tuple(probes),
                           tuple(parameters)))

    add("hfwf-mac-mask", "mac", _drop("out", "<mac srcmacaddr='52:54:00:de:00:00' srcmacmask='ff:ff:ff:ff:00:00'/>")
        + _drop("in", "<mac srcmacaddr='52:54:00:00:00:f0' srcmacmask='ff:ff:ff:ff:ff:f0'/>"), [
        _p("own-mac", "out", _udp(41000), yes, "52:54:00:00:00:00 is outside 52:54:00:de::/32"),
        _p("masked-mac", "out", _udp(41000, src_mac=SPOOF_MAC), no, "52:54:00:de:ad:01 is inside 52:54:00:de::/32"),
        _p("unmasked-mac", "out", _udp(41000, src_mac=OTHER_MAC), yes, "52:54:00:dd:ad:01 differs in the 4th byte"),
        _p("in-peer-mac", "in", _udp(41000), yes, "52:54:00:00:00:01 is outside ...:f0/ff:f0"),
        _p("in-masked-mac", "in", _udp(41000, src_mac=MASKED_PEER_MAC), no, "...:f5 is inside ...:f0/ff:f0"),
    ])
    add("hfwf-mac-protocolid", "mac", _drop("out", "<mac protocolid='0x0835'/>")
        + _drop("out", "<mac protocolid='ipv6'/>"), [
        _p("ethertype-0x0835", "out", _ethertype(0x0835), no, "protocolid 0x0835"),
        _p("ipv6-udp", "out", _udp6(41001), no, "protocolid ipv6"),
        _p("ipv4-udp", "out", _udp(41001), yes, "no rule for IPv4"),
        _p("arp-request", "out", _arp(), yes, "no rule for ARP"),
    ])
    add("hfwf-vlan", "vlan", _drop("out", "<vlan vlanid='42'/>")
        + _drop("out", "<vlan vlanid='50' encap-protocol='ipv6'/>"), [
        _p("vlan-42", "out", _vlan_udp(42), no, "vlanid 42"),
        _p("vlan-43", "out", _vlan_udp(43), yes, "no rule for VLAN 43"),
        _p("vlan-50-ipv6", "out", _ethertype(F.ETH_IPV6, vlan=50), no, "vlanid 50 carrying IPv6"),
        _p("vlan-50-ipv4", "out", _vlan_udp(50), yes, "VLAN 50 carrying IPv4: encap-protocol differs"),
    ])
    add("hfwf-stp", "stp", _drop("out", "<stp type='0x80'/>")
        + _drop("out", "<stp root-priority='0' root-priority-hi='4096'/>")
        + _drop("out", "<stp sender-address='52:54:00:aa:00:00' sender-address-mask='ff:ff:ff:ff:00:00'/>"), [
        _p("tcn-bpdu", "out", _stp(kind=FF.BPDU_TCN), no, "type 0x80"),
        _p("config-bpdu", "out", _stp(), yes, "type 0, root priority 32768, sender is the guest"),
        _p("config-root-4096", "out", _stp(root_priority=4096), no, "root priority in 0-4096"),
        _p("config-root-4097", "out", _stp(root_priority=4097), yes, "root priority above 4096"),
        _p("config-sender-masked", "out", _stp(sender_mac="52:54:00:aa:12:34"), no, "sender in 52:54:00:aa::/32"),
    ])
    add("hfwf-arp-fields", "arp", _drop("out", "<arp opcode='Reply'/>")
        + _drop("out", "<arp hwtype='6'/>") + _drop("out", "<arp protocoltype='0x0801'/>")
        + _drop("out", "<arp arpdstipaddr='192.168.100.200' arpdstipmask='29'/>"), [
        _p("request", "out", _arp(), yes, "a request, htype 1, ptype 0x0800, target .11"),
        _p("reply", "out", _arp(op=F.ARP_REPLY), no, "opcode Reply"),
        _p("htype-6", "out", _arp(htype=6), no, "hwtype 6"),
        _p("ptype-0x0801", "out", _arp(ptype=0x0801), no, "protocoltype 0x0801"),
        _p("target-in-mask", "out", _arp(target_ip="192.168.100.201"), no, ".201 is in .200/29"),
        _p("target-outside", "out", _arp(target_ip="192.168.100.208"), yes, ".208 is outside .200/29"),
    ])
    add("hfwf-arp-gratuitous", "arp", _drop("out", "<arp gratuitous='true'/>")
        + _drop("out", "<arp arpsrcmacaddr='%s'/>" % SPOOF_MAC), [
        _p("gratuitous", "out", lambda lab, m, s, d: F.gratuitous_arp(s.mac, s.ipv4, m), no, "sender IP == target IP"),
        _p("request", "out", _arp(), yes, "sender IP .10, target .11"),
        _p("spoofed-sender-mac", "out", lambda lab, m, s, d: F.arp_request(s.mac, s.ipv4, d.ipv4, m,
                                                                           sender_mac=SPOOF_MAC),
           no, "arpsrcmacaddr"),
    ])
    add("hfwf-arp-gratuitous-ip", "arp", _drop("out", "<arp gratuitous='true' arpsrcipaddr='$IP'/>"), [
        _p("own-announce", "out", lambda lab, m, s, d: F.gratuitous_arp(s.mac, s.ipv4, m), no,
           "gratuitous, sender IP is $IP"),
        _p("other-announce", "out", lambda lab, m, s, d: F.gratuitous_arp(s.mac, "192.168.100.99", m), yes,
           "gratuitous, but the sender IP is not $IP"),
        _p("request", "out", _arp(), yes, "sender IP is $IP, target .11: not gratuitous"),
    ])
    add("hfwf-rarp", "rarp", _drop("out", "<rarp opcode='Request_Reverse' arpdstmacaddr='52:54:00:00:00:01'/>"), [
        _p("rarp-for-peer", "out", lambda lab, m, s, d: F.rarp(F.RARP_REQUEST, s.mac, F.BROADCAST, d.mac, m),
           no, "request_reverse for 52:54:00:00:00:01"),
        _p("rarp-announce", "out", lambda lab, m, s, d: F.rarp_announce(s.mac, m), yes,
           "request_reverse for the guest's own MAC"),
        _p("rarp-reply", "out", lambda lab, m, s, d: F.rarp(F.RARP_REPLY, s.mac, F.BROADCAST, d.mac, m), yes,
           "opcode Reply_Reverse"),
    ])
    add("hfwf-ip-l2", "ip", _drop("out", "<ip srcipaddr='192.168.100.96' srcipmask='27'/>")
        + _drop("out", "<ip dstipaddr='192.168.100.11' protocol='udp' dstportstart='41100' dstportend='41110'/>")
        + _drop("out", "<ip dscp='10'/>"), [
        _p("own-ip", "out", _udp(41000), yes, ".10 is outside .96/27"),
        _p("masked-src-ip", "out", _udp(41000, src_ip="192.168.100.99"), no, ".99 is in .96/27"),
        _p("port-in-range", "out", _udp(41105), no, "udp to .11, port in 41100-41110"),
        _p("port-above-range", "out", _udp(41111), yes, "port 41111 above the range"),
        # libvirt's ebtables rule is --ip-tos with the dscp value: it compares the whole TOS byte
        _p("tos-10", "out", _udp(41000, tos=10), no, "dscp 10 at layer 2 is TOS byte 10 (libvirt: --ip-tos)"),
        _p("dscp-10", "out", _udp(41000, dscp=10), yes, "TOS byte 40: not 10"),
        _p("tos-12", "out", _udp(41000, tos=12), yes, "TOS byte 12"),
    ])
    add("hfwf-ipv6-l2", "ipv6", _drop("out", "<ipv6 protocol='icmpv6' type='128' typeend='129'/>")
        + _drop("out", "<ipv6 dstipaddr='fd00:100::11' protocol='udp' dstportstart='41200'/>")
        + _drop("out", "<ipv6 srcipaddr='fd00:100::20' srcipmask='124'/>"), [
        _p("echo-request", "out", _icmp6(128, 0), no, "ICMPv6 type 128 in 128-129"),
        _p("neighbor-solicit", "out", lambda lab, m, s, d: F.ipv6_neighbor_solicit(s.mac, s.ipv6, d.ipv6, m),
           yes, "ICMPv6 type 135"),
        _p("udp-41200", "out", _udp6(41200), no, "udp to ::11 port 41200"),
        _p("udp-41201", "out", _udp6(41201), yes, "port 41201"),
        _p("masked-src", "out", _udp6(41201, src_ip="fd00:100::25"), no, "::25 is in ::20/124"),
    ])
    body = (_drop("out", "<udp dstipfrom='192.168.100.11' dstipto='192.168.100.12' dstportstart='41300'/>")
            + _drop("out", "<all srcipfrom='192.168.100.20' srcipto='192.168.100.30'/>")
            + _drop("out", "<udp-ipv6 dstipfrom='fd00:100::11' dstipto='fd00:100::12' dstportstart='41301'/>"))
    add("hfwf-ip-ranges", "ip ranges", body, [
        _p("dst-in-range", "out", _udp(41300), no, ".11 in .11-.12, port 41300"),
        _p("dst-other-port", "out", _udp(41302), yes, "port 41302"),
        _p("src-in-range", "out", _udp(41302, src_ip="192.168.100.25"), no, ".25 in .20-.30"),
        _p("src-outside", "out", _udp(41302, src_ip="192.168.100.31"), yes, ".31 outside .20-.30"),
        _p("ipv6-dst-in-range", "out", _udp6(41301), no, "::11 in ::11-::12, port 41301"),
        _p("ipv6-other-port", "out", _udp6(41303), yes, "port 41303"),
    ])
    add("hfwf-dscp", "dscp", _drop("out", "<all dscp='46'/>"), [
        _p("dscp-46", "out", _udp(41000, dscp=46), no, "dscp 46"),
        _p("dscp-0", "out", _udp(41000), yes, "dscp 0"),
        _p("dscp-47", "out", _udp(41000, dscp=47), yes, "dscp 47"),
    ])
    add("hfwf-tcp", "tcp", _drop("out", "<tcp flags='SYN,ACK/SYN' dstportstart='8001'/>")
        + _drop("out", "<tcp option='2' dstportstart='8002'/>")
        + _drop("out", "<tcp dstportstart='8010' dstportend='8020'/>"), [
        _p("syn-8001", "out", _tcp(8001), no, "flags SYN of SYN,ACK"),
        _p("synack-8001", "out", _tcp(8001, FF.TCP_SYN | FF.TCP_ACK), yes, "SYN and ACK set"),
        _p("ack-8001", "out", _tcp(8001, FF.TCP_ACK), yes, "only ACK set"),
        _p("mss-8002", "out", _tcp(8002, options=FF.mss_option()), no, "option 2 present"),
        _p("no-option-8002", "out", _tcp(8002), yes, "no option"),
        _p("port-8015", "out", _tcp(8015), no, "port in 8010-8020"),
        _p("port-8021", "out", _tcp(8021), yes, "port above 8010-8020"),
    ])
    add("hfwf-udp", "udp", _drop("out", "<udp srcportstart='40000' srcportend='40005' dstportstart='41400'/>"), [
        _p("sport-40003", "out", _udp(41400, sport=40003), no, "sport in 40000-40005, dport 41400"),
        _p("sport-40006", "out", _udp(41400, sport=40006), yes, "sport above the range"),
        _p("dport-41401", "out", _udp(41401), yes, "dport 41401"),
    ])
    add("hfwf-icmp", "icmp", _drop("out", "<icmp type='3' code='3'/>") + _drop("out", "<icmp type='13'/>"), [
        _p("unreach-port", "out", _icmp(3, 3), no, "type 3 code 3"),
        _p("unreach-host", "out", _icmp(3, 1), yes, "type 3 code 1"),
        _p("timestamp", "out", _icmp(13, 0), no, "type 13"),
        _p("echo", "out", _icmp(8, 0), yes, "type 8"),
    ])
    add("hfwf-icmpv6", "icmpv6", _drop("out", "<icmpv6 type='128'/>") + _drop("out", "<icmpv6 type='1' code='4'/>"), [
        _p("echo-request", "out", _icmp6(128, 0), no, "type 128"),
        _p("unreach-port", "out", _icmp6(1, 4), no, "type 1 code 4"),
        _p("unreach-addr", "out", _icmp6(1, 3), yes, "type 1 code 3"),
        _p("neighbor-solicit", "out", lambda lab, m, s, d: F.ipv6_neighbor_solicit(s.mac, s.ipv6, d.ipv6, m),
           yes, "type 135"),
    ])
    add("hfwf-l4-protocols", "igmp sctp udplite esp ah", _drop("out", "<igmp/>")
        + _drop("out", "<sctp dstportstart='5000'/>") + _drop("out", "<udplite/>")
        + _drop("out", "<esp/>") + _drop("out", "<ah/>"), [
        _p("igmp", "out", _proto(FF.igmp4), no, "igmp"),
        _p("sctp-5000", "out", _sctp(5000), no, "sctp port 5000"),
        _p("sctp-5001", "out", _sctp(5001), yes, "sctp port 5001"),
        _p("udplite", "out", _raw(FF.PROTO_UDPLITE), no, "udplite"),
        _p("esp", "out", _raw(FF.PROTO_ESP), no, "esp"),
        _p("ah", "out", _raw(FF.PROTO_AH), no, "ah"),
        _p("udp", "out", _udp(41000), yes, "no rule for udp"),
    ])
    add("hfwf-state", "state", _drop("out", "<udp state='NEW' dstportstart='41500'/>"), [
        _p("in-first", "in", _udp(41501, sport=41500), yes, "no rule for traffic to the guest"),
        _p("out-reply", "out", _udp(41500, sport=41501), yes, "a reply: ESTABLISHED, not NEW", phase=1),
        _p("out-new", "out", _udp(41500, sport=41502), no, "a NEW flow to port 41500", phase=1),
    ])
    add("hfwf-connlimit", "connlimit", _drop("out", "<tcp connlimit-above='1' dstportstart='41600'/>"), [
        _p("two-connections", "out", None, (yes, no), "the second connection from the guest's address is above 1",
           connect=(41600, 2)),
        _p("other-port", "out", None, (yes, yes), "port 41601 is not limited", connect=(41601, 2)),
    ])
    add("hfwf-comment", "comment", _drop("out", "<udp dstportstart='41700' comment='admin: no 41700, ticket 12'/>")
        + _drop("out", "<mac protocolid='0x0835' comment='no 0x0835'/>"), [
        _p("udp-41700", "out", _udp(41700), no, "commented rule, port 41700"),
        _p("udp-41701", "out", _udp(41701), yes, "port 41701"),
        _p("ethertype-0x0835", "out", _ethertype(0x0835), no, "commented mac rule"),
    ])
    udp = "<ip protocol='udp' dstportstart='%d'%s/>"
    body = ("<rule action='accept' direction='out' priority='10'>%s</rule>" % (udp % (41800, ""))
            + _drop("out", udp % (41800, " dstportend='41801'"), priority=5)
            + "<filterref filter='hfwf-prio-sub'/>"
            + _drop("out", udp % (41803, ""), priority=-800)
            + _drop("out", udp % (41804, ""), priority=0))
    add("hfwf-prio", "priorities", body, [
        _p("udp-41800", "out", _udp(41800), no,
           "the ipv4 chain returns it; the drop at priority 5 precedes the accept at 10"),
        _p("udp-41801", "out", _udp(41801), no, "returned by the ipv4 chain, then the drop at priority 5"),
        _p("udp-41802", "out", _udp(41802), yes, "returned by the ipv4 chain, then no rule"),
        _p("udp-41803", "out", _udp(41803), no, "the root drop at -800 precedes the ipv4 chain (-700)"),
        _p("udp-41804", "out", _udp(41804), yes,
           "falls off the end of the ipv4 chain, which accepts (as libvirt's ebtables chains do) before the root drop at 0"),
    ], extra=[_filter("hfwf-prio-sub", "<rule action='return' direction='out'>%s</rule>"
                      % (udp % (41800, " dstportend='41802'")), chain="ipv4")], chain="root")
    body = ("<filterref filter='hfwf-dag-b'><parameter name='PORT' value='41900'/></filterref>"
            "<filterref filter='hfwf-dag-c'><parameter name='PORT' value='41901'/></filterref>")
    add("hfwf-dag", "filterref DAG with parameters", body, [
        _p("via-b", "out", _udp(41900), no, "b passes PORT=41900 to d"),
        _p("via-c", "out", _udp(41901), no, "c passes its caller's PORT=41901 to d (the caller wins)"),
        _p("c-own-value", "out", _udp(41902), yes, "c's own PORT=41902 is overridden"),
        _p("udp-41903", "out", _udp(41903), yes, "no rule"),
    ], extra=[_filter("hfwf-dag-b", "<filterref filter='hfwf-dag-d'/>"),
              _filter("hfwf-dag-c", "<filterref filter='hfwf-dag-d'><parameter name='PORT' value='41902'/>"
                                    "</filterref>"),
              _filter("hfwf-dag-d", _drop("out", "<udp dstportstart='$PORT'/>"))])
    body = (_drop("out", "<udp dstipaddr='$DST[@1]' dstportstart='$PORTS[@2]'/>")
            + _drop("out", "<udp dstportstart='$P1' srcportstart='$P2'/>"))
    add("hfwf-iterators", "iterators", body, [
        _p("dst-port-0", "out", _udp(42000), no, "(.11, 42000) is in DST x PORTS"),
        _p("dst-port-1", "out", _udp(42001), no, "(.11, 42001) is in DST x PORTS"),
        _p("dst-port-2", "out", _udp(42002), yes, "42002 is not in PORTS"),
        _p("pair-0", "out", _udp(42010, sport=40010), no, "(42010, 40010) is the first P1/P2 pair"),
        _p("pair-1", "out", _udp(42011, sport=40011), no, "(42011, 40011) is the second pair"),
        _p("crossed", "out", _udp(42010, sport=40011), yes, "P1 and P2 walk in step: (42010, 40011) is no pair"),
    ], parameters=(("DST", "192.168.100.11"), ("DST", G1_SECOND_IP), ("PORTS", "42000"), ("PORTS", "42001"),
                   ("P1", "42010"), ("P1", "42011"), ("P2", "40010"), ("P2", "40011")))
    body = _drop("out", "<udp srcmacaddr='%s' dstportstart='42100'/>" % SPOOF_MAC)
    add("hfwf-l3-srcmac", "srcmacaddr on layer 3", body, [
        _p("spoofed-mac", "out", _udp(42100, src_mac=SPOOF_MAC), no, "source MAC and port match"),
        _p("own-mac", "out", _udp(42100), yes, "the guest's own MAC"),
        _p("spoofed-other-port", "out", _udp(42101, src_mac=SPOOF_MAC), yes, "port 42101"),
    ])
    return tuple(out)


FEATURES = _features()


def feature(name):
    for item in FEATURES:
        if item.name == name:
            return item
    raise KeyError("unknown feature %r; known: %s" % (name, ", ".join(f.name for f in FEATURES)))


def expected(feat):
    return {probe.name: probe.expect for probe in feat.probes}


# -- running ------------------------------------------------------------------------------
def _roles(direction):
    return ("g0", "g1") if direction == "out" else ("g1", "g0")


def _case(lab, probe):
    sender, peer = _roles(probe.direction)
    src, dst = lab.guests[int(sender[1])], lab.guests[int(peer[1])]
    return Case(probe.name, lambda lab_, marker: probe.build(lab_, marker, src, dst), sender=sender, peer=peer)


def _connects(lab, probe, timeout):
    """Open ``count`` TCP connections one after the other; which of them were accepted."""
    port, count = probe.connect
    sender, peer = _roles(probe.direction)
    dst = lab.guests[int(peer[1])]
    listener = tcp_listener(lab.ns(peer), port)
    socks, outcome = [], []
    try:
        for _index in range(count):
            with in_netns(lab.ns(sender)):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            socks.append(sock)
            sock.connect_ex((dst.ipv4, port))
            _r, writable, _x = select.select([], [sock], [], timeout)
            outcome.append(bool(writable) and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
        return tuple(outcome)
    finally:
        for sock in socks:
            sock.close()
        listener.close()


def run_feature(lab, feat, timeout=0.3):
    """{probe name: verdict} for one feature, its filter already applied."""
    verdicts = {}
    for phase in sorted({p.phase for p in feat.probes if p.build}):
        cases = [_case(lab, p) for p in feat.probes if p.build and p.phase == phase]
        for name, row in run_battery(lab, cases, timeout=timeout).items():
            verdicts[name] = row["guest"]
    for probe in feat.probes:
        if probe.connect:
            verdicts[probe.name] = _connects(lab, probe, timeout)
    return {p.name: verdicts[p.name] for p in feat.probes}


def format_verdicts(feat, got):
    """One line per probe: name, expected, got, and the reason."""
    width = max(len(p.name) for p in feat.probes)
    return "\n".join("%s  expect %-13s got %-13s %s" % (p.name.ljust(width), p.expect, got.get(p.name), p.why)
                     for p in feat.probes) + "\n"
