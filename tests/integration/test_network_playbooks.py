# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""virt_network_fw driven by playbooks against a lab hypervisor namespace, judged by packets.

The hypervisor keeps an admin's own firewall that we must never touch: FORWARD policy DROP (so
nothing is forwarded unless a network's rules accept it), a custom chain, a NAT rule, and INPUT
rules that reject everything else guests send to the host (so the DHCP/DNS accepts are ours).

Each probe sends one UDP datagram (or opens one TCP connection) and reports what the receiver
saw: ``('delivered', source address)``, ``('refused', None)`` when an ICMP port-unreachable came
back (our REJECT), or ``('lost', None)``.  TCP over IPv6 never says refused: Linux keeps an
ICMPv6 port-unreachable for a SYN as a soft error, so a rejected connection attempt times out.
"""

import errno
import os
import re
import select
import shutil
import socket
import uuid

import pytest

from ansible_run import PLAYBOOK_BIN, host_vars, run_playbook
from lab import Lab, in_netns, tcp_listener, udp_socket
from lab.netns import write_sysctl, UPLINK_HV_IPV4, UPLINK_HV_IPV6, UPLINK_LAN_IPV4, UPLINK_LAN_IPV6

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import network as _network  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import networks as _netfw  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.names import is_owned_chain
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import Scope, parse_live

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("iptables-save")
    or not os.path.exists(PLAYBOOK_BIN),
    reason="needs root, iproute2, iptables and ansible-playbook next to the test interpreter")

V4, V6 = socket.AF_INET, socket.AF_INET6
WINDOW = 0.5  # seconds; delivery inside one machine takes well under a millisecond
SAVE = {"ip4": "iptables-save", "ip6": "ip6tables-save", "eb": "ebtables-save"}
FOREIGN = {
    "ip4": ["-P FORWARD DROP", "-N ADMIN", "-A FORWARD -j ADMIN", "-A ADMIN -s 203.0.113.0/24 -j DROP",
            "-A INPUT -i br0 -j REJECT --reject-with icmp-port-unreachable",
            "-t nat -A POSTROUTING -s 198.51.100.0/24 -o uplink0 -j MASQUERADE"],
    # neighbour discovery to the host must keep working for IPv6 to work at all
    "ip6": ["-P FORWARD DROP", "-A INPUT -i br0 -p ipv6-icmp -j ACCEPT",
            "-A INPUT -i br0 -j REJECT --reject-with icmp6-port-unreachable"],
}
LAB = dict(name="lab", bridge="br0", ipv4="192.168.100.1/24", ipv6="fd00:100::1/64")
LAB2 = dict(name="lab2", bridge="br1", ipv4="192.168.101.1/24", ipv6="fd00:101::1/64", mode="route",
            forward_dev="uplink0")

NETWORKS_PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - name: virtual networks
      hypervisor.firewall.virt_network_fw:
        config_dir: "{{ hfw_config_dir }}"
        lock_file: "{{ hfw_lock_file }}"
        name: "{{ item.name | default(omit) }}"
        bridge: "{{ item.bridge | default(omit) }}"
        mode: "{{ item.mode | default(omit) }}"
        ipv4: "{{ item.ipv4 | default(omit) }}"
        ipv6: "{{ item.ipv6 | default(omit) }}"
        forward_dev: "{{ item.forward_dev | default(omit) }}"
        nat_ipv6: "{{ item.nat_ipv6 | default(omit) }}"
        state: "{{ item.state | default('present') }}"
      loop: "{{ networks }}"
"""

# A guest filter with L3 rules: it accepts everything, so the guest gets FI/FO/HI chains whose
# accepts RETURN into FORWARD, where libvirt-in-post and the network's chains come next.
HOLE_PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - name: a filter that accepts all IPv4 and IPv6
      hypervisor.firewall.nwfilter:
        config_dir: "{{ hfw_config_dir }}"
        lock_file: "{{ hfw_lock_file }}"
        xml: |
          <filter name='hfw-accept-all' chain='root'>
            <rule action='accept' direction='inout' priority='500'><all/></rule>
            <rule action='accept' direction='inout' priority='500'><all-ipv6/></rule>
          </filter>
    - name: bound to guest 0
      hypervisor.firewall.guest_nic_filter:
        config_dir: "{{ hfw_config_dir }}"
        lock_file: "{{ hfw_lock_file }}"
        portdev: vnet0
        mac: "52:54:00:00:00:00"
        filter: hfw-accept-all
    - name: an isolated network
      hypervisor.firewall.virt_network_fw:
        config_dir: "{{ hfw_config_dir }}"
        lock_file: "{{ hfw_lock_file }}"
        name: lab
        bridge: br0
        mode: isolated
        ipv4: 192.168.100.1/24
        ipv6: fd00:100::1/64
"""


# --------------------------------------------------------------------------- probes

def _socket_in(ns, family, kind):
    with in_netns(ns):
        sock = socket.socket(family, kind)
    sock.setblocking(False)
    return sock


def udp_probe(src_ns, dst_ns, dst_ip, port, family):
    receiver = udp_socket(dst_ns, port, family)
    sender = _socket_in(src_ns, family, socket.SOCK_DGRAM)
    marker = uuid.uuid4().bytes
    try:
        sender.connect((dst_ip, port))
        sender.send(marker)
        readable, _w, _x = select.select([receiver, sender], [], [], WINDOW)
        if receiver in readable:
            data, address = receiver.recvfrom(2048)
            return ("delivered", address[0]) if data == marker else ("lost", None)
        if sender in readable:
            try:
                sender.recv(2048)
            except ConnectionRefusedError:
                return ("refused", None)
        return ("lost", None)
    finally:
        receiver.close()
        sender.close()


def tcp_probe(src_ns, dst_ns, dst_ip, port, family):
    listener = tcp_listener(dst_ns, port, family)
    client = _socket_in(src_ns, family, socket.SOCK_STREAM)
    try:
        client.connect_ex((dst_ip, port))
        _r, writable, _x = select.select([], [client], [], WINDOW)
        error = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if writable else errno.ETIMEDOUT
        if error == errno.ECONNREFUSED:
            return ("refused", None)
        if error:
            return ("lost", None)
        conn, address = listener.accept()
        conn.close()
        return ("delivered", address[0])
    finally:
        listener.close()
        client.close()


def reached(probe):
    return probe[0] == "delivered"


def host_services(lab, guest):
    """What each of the host's DHCP/DNS services sees from the guest, by (family, proto, port)."""
    out = {}
    for family, host, dhcp in ((V4, lab.host_ipv4, 67), (V6, lab.host_ipv6, 547)):
        out[(family, "udp", dhcp)] = udp_probe(guest.ns, lab.hv, host, dhcp, family)[0]
        out[(family, "udp", 53)] = udp_probe(guest.ns, lab.hv, host, 53, family)[0]
        out[(family, "tcp", 53)] = tcp_probe(guest.ns, lab.hv, host, 53, family)[0]
    return out


# --------------------------------------------------------------------------- host state

def save(lab, tool):
    """*-save text without its timestamped header lines, counters zeroed."""
    text = lab.exec("hv", [SAVE[tool]]).stdout
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return "\n".join(re.sub(r"\[\d+:\d+\]", "[0:0]", line) for line in lines)


def foreign_part(lab, tool):
    """The save lines of chains and rules we do not own (policies included), by table.  A table
    with nothing but default ACCEPT policies is left out: restoring into it creates it."""
    tables, table = {}, None
    for line in save(lab, tool).splitlines():
        if line.startswith("*"):
            table = line[1:]
            tables[table] = []
            continue
        words = line.split()
        chain = words[1] if line.startswith("-A ") else words[0][1:] if line.startswith(":") else None
        jump = words[-1] if "-j" in words or "-g" in words else None
        if not any(name and is_owned_chain(tool, table, name) for name in (chain, jump)):
            tables[table].append(line)
    return {name: lines for name, lines in tables.items() if any(not _DEFAULT.match(line) for line in lines)}


_DEFAULT = re.compile(r"^(:\S+ ACCEPT( \[0:0\])?|COMMIT)$")


def live_network_rules(lab):
    out = {}
    for tool in ("ip4", "ip6"):
        live, _positions = parse_live(tool, lab.exec("hv", [SAVE[tool]]).stdout, Scope())
        for (_t, table), state in live.items():
            out.update({(tool, table, name): chain.rules for name, chain in state.chains.items()
                        if name.startswith("LIBVIRT_")})
    return out


def compiled_rules(*options):
    networks = [_network.network_from_params(o) for o in options]
    return {(tool, table, name): chain.rules for (tool, table), state in _netfw.compile_networks(networks).items()
            for name, chain in state.chains.items()}


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab("hfwhfwl%d" % (os.getpid() % 10000), guests=2, lan=True) as the_lab:
        the_lab.exec("hv", ["ip", "link", "add", "br1", "type", "bridge"])
        the_lab.exec("hv", ["ip", "addr", "add", "192.168.101.1/24", "dev", "br1"])
        the_lab.exec("hv", ["ip", "link", "set", "br1", "up"])
        # every probe that is refused needs its ICMP error; the kernel would rate-limit them
        write_sysctl(the_lab.hv, "net.ipv4.icmp_ratelimit", 0)
        write_sysctl(the_lab.hv, "net.ipv6.icmp.ratelimit", 0)
        for tool, command in (("ip4", "iptables"), ("ip6", "ip6tables")):
            for rule in FOREIGN[tool]:
                the_lab.exec("hv", [command, "-w"] + rule.split())
        the_lab.workdir = str(tmp_path_factory.mktemp("hfwl"))
        the_lab.foreign = {tool: foreign_part(the_lab, tool) for tool in SAVE}
        yield the_lab


def play(lab, text, check=False, **extra_vars):
    proc, recap = run_playbook(lab.workdir, text, {"hv": {lab.hv: host_vars(lab.hv, lab.workdir)}},
                               check=check, extra_vars=extra_vars)
    assert proc.returncode == 0 and recap[lab.hv]["failed"] == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for tool in SAVE:
        assert foreign_part(lab, tool) == lab.foreign[tool], "foreign %s rules changed" % tool
    return recap[lab.hv]


def apply(lab, *networks, check=False):
    return play(lab, NETWORKS_PLAY, check=check, networks=list(networks))


# --------------------------------------------------------------------------- tests

# mode -> (guest -> LAN source seen by the LAN per family, LAN -> guest verdict)
MODES = {
    "nat": ({V4: UPLINK_HV_IPV4, V6: UPLINK_HV_IPV6}, "refused"),
    "route": ({V4: "192.168.100.10", V6: "fd00:100::10"}, "delivered"),
    "isolated": (None, "refused"),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_who_reaches_whom(lab, mode):
    options = dict(LAB, mode=mode)
    if mode != "isolated":
        options.update(forward_dev="uplink0", nat_ipv6=mode == "nat")
    apply(lab, options)
    g0, g1 = lab.guests
    lan_source, lan_to_guest = MODES[mode]
    for family, lan_ip, g0_ip, g1_ip in ((V4, UPLINK_LAN_IPV4, g0.ipv4, g1.ipv4),
                                         (V6, UPLINK_LAN_IPV6, g0.ipv6, g1.ipv6)):
        out = udp_probe(g0.ns, lab.lan, lan_ip, 41000, family)
        assert out == (("delivered", lan_source[family]) if lan_source else ("refused", None)), family
        assert reached(tcp_probe(g0.ns, lab.lan, lan_ip, 41001, family)) == reached(out), family
        assert udp_probe(lab.lan, g0.ns, g0_ip, 41002, family)[0] == lan_to_guest, family
        assert reached(tcp_probe(lab.lan, g0.ns, g0_ip, 41003, family)) == (lan_to_guest == "delivered"), family
        assert udp_probe(g0.ns, g1.ns, g1_ip, 41004, family) == ("delivered", g0_ip), family
        assert tcp_probe(g1.ns, g0.ns, g0_ip, 41005, family) == ("delivered", g1_ip), family
    assert set(host_services(lab, g0).values()) == {"delivered"}


def test_open_mode_adds_nothing(lab):
    """libvirt adds no rules for mode open: the admin's FORWARD DROP and INPUT rejects decide."""
    apply(lab, dict(LAB, mode="open"))
    assert live_network_rules(lab) == compiled_rules(dict(LAB, mode="open"))
    assert all(not rules for rules in live_network_rules(lab).values())
    g0, g1 = lab.guests
    assert udp_probe(g0.ns, lab.lan, UPLINK_LAN_IPV4, 41000, V4) == ("lost", None)
    assert udp_probe(g0.ns, g1.ns, g1.ipv4, 41004, V4) == ("lost", None)
    assert "delivered" not in host_services(lab, g0).values()
    assert host_services(lab, g0)[(V4, "udp", 67)] == "refused"


def test_second_run_and_check_mode_change_nothing(lab):
    routed = dict(LAB, mode="route", forward_dev="uplink0")
    apply(lab, routed)
    assert apply(lab, routed)["changed"] == 0
    before = {tool: save(lab, tool) for tool in SAVE}
    assert apply(lab, dict(LAB, mode="isolated"), check=True)["changed"] == 1
    assert {tool: save(lab, tool) for tool in SAVE} == before
    assert live_network_rules(lab) == compiled_rules(routed)


def test_two_networks_side_by_side_and_removal(lab):
    nat = dict(LAB, mode="nat", forward_dev="uplink0")
    apply(lab, nat, LAB2)
    assert live_network_rules(lab) == compiled_rules(nat, LAB2)
    g0 = lab.guests[0]
    assert udp_probe(g0.ns, lab.lan, UPLINK_LAN_IPV4, 41000, V4) == ("delivered", UPLINK_HV_IPV4)
    # removal by name alone; the other network's rules stay exactly as compiled for it alone
    assert apply(lab, {"name": "lab", "state": "absent"})["changed"] == 1
    assert live_network_rules(lab) == compiled_rules(LAB2)
    assert udp_probe(g0.ns, lab.lan, UPLINK_LAN_IPV4, 41000, V4) == ("lost", None)
    # removal by bridge alone; nothing named LIBVIRT_ is left in any table
    assert apply(lab, {"bridge": "br1", "state": "absent"})["changed"] == 1
    for tool in SAVE:
        assert "LIBVIRT_" not in save(lab, tool), tool
    assert apply(lab, {"bridge": "br1", "state": "absent"})["changed"] == 0


def test_guest_filter_cannot_open_an_isolated_network(lab):
    """THE HOLE (docs/docsite/rst/design.rst, "FORWARD ordering and the routed-traffic hole")."""
    play(lab, HOLE_PLAY)
    g0, g1 = lab.guests
    chains = save(lab, "ip4")
    assert ":FI-vnet0" in chains and ":HI-vnet0" in chains
    for family, lan_ip, g1_ip in ((V4, UPLINK_LAN_IPV4, g1.ipv4), (V6, UPLINK_LAN_IPV6, g1.ipv6)):
        assert udp_probe(g0.ns, lab.lan, lan_ip, 41000, family) == ("refused", None), family
        assert not reached(tcp_probe(g0.ns, lab.lan, lan_ip, 41001, family)), family
        assert udp_probe(g0.ns, g1.ns, g1_ip, 41004, family)[0] == "delivered", family
    assert udp_probe(lab.lan, g0.ns, g0.ipv4, 41002, V4) == ("refused", None)
    assert set(host_services(lab, g0).values()) == {"delivered"}
    # Counterfactual: libvirt's own libvirt-in-post rule (no --physdev-is-bridged) accepts the
    # routed packet before LIBVIRT_FWO can reject it, and the isolated guest reaches the LAN.
    lab.exec("hv", ["iptables", "-w", "-I", "libvirt-in-post", "-m", "physdev", "--physdev-in", "vnet0",
                    "-j", "ACCEPT"])
    assert udp_probe(g0.ns, lab.lan, UPLINK_LAN_IPV4, 41000, V4) == ("delivered", g0.ipv4)
