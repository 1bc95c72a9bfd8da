"""A table-driven battery of frames sent through a Lab and where each one arrived.

Each case builds one frame carrying a fresh marker, is sent from one namespace (usually guest
g0) through a packet socket, and is looked for at:

- ``guest``: the case's peer guest (a packet socket on its eth0, so it counts what the bridge
  forwarded, after ebtables and iptables FORWARD);
- ``host``: the hypervisor (a packet socket on br0 without promiscuous mode, so it counts what
  the bridge delivered to the host's own stack);
- ``lan``: the LAN namespace, when the lab has one (packet socket on its eth0).

UDP cases (``udp`` set) are judged instead by real UDP sockets bound to the case's port in
those namespaces, so iptables INPUT verdicts count too. All cases of a run are sent back to
back and all receivers are polled together for one short window, because every frame has its
own marker.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass
from typing import Callable

from . import frames as F
from .netns import LAN_MAC, UPLINK_HV_IPV4, UPLINK_LAN_IPV4, UPLINK_MAC, packet_socket, \
    udp_socket

PACKET_OUTGOING = 4
SPOOF_MAC = "52:54:00:de:ad:01"
SPOOF_IPV4 = "192.168.100.99"
MCAST_GROUP = "239.1.2.3"
V4, V6 = socket.AF_INET, socket.AF_INET6


@dataclass(frozen=True)
class Case:
    """One battery row. ``build(lab, marker) -> frame``; ``sender``/``peer`` are lab roles
    ('g0', 'g1', 'hv', 'lan'); ``udp`` = (family, port) judges arrival by UDP sockets."""

    name: str
    build: Callable
    sender: str = "g0"
    peer: str = "g1"
    udp: tuple | None = None
    needs_lan: bool = False
    note: str = ""


def _g(lab, index):
    return lab.guests[index]


def _udp4(sender, dst_mac, dst_ip, port, src_mac=None, src_ip=None, vlan=None):
    """Builder of IPv4 UDP from guest index ``sender``; dst_mac/dst_ip are functions of lab."""
    def build(lab, marker):
        src = _g(lab, sender)
        return F.ipv4_udp(src_mac or src.mac, dst_mac(lab), src_ip or src.ipv4, dst_ip(lab),
                          40000, port, marker, vlan=vlan)
    return build


def _peer_mac(index):
    return lambda lab: _g(lab, index).mac


def _peer_ip(index, attr="ipv4"):
    return lambda lab: getattr(_g(lab, index), attr)


def _fixed(value):
    return lambda lab: value


def _build_table():
    g0, g1 = 0, 1
    return (
        Case("ipv4-udp", _udp4(g0, _peer_mac(g1), _peer_ip(g1), 41001), udp=(V4, 41001),
             note="legit IPv4 UDP to the other guest"),
        Case("ipv4-udp-to-host", _udp4(g0, lambda lab: lab.bridge_mac,
                                       lambda lab: lab.host_ipv4, 41002), udp=(V4, 41002)),
        Case("ipv4-tcp-syn", lambda lab, m: F.ipv4_tcp_syn(
            _g(lab, g0).mac, _g(lab, g1).mac, _g(lab, g0).ipv4, _g(lab, g1).ipv4,
            40000, 8080, m)),
        Case("ipv4-tcp-port-25", lambda lab, m: F.ipv4_tcp_syn(
            _g(lab, g0).mac, _g(lab, g1).mac, _g(lab, g0).ipv4, _g(lab, g1).ipv4,
            40000, 25, m)),
        Case("ipv4-icmp-echo", lambda lab, m: F.ipv4_icmp_echo(
            _g(lab, g0).mac, _g(lab, g1).mac, _g(lab, g0).ipv4, _g(lab, g1).ipv4, m)),
        Case("arp-request", lambda lab, m: F.arp_request(
            _g(lab, g0).mac, _g(lab, g0).ipv4, _g(lab, g1).ipv4, m)),
        Case("arp-reply", lambda lab, m: F.arp_reply(
            _g(lab, g0).mac, _g(lab, g0).ipv4, _g(lab, g1).mac, _g(lab, g1).ipv4, m)),
        Case("ipv6-udp", lambda lab, m: F.ipv6_udp(
            _g(lab, g0).mac, _g(lab, g1).mac, _g(lab, g0).ipv6, _g(lab, g1).ipv6,
            40000, 41003, m), udp=(V6, 41003)),
        Case("ipv6-icmp-echo", lambda lab, m: F.ipv6_icmp_echo(
            _g(lab, g0).mac, _g(lab, g1).mac, _g(lab, g0).ipv6, _g(lab, g1).ipv6, m)),
        Case("ipv6-neighbor-solicit", lambda lab, m: F.ipv6_neighbor_solicit(
            _g(lab, g0).mac, _g(lab, g0).ipv6, _g(lab, g1).ipv6, m)),
        Case("spoofed-src-mac", _udp4(g0, _peer_mac(g1), _peer_ip(g1), 41004,
                                      src_mac=SPOOF_MAC), udp=(V4, 41004),
             note="IPv4 UDP from an Ethernet source that is not the guest's"),
        Case("spoofed-src-ip", _udp4(g0, _peer_mac(g1), _peer_ip(g1), 41005,
                                     src_ip=SPOOF_IPV4), udp=(V4, 41005)),
        Case("arp-spoofed-sender-ip", lambda lab, m: F.arp_request(
            _g(lab, g0).mac, SPOOF_IPV4, _g(lab, g1).ipv4, m)),
        Case("arp-spoofed-sender-mac", lambda lab, m: F.arp_request(
            _g(lab, g0).mac, _g(lab, g0).ipv4, _g(lab, g1).ipv4, m, sender_mac=SPOOF_MAC)),
        Case("arp-gratuitous", lambda lab, m: F.gratuitous_arp(
            _g(lab, g0).mac, _g(lab, g0).ipv4, m)),
        Case("rarp-qemu-announce", lambda lab, m: F.rarp_announce(_g(lab, g0).mac, m)),
        Case("rarp-other", lambda lab, m: F.rarp(
            F.RARP_REQUEST, _g(lab, g0).mac, F.BROADCAST, _g(lab, g1).mac, m),
            note="request_reverse asking for another MAC"),
        Case("ethertype-0x0835", lambda lab, m: F.raw_ethertype(
            F.BROADCAST, _g(lab, g0).mac, 0x0835, m)),
        Case("dhcp-discover", lambda lab, m: F.dhcp_discover(_g(lab, g0).mac, m),
             udp=(V4, 67)),
        Case("dhcp-offer-from-guest", lambda lab, m: F.dhcp_offer(
            _g(lab, g0).mac, _g(lab, g0).ipv4, _g(lab, g1).mac, _g(lab, g1).ipv4, m),
            udp=(V4, 68), note="a guest acting as a rogue DHCP server"),
        Case("ipv4-broadcast", _udp4(g0, _fixed(F.BROADCAST), _fixed("192.168.100.255"),
                                     41006), udp=(V4, 41006)),
        Case("ipv4-multicast", _udp4(g0, _fixed(F.multicast_mac(MCAST_GROUP)),
                                     _fixed(MCAST_GROUP), 41007)),
        Case("vlan-tagged", _udp4(g0, _peer_mac(g1), _peer_ip(g1), 41008, vlan=42),
             note="802.1Q VLAN 42 around IPv4 UDP"),
        Case("to-guest-udp", _udp4(g1, _peer_mac(g0), _peer_ip(g0), 41009),
             sender="g1", peer="g0", udp=(V4, 41009)),
        Case("to-guest-arp-request", lambda lab, m: F.arp_request(
            _g(lab, g1).mac, _g(lab, g1).ipv4, _g(lab, g0).ipv4, m), sender="g1", peer="g0"),
        Case("to-guest-udp-from-host", lambda lab, m: F.ipv4_udp(
            lab.bridge_mac, _g(lab, g0).mac, lab.host_ipv4, _g(lab, g0).ipv4, 40000, 41010, m),
            sender="hv", peer="g0", udp=(V4, 41010)),
        Case("to-guest-dhcp-offer", lambda lab, m: F.dhcp_offer(
            lab.bridge_mac, lab.host_ipv4, _g(lab, g0).mac, _g(lab, g0).ipv4, m,
            dst_mac=_g(lab, g0).mac), sender="hv", peer="g0", udp=(V4, 68)),
        Case("routed-udp-to-lan", _udp4(g0, lambda lab: lab.bridge_mac,
                                        _fixed(UPLINK_LAN_IPV4), 41011),
             udp=(V4, 41011), needs_lan=True),
        Case("routed-udp-from-lan", lambda lab, m: F.ipv4_udp(
            LAN_MAC, UPLINK_MAC, UPLINK_LAN_IPV4, _g(lab, g0).ipv4, 40000, 41012, m),
            sender="lan", peer="g0", udp=(V4, 41012), needs_lan=True),
        Case("routed-udp-to-uplink-address", _udp4(g0, lambda lab: lab.bridge_mac,
                                                   _fixed(UPLINK_HV_IPV4), 41013),
             udp=(V4, 41013), needs_lan=True, note="host INPUT via the uplink address"),
    )


CASES = _build_table()
CASE_NAMES = tuple(case.name for case in CASES)


def cases_by_name(*names):
    """The named cases, in the order given; unknown names raise KeyError listing valid ones."""
    table = {case.name: case for case in CASES}
    missing = [name for name in names if name not in table]
    if missing:
        raise KeyError("unknown battery case(s) %s; known: %s" % (missing, ", ".join(table)))
    return [table[name] for name in names]


def applicable_cases(lab, cases=None):
    """``cases`` (default: all) minus those the lab cannot run: LAN cases without a LAN, and
    cases whose sender or peer guest the lab does not have."""
    chosen = CASES if cases is None else cases
    return [case for case in chosen if (lab.lan or not case.needs_lan)
            and _has_role(lab, case.sender) and _has_role(lab, case.peer)]


def _has_role(lab, role):
    try:
        lab.ns(role)
    except KeyError:
        return False
    return True


# -- running ------------------------------------------------------------------------------
def _iface(lab, role):
    """(namespace, interface) where role's frames enter and leave."""
    if role == "hv":
        return lab.hv, lab.bridge
    return lab.ns(role), "eth0"


def _locations(lab, case):
    """Observation key -> role for one case; a sender never observes its own frame."""
    where = {"guest": case.peer, "host": "hv"}
    if lab.lan:
        where["lan"] = "lan"
    return {key: role for key, role in where.items() if role != case.sender}


class _Receivers:
    """Sockets shared by all cases of one run, keyed by where they listen."""

    def __init__(self, lab):
        self.lab = lab
        self.packet = {}
        self.udp = {}

    def packet_for(self, role):
        key = _iface(self.lab, role)
        if key not in self.packet:
            self.packet[key] = packet_socket(*key)
        return self.packet[key]

    def udp_for(self, role, family, port):
        key = (self.lab.ns(role), family, port)
        if key not in self.udp:
            self.udp[key] = udp_socket(key[0], port, family)
        return self.udp[key]

    def close(self):
        for sock in list(self.packet.values()) + list(self.udp.values()):
            sock.close()


def _drain(sock, is_packet):
    """Every datagram queued on ``sock`` (frames the socket itself sent are skipped)."""
    out = []
    while True:
        try:
            data, addr = sock.recvfrom(65535)
        except BlockingIOError:
            return out
        if not (is_packet and addr[2] == PACKET_OUTGOING):
            out.append(data)


def _collect(watch, timeout):
    """Poll every socket in ``watch`` (sock -> (is_packet, [(marker, tag)])) until the deadline;
    returns the set of tags whose marker arrived on the socket they watch."""
    seen = set()
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return seen
        readable, writable, exceptional = select.select(list(watch), [], [], remaining)
        for sock in readable:
            is_packet, wanted = watch[sock]
            for data in _drain(sock, is_packet):
                seen.update(tag for marker, tag in wanted if marker in data)


def run_battery(lab, cases=None, timeout=0.3):
    """Send every case once and return {case name: {'guest': bool, 'host': bool[, 'lan']}}."""
    chosen = applicable_cases(lab, cases)
    receivers = _Receivers(lab)
    try:
        watch, sends, results = {}, [], {}
        for case in chosen:
            marker = F.new_marker()
            results[case.name] = {key: False for key in _result_keys(lab)}
            for key, role in _locations(lab, case).items():
                sock, is_packet = _observer(receivers, case, role)
                watch.setdefault(sock, (is_packet, []))[1].append((marker, (case.name, key)))
            sends.append((receivers.packet_for(case.sender), case.build(lab, marker)))
        for sock, frame in sends:
            sock.send(frame)
        for name, key in _collect(watch, timeout):
            results[name][key] = True
        return results
    finally:
        receivers.close()


def _observer(receivers, case, role):
    if case.udp:
        return receivers.udp_for(role, *case.udp), False
    return receivers.packet_for(role), True


def _result_keys(lab):
    return ("guest", "host", "lan") if lab.lan else ("guest", "host")


def format_table(results):
    """Fixed-width text table of run_battery's result, one row per case in the given order."""
    keys = list(next(iter(results.values()))) if results else ["guest", "host"]
    width = max([len("case")] + [len(name) for name in results])
    lines = ["  ".join(["case".ljust(width)] + [key.ljust(5) for key in keys]).rstrip()]
    for name, row in results.items():
        cells = [("yes" if row[key] else "-").ljust(5) for key in keys]
        lines.append("  ".join([name.ljust(width)] + cells).rstrip())
    return "\n".join(lines) + "\n"
