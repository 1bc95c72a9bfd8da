"""Ethernet frame builders with correct checksums, written with struct only.

Every builder takes a ``marker`` (bytes) and places it where a receiver can find it: in the
L4 payload, in a DHCP option, or in the Ethernet padding after an ARP body (bridges forward
ARP frames with their padding; IP frames are trimmed to their total length, so IP builders
never rely on padding). Receivers look for the marker with ``marker in frame``.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import os
import struct

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_RARP = 0x8035
ETH_VLAN = 0x8100
ETH_IPV6 = 0x86DD

BROADCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"

ARP_REQUEST, ARP_REPLY, RARP_REQUEST, RARP_REPLY = 1, 2, 3, 4
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58
TCP_SYN = 0x02
ICMP_ECHO_REQUEST = 8
ICMPV6_ECHO_REQUEST = 128
ICMPV6_NEIGHBOR_SOLICIT = 135
DHCP_DISCOVER, DHCP_OFFER = 1, 2
_DHCP_COOKIE = b"\x63\x82\x53\x63"
_MIN_FRAME = 60  # without FCS

_counter = itertools.count()
_run_token = os.urandom(3).hex()


def new_marker():
    """A marker unique in this process and unlikely to collide with other runs (16 bytes)."""
    return ("HFW%s%07d" % (_run_token, next(_counter) % 10**7)).encode()


def mac_bytes(mac):
    return bytes(int(part, 16) for part in mac.split(":"))


def multicast_mac(group):
    """The Ethernet address an IPv4 or IPv6 multicast group maps to."""
    addr = ipaddress.ip_address(group)
    if addr.version == 4:
        low = addr.packed[1:]
        return "01:00:5e:%02x:%02x:%02x" % (low[0] & 0x7F, low[1], low[2])
    return "33:33:" + ":".join("%02x" % b for b in addr.packed[-4:])


def checksum(data):
    """RFC 1071 ones' complement sum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# -- Ethernet -----------------------------------------------------------------------------
def ethernet(dst, src, ethertype, payload, vlan=None, pad=b""):
    """An Ethernet II frame, 802.1Q tagged when ``vlan`` is set, padded to 60 bytes.
    ``pad`` goes right after the payload, before the zero padding."""
    header = mac_bytes(dst) + mac_bytes(src)
    if vlan is not None:
        header += struct.pack("!HH", ETH_VLAN, vlan & 0x0FFF)
    frame = header + struct.pack("!H", ethertype) + payload + pad
    return frame + b"\0" * max(0, _MIN_FRAME - len(frame))


def raw_ethertype(dst, src, ethertype, marker, vlan=None):
    """A frame of an arbitrary ethertype (e.g. 0x0835) whose whole payload is the marker."""
    return ethernet(dst, src, ethertype, marker, vlan=vlan)


# -- ARP / RARP ---------------------------------------------------------------------------
def arp_body(op, sender_mac, sender_ip, target_mac, target_ip):
    return struct.pack("!HHBBH6s4s6s4s", 1, ETH_IPV4, 6, 4, op,
                       mac_bytes(sender_mac), ipaddress.IPv4Address(sender_ip).packed,
                       mac_bytes(target_mac), ipaddress.IPv4Address(target_ip).packed)


def arp(op, eth_src, eth_dst, sender_mac, sender_ip, target_mac, target_ip, marker,
        ethertype=ETH_ARP, vlan=None):
    """Any ARP/RARP frame; the marker rides in the Ethernet padding."""
    body = arp_body(op, sender_mac, sender_ip, target_mac, target_ip)
    return ethernet(eth_dst, eth_src, ethertype, body, vlan=vlan, pad=marker)


def arp_request(src_mac, src_ip, target_ip, marker, sender_mac=None):
    """Broadcast who-has ``target_ip``; ``sender_mac`` overrides the ARP sender field only."""
    return arp(ARP_REQUEST, src_mac, BROADCAST, sender_mac or src_mac, src_ip,
               ZERO_MAC, target_ip, marker)


def arp_reply(src_mac, src_ip, dst_mac, dst_ip, marker, sender_mac=None):
    """Unicast "src_ip is at src_mac" to dst."""
    return arp(ARP_REPLY, src_mac, dst_mac, sender_mac or src_mac, src_ip, dst_mac, dst_ip,
               marker)


def gratuitous_arp(src_mac, src_ip, marker):
    """Broadcast ARP request announcing ``src_ip`` (sender IP == target IP)."""
    return arp(ARP_REQUEST, src_mac, BROADCAST, src_mac, src_ip, ZERO_MAC, src_ip, marker)


def rarp(op, src_mac, dst_mac, target_mac, marker, sender_ip="0.0.0.0", target_ip="0.0.0.0"):
    return arp(op, src_mac, dst_mac, src_mac, sender_ip, target_mac, target_ip, marker,
               ethertype=ETH_RARP)


def rarp_announce(src_mac, marker):
    """QEMU's post-migration announce: request_reverse for its own MAC, to broadcast."""
    return rarp(RARP_REQUEST, src_mac, BROADCAST, src_mac, marker)


# -- IPv4 ---------------------------------------------------------------------------------
def ipv4_header(src, dst, proto, payload_len, ttl=64, ident=0x4846):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ident, 0, ttl, proto, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:]


def _pseudo_v4(src, dst, proto, length):
    return (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
            + struct.pack("!BBH", 0, proto, length))


def _pseudo_v6(src, dst, proto, length):
    return (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
            + struct.pack("!IxxxB", length, proto))


def udp_segment(pseudo, sport, dport, payload):
    length = 8 + len(payload)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    csum = checksum(pseudo(PROTO_UDP, length) + header + payload) or 0xFFFF
    return header[:6] + struct.pack("!H", csum) + payload


def tcp_segment(pseudo, sport, dport, payload, flags=TCP_SYN, seq=0x48465700):
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
    csum = checksum(pseudo(PROTO_TCP, len(header) + len(payload)) + header + payload)
    return header[:16] + struct.pack("!H", csum) + header[18:] + payload


def _icmp_echo(kind, ident, seq, payload, pseudo=None):
    message = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    prefix = pseudo(PROTO_ICMPV6, len(message)) if pseudo else b""
    return message[:2] + struct.pack("!H", checksum(prefix + message)) + message[4:]


def ipv4(src_mac, dst_mac, src_ip, dst_ip, proto, l4, vlan=None, ttl=64):
    packet = ipv4_header(src_ip, dst_ip, proto, len(l4), ttl=ttl) + l4
    return ethernet(dst_mac, src_mac, ETH_IPV4, packet, vlan=vlan)


def ipv4_udp(src_mac, dst_mac, src_ip, dst_ip, sport, dport, marker, vlan=None, ttl=64):
    pseudo = functools.partial(_pseudo_v4, src_ip, dst_ip)
    return ipv4(src_mac, dst_mac, src_ip, dst_ip, PROTO_UDP,
                udp_segment(pseudo, sport, dport, marker), vlan=vlan, ttl=ttl)


def ipv4_tcp_syn(src_mac, dst_mac, src_ip, dst_ip, sport, dport, marker):
    """A SYN carrying the marker as data (legal TCP; receivers see it before any handshake)."""
    pseudo = functools.partial(_pseudo_v4, src_ip, dst_ip)
    return ipv4(src_mac, dst_mac, src_ip, dst_ip, PROTO_TCP,
                tcp_segment(pseudo, sport, dport, marker))


def ipv4_icmp_echo(src_mac, dst_mac, src_ip, dst_ip, marker, ident=0x4846, seq=1):
    return ipv4(src_mac, dst_mac, src_ip, dst_ip, PROTO_ICMP,
                _icmp_echo(ICMP_ECHO_REQUEST, ident, seq, marker))


# -- IPv6 ---------------------------------------------------------------------------------
def ipv6(src_mac, dst_mac, src_ip, dst_ip, next_header, l4, hop_limit=64, vlan=None):
    header = struct.pack("!IHBB16s16s", 6 << 28, len(l4), next_header, hop_limit,
                         ipaddress.IPv6Address(src_ip).packed,
                         ipaddress.IPv6Address(dst_ip).packed)
    return ethernet(dst_mac, src_mac, ETH_IPV6, header + l4, vlan=vlan)


def ipv6_udp(src_mac, dst_mac, src_ip, dst_ip, sport, dport, marker):
    pseudo = functools.partial(_pseudo_v6, src_ip, dst_ip)
    return ipv6(src_mac, dst_mac, src_ip, dst_ip, PROTO_UDP,
                udp_segment(pseudo, sport, dport, marker))


def ipv6_icmp_echo(src_mac, dst_mac, src_ip, dst_ip, marker, ident=0x4846, seq=1):
    pseudo = functools.partial(_pseudo_v6, src_ip, dst_ip)
    return ipv6(src_mac, dst_mac, src_ip, dst_ip, PROTO_ICMPV6,
                _icmp_echo(ICMPV6_ECHO_REQUEST, ident, seq, marker, pseudo))


def solicited_node(addr):
    low = ipaddress.IPv6Address(addr).packed[-3:]
    return str(ipaddress.IPv6Address(b"\xff\x02" + b"\0" * 9 + b"\x01\xff" + low))


def ipv6_neighbor_solicit(src_mac, src_ip, target_ip, marker):
    """NS for ``target_ip`` to its solicited-node group, with a source link-layer option.
    The marker follows as an unknown ND option (type 250), which receivers must ignore."""
    group = solicited_node(target_ip)
    pseudo = functools.partial(_pseudo_v6, src_ip, group)
    option = struct.pack("!BB", 1, 1) + mac_bytes(src_mac)
    blob = marker + b"\0" * (-(len(marker) + 2) % 8)
    extra = struct.pack("!BB", 250, (len(blob) + 2) // 8) + blob
    message = (struct.pack("!BBHI", ICMPV6_NEIGHBOR_SOLICIT, 0, 0, 0)
               + ipaddress.IPv6Address(target_ip).packed + option + extra)
    csum = checksum(pseudo(PROTO_ICMPV6, len(message)) + message)
    message = message[:2] + struct.pack("!H", csum) + message[4:]
    return ipv6(src_mac, multicast_mac(group), src_ip, group, PROTO_ICMPV6, message,
                hop_limit=255)


# -- DHCP ---------------------------------------------------------------------------------
def dhcp_message(op, msg_type, client_mac, marker, xid=0x48465700, yiaddr="0.0.0.0",
                 server_ip=None):
    """A BOOTP/DHCP message; the marker is the vendor class identifier (option 60)."""
    fixed = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, 6, 0, xid, 0, 0x8000,
                        bytes(4), ipaddress.IPv4Address(yiaddr).packed,
                        ipaddress.IPv4Address(server_ip or "0.0.0.0").packed, bytes(4),
                        mac_bytes(client_mac), b"", b"")
    options = struct.pack("!BBB", 53, 1, msg_type)
    if server_ip:
        options += struct.pack("!BB4s", 54, 4, ipaddress.IPv4Address(server_ip).packed)
    options += struct.pack("!BB", 60, len(marker)) + marker + b"\xff"
    return fixed + _DHCP_COOKIE + options


def dhcp_discover(client_mac, marker):
    """0.0.0.0:68 -> 255.255.255.255:67, broadcast."""
    payload = dhcp_message(1, DHCP_DISCOVER, client_mac, marker)
    return ipv4_udp(client_mac, BROADCAST, "0.0.0.0", "255.255.255.255", 68, 67, payload)


def dhcp_offer(server_mac, server_ip, client_mac, offered_ip, marker, dst_mac=BROADCAST):
    """server_ip:67 -> 255.255.255.255:68 offering ``offered_ip`` to ``client_mac``."""
    payload = dhcp_message(2, DHCP_OFFER, client_mac, marker, yiaddr=offered_ip,
                           server_ip=server_ip)
    return ipv4_udp(server_mac, dst_mac, server_ip, "255.255.255.255", 67, 68, payload)
