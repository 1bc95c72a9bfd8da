# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Networks with several addresses per family, and open networks, with real packets, both backends.

The bridge carries a second IPv4 and a second IPv6 subnet and guest g1 an address in each. Like
libvirt, every address of the network gets its own forwarding and NAT rules: g1's packets from the
second subnets reach the LAN (masqueraded behind the uplink for NAT, with their own source when
routed), and are rejected by the bridge's catch-all when the network lists the first subnets only.
An open network gets no rule, no LIBVIRT_* chain and no nft table.
"""

import os
import select
import shutil
import socket
import uuid

import pytest

from lab import Lab
from lab.netns import (UPLINK_HV_IPV4, UPLINK_HV_IPV6, UPLINK_LAN_IPV4, UPLINK_LAN_IPV6, in_netns, udp_socket,
                       write_sysctl)

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import network as _network  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import transitions as _ops  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("iptables-save"),
                                reason="needs root, nft and iptables")

V4, V6 = socket.AF_INET, socket.AF_INET6
WINDOW = 0.5  # seconds; delivery inside one machine takes well under a millisecond
SECOND = {V4: ("10.77.0.1", "10.77.0.11", 24), V6: ("fd00:177::1", "fd00:177::11", 64)}
FIRST = dict(ipv4="192.168.100.1/24", ipv6="fd00:100::1/64")
BOTH = dict(ipv4=["192.168.100.1/24", "10.77.0.1/24"], ipv6=["fd00:100::1/64", "fd00:177::1/64"])
LAN = {V4: UPLINK_LAN_IPV4, V6: UPLINK_LAN_IPV6}
MASQUERADED = {V4: UPLINK_HV_IPV4, V6: UPLINK_HV_IPV6}


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with Lab("hfwhfwmip%d" % (os.getpid() % 10000), guests=2, lan=True) as lab:
        write_sysctl(lab.hv, "net.ipv4.icmp_ratelimit", 0)
        write_sysctl(lab.hv, "net.ipv6.icmp.ratelimit", 0)
        g1 = lab.guests[1]
        for family, (bridge_ip, guest_ip, prefix) in SECOND.items():
            flags = ["nodad"] if family == V6 else []
            lab.exec("hv", ["ip", "addr", "add", "%s/%d" % (bridge_ip, prefix), "dev", lab.bridge] + flags)
            lab.exec(g1.ns, ["ip", "addr", "add", "%s/%d" % (guest_ip, prefix), "dev", g1.ifname] + flags)
        lab.workdir = str(tmp_path_factory.mktemp("manyips"))
        lab.runner = HostRunner(prefix=lab.hv_prefix)
        yield lab


def apply(lab, backend, **options):
    network = _network.network_from_params(dict(name="lab", bridge=lab.bridge, **options))

    def mutate(state):
        return _ops.set_network(state.with_changes(networks={}), network), []
    return _service.reconcile(os.path.join(lab.workdir, "store"), mutate, lab.runner, False,
                              lock_file=os.path.join(lab.workdir, "lock"), backend=backend)


def probe_from(src_ns, source, dst_ns, dst_ip, port, family):
    """UDP from ``source`` to the LAN: ('delivered', source seen), ('refused', None) or ('lost', None)."""
    receiver = udp_socket(dst_ns, port, family)
    with in_netns(src_ns):
        sender = socket.socket(family, socket.SOCK_DGRAM)
    sender.setblocking(False)
    marker = uuid.uuid4().bytes
    try:
        sender.bind((source, 0))
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


def from_second_subnets(lab, port):
    g1 = lab.guests[1]
    return {family: probe_from(g1.ns, SECOND[family][1], lab.lan, LAN[family], port + n, family)
            for n, family in enumerate((V4, V6))}


def libvirt_chains(lab):
    text = lab.exec("hv", ["iptables-save"]).stdout + lab.exec("hv", ["ip6tables-save"]).stdout
    return sorted(set(line.split()[0] for line in text.splitlines() if line.startswith(":LIBVIRT_")))


def nft_tables(lab):
    return [line for line in lab.exec("hv", ["nft", "list", "tables"]).stdout.splitlines() if "libvirt_network" in line]


@pytest.mark.parametrize("backend", ["xtables", "nftables"])
def test_nat_masquerades_every_address(host, backend):
    apply(host, backend, mode="nat", forward_dev="uplink0", nat_ipv6=True, **FIRST)
    assert from_second_subnets(host, 42000) == {V4: ("refused", None), V6: ("refused", None)}
    apply(host, backend, mode="nat", forward_dev="uplink0", nat_ipv6=True, **BOTH)
    assert from_second_subnets(host, 42010) == {family: ("delivered", MASQUERADED[family]) for family in (V4, V6)}
    # the first subnets keep working beside them
    g1 = host.guests[1]
    assert probe_from(g1.ns, g1.ipv4, host.lan, LAN[V4], 42020, V4) == ("delivered", MASQUERADED[V4])
    assert not apply(host, backend, mode="nat", forward_dev="uplink0", nat_ipv6=True, **BOTH).changed


@pytest.mark.parametrize("backend", ["xtables", "nftables"])
def test_route_forwards_every_address_with_its_own_source(host, backend):
    apply(host, backend, mode="route", forward_dev="uplink0", **FIRST)
    assert from_second_subnets(host, 42030) == {V4: ("refused", None), V6: ("refused", None)}
    apply(host, backend, mode="route", forward_dev="uplink0", **BOTH)
    assert from_second_subnets(host, 42040) == {family: ("delivered", SECOND[family][1]) for family in (V4, V6)}


@pytest.mark.parametrize("backend", ["xtables", "nftables"])
def test_an_open_network_creates_no_chain_and_no_table(host, backend):
    apply(host, backend, mode="nat", forward_dev="uplink0", **BOTH)
    assert libvirt_chains(host) or nft_tables(host)
    outcome = apply(host, backend, mode="open", **BOTH)
    assert outcome.rules_changed
    assert libvirt_chains(host) == [] and nft_tables(host) == []
    assert not apply(host, backend, mode="open", **BOTH).changed
