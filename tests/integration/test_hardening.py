# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hostile conditions against real netfilter in network namespaces (root).

Faults inside a restore (a line the kernel rejects, a restore killed mid-transaction), packets
sent while filters are rebuilt, two writers at once, and other tools' rules in the nft and the
legacy iptables variants.  Every namespace is named hfwhfwr-* and deleted afterwards.
"""

import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

import pytest

from lab import Lab, packet_socket
from lab import frames as F
from lab.battery import PACKET_OUTGOING, SPOOF_MAC
from save_views import foreign_view, is_ours, store_bytes, without_comments

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import apply as _apply  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import transitions as _ops  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import backend as _backend
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ApplyError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import TOOL_ORDER
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import TOOLS
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import _RESTORE_OPTS, HostRunner, host_lock
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import Scope

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(b) for b in ("ip", "iptables-legacy-restore", "ebtables")),
    reason="needs root, iproute2, ebtables and both iptables variants (network namespaces)")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTER_DIR = os.path.join(ROOT, "roles", "default_filters", "files")
# gives a NIC iptables and ip6tables chains in both directions, on top of clean-traffic's ebtables
L3_FILTER = """<filter name='hfw-l3' chain='root'>
  <filterref filter='clean-traffic'/>
  <rule action='accept' direction='in' priority='500'><tcp dstportstart='22'/></rule>
  <rule action='accept' direction='in' priority='500'><tcp-ipv6 dstportstart='22'/></rule>
  <rule action='drop' direction='out' priority='500'><udp dstportstart='41009'/></rule>
  <rule action='drop' direction='out' priority='500'><udp-ipv6 dstportstart='41009'/></rule>
</filter>
"""
DEVICES = ("vnet0", "vnet1", "vnet2", "vnet3")
# docker, firewalld (iptables backend) and an admin, the way their rules sit in a host's tables
FOREIGN_IP4 = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-USER - [0:0]
:FORWARD_IN_ZONES - [0:0]
:FWDI_public - [0:0]
:INPUT_direct - [0:0]
-A INPUT -j INPUT_direct
-A INPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 22 -m comment --comment "admin: ssh from  the lan" -j ACCEPT
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -j FORWARD_IN_ZONES
-A FORWARD -s 192.0.2.0/24 -j DROP
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-USER -j RETURN
-A FORWARD_IN_ZONES -i eth0 -g FWDI_public
-A FWDI_public -p icmp -j ACCEPT
-A INPUT_direct -p udp -m udp --dport 4789 -j DROP
COMMIT
"""
FOREIGN_EB = """*filter
:FORWARD DROP
:ADMIN-EB ACCEPT
-A FORWARD -j ADMIN-EB
-A ADMIN-EB -p ARP -i eth0 -j ACCEPT
*nat
:ADMIN-NAT ACCEPT
-A PREROUTING -j ADMIN-NAT
-A ADMIN-NAT -d 01:80:c2:00:00:00 -j DROP
"""
FOREIGN_IP6 = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:INPUT_direct - [0:0]
-A INPUT -j INPUT_direct
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -j RETURN
-A INPUT_direct -s fd00::/8 -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
"""


# ---------------------------------------------------------------- helpers

def nic_params(work, **kw):
    params = dict(config_dir=os.path.join(work, "store"), lock_file=os.path.join(work, "lock"), lock_timeout=30,
                  state="present", bindings=None, portdev=None, mac=None, filter=None, parameters=None,
                  binding_xml=None, exclusive=False, takeover=False)
    params.update(kw)
    return params


def filter_params(work, xml):
    return dict(nic_params(work), name=None, xml=xml, definition=None, strict=False)


def define_filters(params, runner):
    """The default filters plus hfw-l3, in one store transaction (one call per file is slower)."""
    def mutate(state):
        for name in sorted(os.listdir(FILTER_DIR)):
            with open(os.path.join(FILTER_DIR, name), encoding="utf-8") as handle:
                state = _ops.define_filter(state, _filterxml.parse_filter_xml(handle.read())[0])
        return _ops.define_filter(state, _filterxml.parse_filter_xml(L3_FILTER)[0]), []
    _service.reconcile(params["config_dir"], mutate, runner, False, lock_file=params["lock_file"])


def binding(dev, index, filter_name="clean-traffic", mac=None):
    return dict(portdev=dev, mac=mac or "52:54:00:00:01:%02x" % index, filter=filter_name,
                parameters={"IP": "192.0.2.%d" % index})


def save(runner, binary):
    rc, out, err = runner.run([binary])
    assert rc == 0, err
    return without_comments(out)


def dumps(runner):
    return {tool: save(runner, TOOLS[tool][0]) for tool in TOOL_ORDER}


def chain_rules(text, table, chain):
    rules, current = [], None
    for line in text.splitlines():
        if line.startswith("*"):
            current = line[1:]
        elif current == table and line.startswith("-A %s " % chain):
            rules.append(line)
    return rules


@pytest.fixture
def bare_ns():
    """A namespace with veth NICs named like taps (no dummy driver here); yields (namespace, runner)."""
    ns = "hfwhfwr-%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for index, dev in enumerate(DEVICES):
            subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "add", dev, "type", "veth", "peer", "name",
                            "peer%d" % index], check=True)
        yield ns, HostRunner(prefix=["ip", "netns", "exec", ns])
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


@pytest.fixture
def applied(bare_ns, tmp_path):
    """vnet0 bound to hfw-l3 (chains in all three tools); yields (runner, params)."""
    _ns, runner = bare_ns
    params = nic_params(str(tmp_path))
    define_filters(params, runner)
    result = _actions.guest_nic_filter(dict(params, bindings=[binding("vnet0", 10, "hfw-l3")]), False, runner)
    assert result["changed"] and result["rebuilt_devices"] == ["vnet0"]
    return runner, params


# ---------------------------------------------------------------- 1. faults inside a restore

class BadIp6Runner(HostRunner):
    """Adds a jump to a chain that does not exist to every ip6tables payload: the kernel refuses it."""

    def restore(self, tool, payload):
        if tool == "ip6":
            head, sep, tail = payload.rpartition("COMMIT\n")
            payload = head + "-A INPUT -j HFW-NO-SUCH-CHAIN\n" + sep + tail
        return super().restore(tool, payload)


def test_rejected_ip6_line_leaves_every_table_and_the_store_as_they_were(applied):
    runner, params = applied
    before, stored = dumps(runner), store_bytes(params["config_dir"])
    bad = BadIp6Runner(prefix=runner.prefix)
    change = dict(params, bindings=[binding("vnet1", 11, "hfw-l3")])
    with pytest.raises(ApplyError) as err:
        _actions.guest_nic_filter(change, False, bad)
    ctx = err.value.context
    assert ctx["tool"] == "ip6" and ctx["rolled_back"] == ["eb", "ip4"] and ctx["rollback_errors"] == []
    assert "HFW-NO-SUCH-CHAIN" in ctx["stderr"]
    assert dumps(runner) == before
    assert store_bytes(params["config_dir"]) == stored
    # the same change through a sound runner goes in: the refusal above was the injected line alone
    assert _actions.guest_nic_filter(change, False, runner)["rebuilt_devices"] == ["vnet1"]
    assert dumps(runner) != before


class KilledIp4Runner(HostRunner):
    """Feeds iptables-restore its payload up to the first COMMIT, then SIGKILLs it mid-transaction."""

    killed_running = None

    def restore(self, tool, payload):
        if tool != "ip4":
            return super().restore(tool, payload)
        argv = self.prefix + [self._binary(TOOLS[tool][1], tool)] + _RESTORE_OPTS[tool]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        proc.stdin.write(payload[:payload.index("COMMIT\n")])
        proc.stdin.flush()
        time.sleep(0.3)
        # `ip netns exec` execs the tool, so this pid is iptables-restore itself
        self.killed_running = proc.poll() is None
        proc.kill()
        out, err = proc.communicate()
        return proc.returncode, out, err


def test_restore_killed_halfway_leaves_the_old_rules(applied):
    runner, params = applied
    before, stored = dumps(runner), store_bytes(params["config_dir"])
    killer = KilledIp4Runner(prefix=runner.prefix)
    with pytest.raises(ApplyError) as err:
        _actions.guest_nic_filter(dict(params, bindings=[binding("vnet1", 11, "hfw-l3")]), False, killer)
    assert killer.killed_running, "iptables-restore exited before the kill: the test proved nothing"
    ctx = err.value.context
    assert ctx["tool"] == "ip4" and ctx["rc"] == -9 and ctx["rolled_back"] == ["eb"]
    assert dumps(runner) == before
    assert store_bytes(params["config_dir"]) == stored


# ---------------------------------------------------------------- 1c. no unfiltered window

HARMLESS_RULE = "<rule action='drop' direction='out' priority='-700'><mac protocolid='0x88b5'/></rule>\n"
PACKET_STATISTICS, SOL_PACKET, SO_RCVBUFFORCE = 6, 263, 33


class Counter:
    """Counts frames carrying each marker at one packet socket, in a thread, until stopped."""

    def __init__(self, sock, markers):
        self.sock, self.markers = sock, markers
        self.seen = {m: 0 for m in markers}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            if not select.select([self.sock], [], [], 0.05)[0]:
                continue
            while True:
                try:
                    data, addr = self.sock.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                for marker in self.markers:
                    if marker in data:
                        self.seen[marker] += 1


def sender(sock, frames, stop, sent):
    while not stop.is_set():
        for frame in frames:
            sock.send(frame)
        sent[0] += 1
        time.sleep(0.0005)


def drops(sock):
    """Frames the kernel dropped at this packet socket because its buffer was full."""
    return struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))[1]


def test_no_spoofed_frame_passes_while_clean_traffic_is_redefined(tmp_path):
    with Lab("hfwhfwr_win%d" % os.getpid(), guests=2) as lab:
        g0, g1 = lab.guests
        for index in range(5, 9):
            lab.exec("hv", ["ip", "link", "add", "vnet%d" % index, "type", "veth", "peer", "name", "vp%d" % index])
            lab.exec("hv", ["ip", "link", "set", "vnet%d" % index, "master", lab.bridge, "up"])
        runner = HostRunner(prefix=lab.hv_prefix)
        params = nic_params(str(tmp_path))
        define_filters(params, runner)
        spoof_marker, legit_marker = F.new_marker(), F.new_marker()
        spoofed = F.ipv4_udp(SPOOF_MAC, g1.mac, g0.ipv4, g1.ipv4, 40000, 41004, spoof_marker)
        legit = F.ipv4_udp(g0.mac, g1.mac, g0.ipv4, g1.ipv4, 40000, 41001, legit_marker)
        out, into = packet_socket(g0.ns, "eth0"), packet_socket(g1.ns, "eth0")
        into.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        counter = Counter(into, (spoof_marker, legit_marker))
        counter.thread.start()
        try:
            # unfiltered, the spoofed frame arrives: the receiver can see a failure
            out.send(spoofed)
            time.sleep(0.2)
            assert counter.seen[spoof_marker] == 1
            bindings = [dict(portdev=g.tap, mac=g.mac, filter="clean-traffic", parameters={"IP": g.ipv4})
                        for g in lab.guests]
            bindings += [binding("vnet%d" % i, i) for i in range(5, 9)]
            _actions.guest_nic_filter(dict(params, bindings=bindings), False, runner)
            churn(str(tmp_path), runner, out, (spoofed, legit), counter)
        finally:
            counter.stop.set()
            counter.thread.join()
            out.close()
            into.close()


def churn(work, runner, out, frames, counter):
    with open(os.path.join(FILTER_DIR, "clean-traffic.xml"), encoding="utf-8") as handle:
        plain = handle.read()
    extended = plain.replace("</filter>", HARMLESS_RULE + "</filter>")
    spoof_marker, legit_marker = counter.markers
    base_spoof, base_legit = counter.seen[spoof_marker], counter.seen[legit_marker]
    stop, sent = threading.Event(), [0]
    thread = threading.Thread(target=sender, args=(out, frames, stop, sent), daemon=True)
    thread.start()
    try:
        for round_ in range(10):
            result = _actions.nwfilter(filter_params(work, extended if round_ % 2 == 0 else plain), False, runner)
            assert result["changed"] and "vnet0" in result["rebuilt_devices"], result
    finally:
        stop.set()
        thread.join()
    time.sleep(0.2)
    assert sent[0] > 100
    assert counter.seen[spoof_marker] == base_spoof, "a spoofed frame got through during a rebuild"
    # legit frames kept flowing, so the receiver was listening the whole time and lost nothing
    assert counter.seen[legit_marker] > 0.9 * sent[0]
    assert drops(counter.sock) == 0


# ---------------------------------------------------------------- 2. two writers at once

CHILD = """
import json, sys
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner
params, prefix = json.loads(sys.argv[1]), json.loads(sys.argv[2])
result = _actions.guest_nic_filter(params, False, HostRunner(prefix=prefix))
print(json.dumps(result["rebuilt_devices"]))
"""


def test_two_writers_at_once_end_in_exactly_one_desired_state(applied):
    runner, params = applied
    wanted = {
        "a": [binding("vnet1", 21), binding("vnet2", 22, "hfw-l3")],
        "b": [binding("vnet2", 32), binding("vnet3", 33, "hfw-l3"), binding("vnet0", 30, "hfw-l3")],
    }
    base = _store.load_store(params["config_dir"])
    expected = {}
    for key, items in wanted.items():
        state = _ops.set_bindings(base, [_actions.binding_from_params(i) for i in items], exclusive=True)
        expected[key] = (state.bindings, _service.build_desired(state, _backend.select("xtables"), set(DEVICES))[0])
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".build", "collections"))
    # both children start while the test holds the lock, so they contend for it when it opens
    with host_lock(params["lock_file"]):
        children = [subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(dict(params, bindings=items, exclusive=True)),
             json.dumps(runner.prefix)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for items in wanted.values()]
        time.sleep(1.5)
        assert all(child.poll() is None for child in children)
    for child in children:
        out, err = child.communicate(timeout=25)
        assert child.returncode == 0, err
    live, _positions = _apply.read_live(runner, Scope())
    winners = [key for key, (_b, desired) in expected.items() if comparable(live) == comparable(desired)]
    assert len(winners) == 1, "the kernel holds neither desired state exactly"
    assert _store.load_store(params["config_dir"]).bindings == expected[winners[0]][0]
    texts = dumps(runner)
    for tool, table, chain in (("eb", "nat", "PREROUTING"), ("eb", "nat", "POSTROUTING"),
                               ("ip4", "filter", "FORWARD"), ("ip6", "filter", "FORWARD"),
                               ("ip4", "filter", "INPUT")):
        rules = chain_rules(texts[tool], table, chain)
        assert len(rules) == len(set(rules)), (tool, chain, rules)


def comparable(ruleset):
    """Chains exactly; hooks as a set (the live side lists them in save order, INPUT first)."""
    return {key: (state.chains, sorted(state.hooks)) for key, state in ruleset.items()}


# ---------------------------------------------------------------- 3. other tools' rules

def without_empty_tables(texts):
    """Save texts minus tables that hold only built-in chains with policy ACCEPT and no rule: nft
    creates such a table on first use and keeps it, with no effect on any packet."""
    kept = {}
    for tool, text in texts.items():
        blocks = [b for b in ("\n" + text).split("\n*") if b.strip()]
        kept[tool] = [b for b in blocks if any(
            line.startswith("-A ") or (line.startswith(":") and line.split()[1] not in ("ACCEPT", "-"))
            for line in b.splitlines())]
    return kept


def load(runner, tool_binary, text):
    rc, _out, err = runner.run([tool_binary], data=text)
    assert rc == 0, err


def apply_and_remove(runner, params):
    """Bind two NICs (one with L3 rules), then remove them; returns (apply result, removal result, dumps)."""
    added = _actions.guest_nic_filter(
        dict(params, bindings=[binding("vnet0", 10, "hfw-l3"), binding("vnet1", 11)]), False, runner)
    assert added["changed"]
    during = dumps(runner)
    removed = _actions.guest_nic_filter(
        dict(params, state="absent", bindings=[{"portdev": "vnet0"}, {"portdev": "vnet1"}]), False, runner)
    assert removed["changed"]
    return added, removed, during


def test_docker_firewalld_and_admin_rules_in_the_nft_variant_stay_byte_identical(bare_ns, tmp_path):
    _ns, runner = bare_ns
    load(runner, "ebtables-restore", FOREIGN_EB)
    load(runner, "iptables-nft-restore", FOREIGN_IP4)
    load(runner, "ip6tables-nft-restore", FOREIGN_IP6)
    params = nic_params(str(tmp_path))
    define_filters(params, runner)
    initial = dumps(runner)
    _added, _removed, during = apply_and_remove(runner, params)
    for tool in TOOL_ORDER:
        assert foreign_view(tool, during[tool]) == foreign_view(tool, initial[tool]), tool
    for tool, chain in (("ip4", "FORWARD"), ("ip4", "INPUT"), ("ip6", "FORWARD"), ("ip6", "INPUT")):
        now, old = chain_rules(during[tool], "filter", chain), chain_rules(initial[tool], "filter", chain)
        ours = [line for line in now if is_ours(tool, "filter", line)]
        assert ours and now == ours + old, (tool, chain, now)
    assert all(":FORWARD DROP" in during[tool] for tool in TOOL_ORDER)
    assert chain_rules(during["eb"], "nat", "PREROUTING")[-1] == "-A PREROUTING -j ADMIN-NAT"
    assert dumps(runner) == initial


def test_legacy_tables_are_left_alone_and_reported(bare_ns, tmp_path):
    _ns, runner = bare_ns
    load(runner, "iptables-legacy-restore", FOREIGN_IP4)
    load(runner, "ip6tables-legacy-restore", FOREIGN_IP6)
    params = nic_params(str(tmp_path))
    define_filters(params, runner)
    legacy = {name: save(runner, name) for name in ("iptables-legacy-save", "ip6tables-legacy-save")}
    initial = dumps(runner)
    added, removed, during = apply_and_remove(runner, params)
    assert {name: save(runner, name) for name in legacy} == legacy
    assert "DOCKER" not in during["ip4"] and "-A FORWARD -j libvirt-" in during["ip4"]
    for result in (added, removed):
        assert any("iptables-legacy tables present" in w for w in result["warnings"]), result["warnings"]
    assert without_empty_tables(dumps(runner)) == without_empty_tables(initial)
