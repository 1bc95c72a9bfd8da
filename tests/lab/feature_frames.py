"""Frames for the language-feature battery: the header fields nwfilter attributes match on.

frames.py builds the everyday frames; these builders expose what the feature filters look at
(TOS/DSCP, TCP flags and options, ICMP type and code, ARP hardware and protocol types, the
fields of an STP BPDU, other IP protocols). The marker rides in the L4 payload, or in the
Ethernet padding for ARP and STP, as in frames.py.
"""

from __future__ import annotations

import functools
import ipaddress
import struct

from . import frames as F

PROTO_IGMP, PROTO_ESP, PROTO_AH, PROTO_SCTP, PROTO_UDPLITE = 2, 50, 51, 132, 136
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
STP_DST = "01:80:c2:00:00:00"
BPDU_CONFIG, BPDU_TCN = 0x00, 0x80


def ipv4_packet(src_mac, dst_mac, src_ip, dst_ip, proto, l4, tos=0, vlan=None):
    """IPv4 with a chosen TOS byte (DSCP is its upper six bits)."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(l4), 0x4846, 0, 64, proto, 0,
                         ipaddress.IPv4Address(src_ip).packed,
                         ipaddress.IPv4Address(dst_ip).packed)
    header = header[:10] + struct.pack("!H", F.checksum(header)) + header[12:]
    return F.ethernet(dst_mac, src_mac, F.ETH_IPV4, header + l4, vlan=vlan)


def _pseudo(src_ip, dst_ip):
    if ipaddress.ip_address(src_ip).version == 6:
        return functools.partial(F._pseudo_v6, src_ip, dst_ip)
    return functools.partial(F._pseudo_v4, src_ip, dst_ip)


def udp4(src_mac, dst_mac, src_ip, dst_ip, sport, dport, marker, tos=0):
    l4 = F.udp_segment(_pseudo(src_ip, dst_ip), sport, dport, marker)
    return ipv4_packet(src_mac, dst_mac, src_ip, dst_ip, F.PROTO_UDP, l4, tos=tos)


def udp6(src_mac, dst_mac, src_ip, dst_ip, sport, dport, marker):
    return F.ipv6_udp(src_mac, dst_mac, src_ip, dst_ip, sport, dport, marker)


def tcp_segment(pseudo, sport, dport, payload, flags, options=b""):
    """A TCP segment with ``flags`` and raw ``options`` (padded to 32-bit words)."""
    options += b"\x01" * (-len(options) % 4)  # NOP padding
    offset = (20 + len(options)) // 4
    header = struct.pack("!HHIIBBHHH", sport, dport, 0x48465700, 0x48460001 if flags & TCP_ACK else 0,
                         offset << 4, flags, 65535, 0, 0) + options
    csum = F.checksum(pseudo(F.PROTO_TCP, len(header) + len(payload)) + header + payload)
    return header[:16] + struct.pack("!H", csum) + header[18:] + payload


def tcp4(src_mac, dst_mac, src_ip, dst_ip, sport, dport, marker, flags=TCP_SYN, options=b""):
    l4 = tcp_segment(_pseudo(src_ip, dst_ip), sport, dport, marker, flags, options)
    return ipv4_packet(src_mac, dst_mac, src_ip, dst_ip, F.PROTO_TCP, l4)


def mss_option(value=1460):
    """TCP option kind 2 (maximum segment size)."""
    return struct.pack("!BBH", 2, 4, value)


def icmp4(src_mac, dst_mac, src_ip, dst_ip, kind, code, marker):
    """An ICMP message of any type and code; the marker is its body."""
    message = struct.pack("!BBHI", kind, code, 0, 0) + marker
    message = message[:2] + struct.pack("!H", F.checksum(message)) + message[4:]
    return ipv4_packet(src_mac, dst_mac, src_ip, dst_ip, F.PROTO_ICMP, message)


def icmp6(src_mac, dst_mac, src_ip, dst_ip, kind, code, marker):
    message = struct.pack("!BBHI", kind, code, 0, 0) + marker
    csum = F.checksum(_pseudo(src_ip, dst_ip)(F.PROTO_ICMPV6, len(message)) + message)
    message = message[:2] + struct.pack("!H", csum) + message[4:]
    return F.ipv6(src_mac, dst_mac, src_ip, dst_ip, F.PROTO_ICMPV6, message)


def igmp4(src_mac, dst_mac, src_ip, dst_ip, marker):
    """An IGMPv2 membership report (type 0x16) followed by the marker."""
    message = struct.pack("!BBH4s", 0x16, 0, 0, ipaddress.IPv4Address("239.1.2.3").packed) + marker
    message = message[:2] + struct.pack("!H", F.checksum(message)) + message[4:]
    return ipv4_packet(src_mac, dst_mac, src_ip, dst_ip, PROTO_IGMP, message)


def sctp4(src_mac, dst_mac, src_ip, dst_ip, sport, dport, marker):
    """An SCTP common header and a DATA chunk holding the marker (checksum left zero: the
    filters under test look at ports only)."""
    chunk = struct.pack("!BBHIHHI", 0, 3, 16 + len(marker), 1, 0, 0, 0) + marker
    chunk += b"\0" * (-len(chunk) % 4)
    l4 = struct.pack("!HHII", sport, dport, 0x48465700, 0) + chunk
    return ipv4_packet(src_mac, dst_mac, src_ip, dst_ip, PROTO_SCTP, l4)


def raw4(src_mac, dst_mac, src_ip, dst_ip, proto, marker):
    """An IPv4 packet of protocol ``proto`` (ESP, AH, UDP-Lite ...) whose body starts with an
    8-byte header stand-in and then the marker."""
    return ipv4_packet(src_mac, dst_mac, src_ip, dst_ip, proto, struct.pack("!II", 0x4846, 1) + marker)


def arp_custom(src_mac, dst_mac, op, sender_ip, target_ip, marker, htype=1, ptype=F.ETH_IPV4):
    """ARP with a chosen hardware and protocol type (addresses stay 6 and 4 bytes long)."""
    body = struct.pack("!HHBBH6s4s6s4s", htype, ptype, 6, 4, op, F.mac_bytes(src_mac),
                       ipaddress.IPv4Address(sender_ip).packed, F.mac_bytes(F.ZERO_MAC),
                       ipaddress.IPv4Address(target_ip).packed)
    return F.ethernet(dst_mac, src_mac, F.ETH_ARP, body, pad=marker)


def stp_bpdu(src_mac, marker, kind=BPDU_CONFIG, flags=0, root_priority=0x8000,
             root_mac="52:54:00:aa:00:01", root_cost=4, sender_priority=0x8000,
             sender_mac=None, port=0x8001, age=0, max_age=20, hello=2, forward_delay=15):
    """An 802.3/LLC frame to the bridge group address carrying a configuration or TCN BPDU.
    Times are whole seconds (the wire unit is 1/256 s)."""
    bpdu = struct.pack("!HBB", 0, 0, kind)
    if kind == BPDU_CONFIG:
        bpdu += struct.pack("!BH6sIH6sHHHHH", flags, root_priority, F.mac_bytes(root_mac), root_cost,
                            sender_priority, F.mac_bytes(sender_mac or src_mac), port,
                            age * 256, max_age * 256, hello * 256, forward_delay * 256)
    llc = b"\x42\x42\x03" + bpdu
    frame = F.mac_bytes(STP_DST) + F.mac_bytes(src_mac) + struct.pack("!H", len(llc)) + llc + marker
    return frame + b"\0" * max(0, 60 - len(frame))
