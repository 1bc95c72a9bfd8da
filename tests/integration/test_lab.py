"""The packet-test lab itself: frame builders (no root) and the namespace lab (root)."""

import ipaddress
import os
import shutil
import socket
import struct
import subprocess

import pytest

from lab import Lab, cases_by_name, cleanup_prefix, format_table, list_namespaces, run_battery
from lab import frames as F
from lab.battery import CASES
from lab.netns import in_netns, packet_socket, read_sysctl, tcp_listener

G0_MAC, G1_MAC = "52:54:00:00:00:00", "52:54:00:00:00:01"
G0_IP, G1_IP = "192.168.100.10", "192.168.100.11"
G0_IP6, G1_IP6 = "fd00:100::10", "fd00:100::11"
MARK = b"HFWtest-marker-1"

LEGIT = ["ipv4-udp", "ipv4-tcp-syn", "ipv4-icmp-echo", "arp-request", "arp-reply", "ipv6-udp",
         "ipv6-icmp-echo", "ipv6-neighbor-solicit", "arp-gratuitous", "rarp-qemu-announce",
         "dhcp-discover", "ipv4-broadcast", "ipv4-multicast", "to-guest-udp",
         "to-guest-arp-request", "to-guest-udp-from-host", "to-guest-dhcp-offer"]

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and iproute2")


# -- frames (pure) ------------------------------------------------------------------------
def _ip_payload(frame):
    offset = 18 if frame[12:14] == b"\x81\x00" else 14
    return frame[offset:]


def _v4_pseudo(packet):
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack("!H", packet[2:4])[0]
    l4 = packet[ihl:total]
    return packet[12:20] + struct.pack("!BBH", 0, packet[9], len(l4)) + l4


def _v6_pseudo(packet):
    length = struct.unpack("!H", packet[4:6])[0]
    return (packet[8:40] + struct.pack("!IxxxB", length, packet[6])) + packet[40:40 + length]


@pytest.mark.parametrize("frame", [
    F.ipv4_udp(G0_MAC, G1_MAC, G0_IP, G1_IP, 1000, 2000, MARK),
    F.ipv4_udp(G0_MAC, G1_MAC, G0_IP, G1_IP, 1000, 2000, MARK + b"x", vlan=42),
    F.ipv4_tcp_syn(G0_MAC, G1_MAC, G0_IP, G1_IP, 1000, 25, MARK),
    F.dhcp_discover(G0_MAC, MARK),
    F.dhcp_offer(G1_MAC, G1_IP, G0_MAC, G0_IP, MARK),
], ids=["udp", "udp-vlan-odd", "tcp-syn", "dhcp-discover", "dhcp-offer"])
def test_ipv4_checksums_verify(frame):
    packet = _ip_payload(frame)
    assert F.checksum(packet[:20]) == 0
    assert F.checksum(_v4_pseudo(packet)) == 0
    assert MARK in frame


def test_icmp_checksums_verify():
    v4 = _ip_payload(F.ipv4_icmp_echo(G0_MAC, G1_MAC, G0_IP, G1_IP, MARK))
    assert F.checksum(v4[20:]) == 0 and v4[20] == 8
    for frame in (F.ipv6_udp(G0_MAC, G1_MAC, G0_IP6, G1_IP6, 1, 2, MARK),
                  F.ipv6_icmp_echo(G0_MAC, G1_MAC, G0_IP6, G1_IP6, MARK),
                  F.ipv6_neighbor_solicit(G0_MAC, G0_IP6, G1_IP6, MARK)):
        assert F.checksum(_v6_pseudo(_ip_payload(frame))) == 0
        assert MARK in frame


def test_checksum_detects_a_flipped_bit():
    packet = bytearray(_ip_payload(F.ipv4_udp(G0_MAC, G1_MAC, G0_IP, G1_IP, 1, 2, MARK)))
    packet[bytes(packet).index(MARK)] ^= 0x01
    assert F.checksum(_v4_pseudo(bytes(packet))) != 0


def test_frames_match_scapy():
    """An independent implementation must agree on every field and checksum."""
    scapy = pytest.importorskip("scapy.all")
    for frame in (F.ipv4_udp(G0_MAC, G1_MAC, G0_IP, G1_IP, 1000, 2000, MARK, vlan=7),
                  F.ipv4_tcp_syn(G0_MAC, G1_MAC, G0_IP, G1_IP, 1000, 25, MARK),
                  F.ipv4_icmp_echo(G0_MAC, G1_MAC, G0_IP, G1_IP, MARK),
                  F.ipv6_udp(G0_MAC, G1_MAC, G0_IP6, G1_IP6, 1, 2, MARK),
                  F.ipv6_icmp_echo(G0_MAC, G1_MAC, G0_IP6, G1_IP6, MARK),
                  F.ipv6_neighbor_solicit(G0_MAC, G0_IP6, G1_IP6, MARK),
                  F.dhcp_discover(G0_MAC, MARK)):
        parsed = scapy.Ether(frame)
        rebuilt = scapy.Ether(frame)
        for layer in (scapy.IP, scapy.UDP, scapy.TCP, scapy.ICMP, scapy.IPv6):
            if rebuilt.haslayer(layer):
                for field in ("chksum", "len", "plen", "cksum"):
                    if field in rebuilt[layer].fields:
                        delattr(rebuilt[layer], field)
        if rebuilt.haslayer(scapy.IPv6):
            icmp6 = rebuilt[scapy.IPv6].payload
            if "cksum" in icmp6.fields:
                delattr(icmp6, "cksum")
        assert bytes(scapy.Ether(bytes(rebuilt))) == bytes(parsed), parsed.summary()


def test_arp_fields_and_marker_in_padding():
    frame = F.arp_request(G0_MAC, "192.168.100.99", G1_IP, MARK, sender_mac="52:54:00:de:ad:01")
    assert len(frame) == 60 and frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = struct.unpack(
        "!HHBBH6s4s6s4s", frame[14:42])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    assert sha == F.mac_bytes("52:54:00:de:ad:01") and frame[6:12] == F.mac_bytes(G0_MAC)
    assert str(ipaddress.IPv4Address(spa)) == "192.168.100.99"
    assert str(ipaddress.IPv4Address(tpa)) == G1_IP and tha == bytes(6)
    assert frame[42:42 + len(MARK)] == MARK


def test_rarp_announce_is_qemus_shape():
    frame = F.rarp_announce(G0_MAC, MARK)
    fields = struct.unpack("!HHBBH6s4s6s4s", frame[14:42])
    assert frame[12:14] == b"\x80\x35" and frame[:6] == b"\xff" * 6
    assert fields[4] == F.RARP_REQUEST
    assert fields[5] == fields[7] == F.mac_bytes(G0_MAC)
    assert fields[6] == fields[8] == bytes(4)


def test_dhcp_discover_addresses():
    frame = F.dhcp_discover(G0_MAC, MARK)
    packet = frame[14:]
    assert frame[:6] == b"\xff" * 6
    assert packet[12:16] == bytes(4) and packet[16:20] == b"\xff" * 4
    assert struct.unpack("!HH", packet[20:24]) == (68, 67)
    assert packet[28 + 236:28 + 240] == b"\x63\x82\x53\x63"


def test_markers_are_unique():
    markers = {F.new_marker() for i in range(1000)}
    assert len(markers) == 1000


def test_format_table_is_fixed_width():
    text = format_table({"a-case": {"guest": True, "host": False},
                         "b": {"guest": False, "host": True}})
    assert text == ("case    guest  host\n"
                    "a-case  yes    -\n"
                    "b       -      yes\n")


# -- lab (root) ---------------------------------------------------------------------------
@pytest.fixture
def prefix():
    name = "hfwf%d" % os.getpid()
    yield name
    cleanup_prefix(name)


@pytest.fixture
def lab(prefix):
    with Lab(prefix, guests=2) as built:
        yield built


def _ours(prefix):
    return [name for name in list_namespaces() if name.startswith(prefix + "-")]


@needs_root
def test_topology(lab):
    assert _ours(lab.prefix) == sorted([lab.hv, lab.guests[0].ns, lab.guests[1].ns])
    assert lab.hv_prefix == ["ip", "netns", "exec", lab.prefix + "-hv"]
    bridge_ports = lab.exec("hv", ["ip", "-o", "link", "show", "master", "br0"]).stdout
    assert "vnet0" in bridge_ports and "vnet1" in bridge_ports
    g1 = lab.exec("g1", ["ip", "-o", "addr", "show", "dev", "eth0"]).stdout
    assert "192.168.100.11/24" in g1 and "fd00:100::11/64" in g1 and "tentative" not in g1
    assert "52:54:00:00:00:01" in lab.exec("g1", ["ip", "-o", "link", "show", "eth0"]).stdout
    for key in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"):
        assert read_sysctl(lab.hv, key) == "1"
    ping6 = lab.exec("g0", ["ping", "-6", "-c1", "-W2", "fd00:100::1"], check=False)
    assert ping6.returncode == 0, ping6.stderr


@needs_root
def test_socket_opening_returns_the_thread_to_its_namespace(lab):
    before = os.stat("/proc/thread-self/ns/net").st_ino
    sock = packet_socket(lab.guests[0].ns, "eth0")
    sock.close()
    assert os.stat("/proc/thread-self/ns/net").st_ino == before
    with pytest.raises(OSError):
        packet_socket(lab.guests[0].ns, "br0")
    assert os.stat("/proc/thread-self/ns/net").st_ino == before
    with in_netns(lab.hv):
        assert os.stat("/proc/thread-self/ns/net").st_ino != before
        assert "br0" in {name for index, name in socket.if_nameindex()}


@needs_root
def test_tcp_listener_accepts_a_connection_from_another_guest(lab):
    listener = tcp_listener(lab.guests[1].ns, 5555)
    try:
        with in_netns(lab.guests[0].ns):
            client = socket.create_connection((lab.guests[1].ipv4, 5555), timeout=2)
        with client:
            client.sendall(MARK)
            listener.settimeout(2)
            conn, peer = listener.accept()
            with conn:
                conn.settimeout(2)
                assert conn.recv(64) == MARK and peer[0] == lab.guests[0].ipv4
    finally:
        listener.close()


@needs_root
def test_battery_skips_cases_the_lab_cannot_run(prefix):
    with Lab(prefix, guests=1) as lab:
        results = run_battery(lab)
    assert set(results) == {"to-guest-udp-from-host", "to-guest-dhcp-offer"}
    assert all(row["guest"] for row in results.values())


@needs_root
def test_no_rules_every_legit_case_reaches_the_other_guest(lab):
    results = run_battery(lab)
    assert set(results) == {case.name for case in CASES if not case.needs_lan}
    assert [name for name in LEGIT if not results[name]["guest"]] == []
    assert results["ipv4-udp-to-host"] == {"guest": False, "host": True}
    assert results["ipv4-udp"]["host"] is False
    assert results["arp-request"]["host"] is True


@needs_root
def test_ebtables_source_mac_rule_drops_only_the_spoofed_mac(lab):
    lab.exec("hv", ["ebtables", "-t", "nat", "-A", "PREROUTING", "-i", "vnet0",
                    "-s", "!", lab.guests[0].mac, "-j", "DROP"])
    results = run_battery(lab)
    assert results["spoofed-src-mac"]["guest"] is False
    assert [name for name in LEGIT if not results[name]["guest"]] == []
    assert results["arp-spoofed-sender-mac"]["guest"] is True  # Ethernet source is genuine


@needs_root
def test_iptables_forward_drop_udp_stops_bridged_ipv4_udp(lab):
    lab.exec("hv", ["iptables", "-A", "FORWARD", "-p", "udp", "-j", "DROP"])
    results = run_battery(lab, cases_by_name("ipv4-udp", "ipv4-tcp-syn", "ipv6-udp",
                                             "ipv4-udp-to-host"))
    assert results["ipv4-udp"]["guest"] is False
    assert results["ipv4-tcp-syn"]["guest"] is True
    assert results["ipv6-udp"]["guest"] is True  # ip6tables untouched
    assert results["ipv4-udp-to-host"]["host"] is True  # INPUT, not FORWARD


@needs_root
def test_iptables_input_verdict_counts_for_host_cases(lab):
    lab.exec("hv", ["iptables", "-A", "INPUT", "-p", "udp", "--dport", "41002", "-j", "DROP"])
    results = run_battery(lab, cases_by_name("ipv4-udp-to-host", "arp-request"))
    assert results["ipv4-udp-to-host"]["host"] is False
    assert results["arp-request"]["host"] is True


@needs_root
def test_lan_is_routed_and_filterable(prefix):
    with Lab(prefix, guests=2, lan=True) as lab:
        assert lab.lan in _ours(prefix)
        routed = cases_by_name("routed-udp-to-lan", "routed-udp-from-lan", "ipv4-udp")
        before = run_battery(lab, routed)
        lab.exec("hv", ["iptables", "-A", "FORWARD", "-o", "uplink0", "-j", "DROP"])
        after = run_battery(lab, routed)
    assert before["routed-udp-to-lan"]["lan"] and before["routed-udp-from-lan"]["guest"]
    assert after["routed-udp-to-lan"]["lan"] is False
    assert after["routed-udp-from-lan"]["guest"] is True
    assert after["ipv4-udp"]["guest"] is True
    assert _ours(prefix) == []


@needs_root
def test_teardown_deletes_every_namespace_also_on_error(prefix):
    with Lab(prefix, guests=3, lan=True) as lab:
        assert len(_ours(prefix)) == 5
        assert lab.ns("g2") == prefix + "-g2"
    assert _ours(prefix) == []
    with pytest.raises(RuntimeError, match="boom"):
        with Lab(prefix, guests=1):
            raise RuntimeError("boom")
    assert _ours(prefix) == []


@needs_root
def test_cleanup_prefix_removes_leftovers_only(prefix):
    subprocess.run(["ip", "netns", "add", prefix + "-stale"], check=True)
    subprocess.run(["ip", "netns", "add", prefix + "x-other"], check=True)
    try:
        assert cleanup_prefix(prefix) == [prefix + "-stale"]
        assert _ours(prefix) == [] and prefix + "x-other" in list_namespaces()
    finally:
        subprocess.run(["ip", "netns", "delete", prefix + "x-other"], check=False)


def test_prefix_is_validated():
    with pytest.raises(ValueError, match="lab prefix"):
        Lab("bad/prefix")
