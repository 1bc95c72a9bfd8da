"""The feature battery's frame builders, checked against scapy (no root needed)."""

import pytest

from lab import feature_frames as FF
from lab.features import FEATURES

G0_MAC, G1_MAC = "52:54:00:00:00:00", "52:54:00:00:00:01"
G0_IP, G1_IP = "192.168.100.10", "192.168.100.11"
G0_IP6, G1_IP6 = "fd00:100::10", "fd00:100::11"
MARK = b"HFWfeature-mark1"

scapy = pytest.importorskip("scapy.all")


def _checksums_verify(frame, layer, field):
    parsed = scapy.Ether(frame)
    rebuilt = scapy.Ether(frame)
    delattr(rebuilt[layer], field)
    assert getattr(scapy.Ether(bytes(rebuilt))[layer], field) == getattr(parsed[layer], field)
    return parsed


def test_tcp_flags_and_mss_option():
    frame = FF.tcp4(G0_MAC, G1_MAC, G0_IP, G1_IP, 40000, 8002, MARK, FF.TCP_SYN | FF.TCP_ACK, FF.mss_option(1400))
    parsed = _checksums_verify(frame, scapy.TCP, "chksum")
    assert parsed[scapy.TCP].flags == "SA" and parsed[scapy.TCP].options == [("MSS", 1400)]
    assert bytes(parsed[scapy.TCP].payload) == MARK
    _checksums_verify(frame, scapy.IP, "chksum")


def test_tos_icmp_type_and_code():
    parsed = _checksums_verify(FF.icmp4(G0_MAC, G1_MAC, G0_IP, G1_IP, 3, 3, MARK), scapy.ICMP, "chksum")
    assert (parsed[scapy.ICMP].type, parsed[scapy.ICMP].code) == (3, 3)
    udp = _checksums_verify(FF.udp4(G0_MAC, G1_MAC, G0_IP, G1_IP, 1, 2, MARK, tos=46 << 2), scapy.UDP, "chksum")
    assert udp[scapy.IP].tos == 0xB8
    _checksums_verify(FF.udp4(G0_MAC, G1_MAC, G0_IP, G1_IP, 1, 2, MARK, tos=10), scapy.IP, "chksum")


def test_icmpv6_type_and_code():
    parsed = scapy.Ether(FF.icmp6(G0_MAC, G1_MAC, G0_IP6, G1_IP6, 1, 4, MARK))
    layer = parsed[scapy.IPv6].payload
    assert (layer.type, layer.code) == (1, 4)
    rebuilt = scapy.Ether(bytes(parsed))
    delattr(rebuilt[scapy.IPv6].payload, "cksum")
    assert scapy.Ether(bytes(rebuilt))[scapy.IPv6].payload.cksum == layer.cksum


def test_arp_hardware_and_protocol_types():
    parsed = scapy.Ether(FF.arp_custom(G0_MAC, "ff:ff:ff:ff:ff:ff", 1, G0_IP, G1_IP, MARK, htype=6, ptype=0x0801))
    assert (parsed[scapy.ARP].hwtype, parsed[scapy.ARP].ptype, parsed[scapy.ARP].op) == (6, 0x0801, 1)
    assert MARK in bytes(parsed)


def test_stp_bpdus_follow_802_1d():
    frame = FF.stp_bpdu(G0_MAC, MARK, root_priority=4096, root_mac="52:54:00:aa:00:01",
                        sender_mac="52:54:00:aa:12:34", port=0x8002, max_age=20)
    config = scapy.Dot3(frame)
    stp = config[scapy.STP]
    assert config.dst == FF.STP_DST and config[scapy.LLC].dsap == 0x42 and stp.bpdutype == 0
    assert (stp.rootid, stp.rootmac, stp.bridgemac, stp.portid, stp.maxage) == (
        4096, "52:54:00:aa:00:01", "52:54:00:aa:12:34", 0x8002, 20)
    tcn = FF.stp_bpdu(G0_MAC, MARK, kind=FF.BPDU_TCN)  # 4 bytes: protocol id, version, type
    assert tcn[12:21] == b"\x00\x07\x42\x42\x03\x00\x00\x00\x80" and tcn[21:37] == MARK


def test_sctp_and_other_protocols_carry_the_marker():
    sctp = scapy.Ether(FF.sctp4(G0_MAC, G1_MAC, G0_IP, G1_IP, 40000, 5000, MARK))
    assert sctp[scapy.SCTP].dport == 5000 and MARK in bytes(sctp)
    for proto in (FF.PROTO_ESP, FF.PROTO_AH, FF.PROTO_UDPLITE):
        parsed = scapy.Ether(FF.raw4(G0_MAC, G1_MAC, G0_IP, G1_IP, proto, MARK))
        assert parsed[scapy.IP].proto == proto and MARK in bytes(parsed)
    igmp = scapy.Ether(FF.igmp4(G0_MAC, G1_MAC, G0_IP, G1_IP, MARK))
    assert igmp[scapy.IP].proto == FF.PROTO_IGMP


def test_feature_table_is_well_formed():
    names = [f.name for f in FEATURES]
    assert len(names) == len(set(names)) and len(names) >= 20
    for feat in FEATURES:
        assert feat.filters[0].startswith("<filter name='%s'" % feat.name)
        for probe in feat.probes:
            assert probe.direction in ("out", "in") and probe.why
            assert (probe.build is None) == (probe.connect is not None)
            expect = probe.expect if probe.connect else (probe.expect,)
            assert all(isinstance(v, bool) for v in expect)
