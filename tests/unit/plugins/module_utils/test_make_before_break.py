# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make-before-break across ebtables, iptables and ip6tables (simulated kernel, every restore recorded).

After every single restore of an apply (and of its rollback) each bound NIC must be filtered, in
every tool, by its old rules, its new rules or both; and no tool may lose a NIC's old rules
without new ones before every tool holds its new rules (the window of issue 13: ebtables emptied,
iptables not yet filled).
"""

import os
import signal
import subprocess
import sys

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import backend as _backend  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ApplyError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import runner as _runner
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import apply as _apply
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.names import NWF_GLOBAL
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import (
    TOOL_ORDER, Chain, TableState,
)
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import (
    jump_target, parse_live, tokenize,
)
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import hostile_host as H

# only iptables/ip6tables rules (layer 3): a filter the ebtables part of the host never sees
IP_ONLY = """<filter name='hfw-ip-only' chain='root'>
  <rule action='drop' direction='out' priority='500'><udp/></rule>
  <rule action='drop' direction='out' priority='500'><udp-ipv6/></rule>
</filter>
"""
# only ebtables rules (layer 2)
EB_ONLY = "no-mac-spoofing"
TAP = "vnet2"
DEV_OPTS = ("-i", "-o", "--physdev-in", "--physdev-out", "--in-interface", "--out-interface")


def nic_filter(dev, text):
    """What filters ``dev`` in one tool's dump: every owned chain its jumps reach, and its jumps."""
    ruleset, _pos = parse_live_any(text)
    found = set()
    for (tool, table), state in ruleset.items():
        todo = [rule for _builtin, rule in state.hooks if _mentions(rule, dev) or jump_target(rule) in NWF_GLOBAL]
        seen = set()
        while todo:
            rule = todo.pop()
            target = jump_target(rule)
            if target not in state.chains or target in seen:
                continue
            seen.add(target)
            rules = state.chains[target].rules
            if target in NWF_GLOBAL:
                mine = tuple(r for r in rules if _mentions(r, dev))
                found.update((table, target, r) for r in mine)
                todo += mine
            else:
                found.add((table, target, rules))
                todo += rules
    return frozenset(found)


def parse_live_any(text):
    tool = "eb" if "*nat" in text and "COMMIT" not in text else ("ip6" if "ip6tables" in text else "ip4")
    return parse_live(tool, text)


def _mentions(rule, dev):
    tokens = tokenize(rule)
    return any(opt in DEV_OPTS and value == dev for opt, value in zip(tokens, tokens[1:]))


class RecordingHost(H.FakeHost):
    """FakeHost that keeps every tool's dump after each successful restore."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.states = []

    def restore(self, tool, payload):
        rc, out, err = super().restore(tool, payload)
        if rc == 0:
            self.states.append(self.dumps())
        return rc, out, err

    def clone(self):
        return RecordingHost(H.copy.deepcopy(self.sims), self.devices, self.libvirt_bound, self.bridge_nf_off)


def filters_of(dumps, devs):
    return {dev: {tool: nic_filter(dev, dumps[tool]) for tool in TOOL_ORDER} for dev in devs}


def assert_never_open(states, old, new):
    """The two promises, checked on every recorded state."""
    for index, dumps in enumerate(states):
        now = filters_of(dumps, old)
        for dev in old:
            for tool in TOOL_ORDER:
                have, before, after = now[dev][tool], old[dev][tool], new[dev][tool]
                assert have in (before, after, before | after), (
                    "state %d: %s in %s is filtered by neither its old nor its new rules" % (index, dev, tool))
            lost = [t for t in TOOL_ORDER if old[dev][t] and not now[dev][t]]
            if lost:
                assert all(now[dev][t] >= new[dev][t] for t in TOOL_ORDER), (
                    "state %d: %s lost its old rules in %s before every tool had its new ones" % (index, dev, lost))


@pytest.fixture
def world(tmp_path):
    root, host = str(tmp_path), RecordingHost()
    H.populate(root, host)
    _actions.nwfilter(H.filter_params(root, xml=IP_ONLY), False, host)
    host.restores.clear()
    return root, host


def bind(root, host, filter_name):
    return _actions.guest_nic_filter(H.nic_params(root, portdev=TAP, mac="52:54:00:00:00:22", filter=filter_name,
                                                  parameters={"IP": "192.0.2.22"}), False, host)


def preview(root, host, filter_name):
    """(host, root) of a copy of the world after the bind: the kernel a converged apply ends in."""
    other = root + "-preview"
    probe = H.copy_world(root, host, other)
    bind(other, probe, filter_name)
    return probe, other


MOVES = [
    (EB_ONLY, "hfw-ip-only"),
    ("hfw-ip-only", EB_ONLY),
    ("clean-traffic", "web-in"),
    ("web-in", "clean-traffic"),
    ("hfw-ip-only", "web-in"),
]


@pytest.mark.parametrize("old_filter,new_filter", MOVES)
def test_every_restore_of_a_binding_move_keeps_the_nic_filtered(world, old_filter, new_filter):
    root, host = world
    bind(root, host, old_filter)
    devs = ("vnet0", "vnet1", TAP)
    old = filters_of(host.dumps(), devs)
    host.states.clear()
    assert bind(root, host, new_filter)["changed"]
    new = filters_of(host.dumps(), devs)
    assert old[TAP] != new[TAP]
    assert len(host.states) >= 2
    assert_never_open(host.states, old, new)
    # the bridge state left nothing behind: the planner sees the host converged
    host.restores.clear()
    assert not bind(root, host, new_filter)["changed"] and host.restores == []


def test_the_old_order_opens_the_window_this_test_looks_for(world):
    """Counterfactual: one restore per tool that removes and adds at once (the code before make-before-break)."""
    root, host = world
    bind(root, host, EB_ONLY)
    devs = (TAP,)
    old = filters_of(host.dumps(), devs)
    probe, _other = preview(root, host, "hfw-ip-only")
    desired_dumps = probe.dumps()
    new = filters_of(desired_dumps, devs)
    # replay the direct path: ebtables first (old rules out), then iptables (new rules in)
    mixed = dict(host.dumps(), eb=desired_dumps["eb"])
    with pytest.raises(AssertionError, match="lost its old rules"):
        assert_never_open([mixed], old, new)


def test_a_binding_removed_and_a_network_changed_keep_every_other_nic_filtered(world):
    root, host = world
    bind(root, host, "web-in")
    devs = ("vnet0", "vnet1", TAP)
    old = filters_of(host.dumps(), devs)
    host.states.clear()
    _actions.virt_network_fw(H.net_params(root, mode="isolated"), False, host)
    _actions.guest_nic_filter(H.nic_params(root, portdev=TAP, state="absent"), False, host)
    new = filters_of(host.dumps(), devs)
    assert new[TAP] == {tool: frozenset() for tool in TOOL_ORDER}
    assert new["vnet0"] == old["vnet0"] and host.states
    assert_never_open(host.states, old, new)


@pytest.mark.parametrize("failing", ["eb", "ip4", "ip6"])
def test_a_failure_in_either_step_rolls_back_through_safe_states(world, failing):
    root, host = world
    bind(root, host, EB_ONLY)
    devs = (TAP,)
    old = filters_of(host.dumps(), devs)
    before = H.snapshot(root, host)
    probe, _other = preview(root, host, "hfw-ip-only")
    new = filters_of(probe.dumps(), devs)
    host.states.clear()
    host.fail_on = {failing}
    with pytest.raises(ApplyError) as err:
        bind(root, host, "hfw-ip-only")
    host.fail_on = set()
    assert H.snapshot(root, host) == before
    assert_never_open(host.states, old, new)
    states = err.value.context["tool_states"]
    assert states == {"ebtables": "as before", "iptables": "as before", "ip6tables": "as before"}
    assert "ebtables: as before, iptables: as before, ip6tables: as before" in err.value.msg


def test_a_half_done_apply_is_converged_by_the_next_writer(world):
    """A kill after the make step leaves the bridge state (store written, old chains still in):
    the next writer plans from it and ends where an uninterrupted apply ends."""
    root, host = world
    bind(root, host, EB_ONLY)
    old = filters_of(host.dumps(), (TAP,))
    probe, other = preview(root, host, "hfw-ip-only")
    desired = {}
    for tool in TOOL_ORDER:
        desired.update(parse_live(tool, probe.sims[tool].save())[0])
    live, positions = _apply.read_live(host, _apply.Scope())
    make = _apply.plan(_apply.bridge_state(desired, live), live, positions)
    for tool in make.tools_changed:
        assert host.sims[tool].restore(make.payload(tool))[0] == 0
    assert_never_open([host.dumps()], old, filters_of(probe.dumps(), (TAP,)))
    assert host.dumps() != probe.dumps()
    # the store as the killed run left it: the new objects, and a ledger of the old and new chains
    recorded = _store.load_store(os.path.join(root, "store")).ledger
    H.shutil.rmtree(os.path.join(root, "store"))
    H.shutil.copytree(os.path.join(other, "store"), os.path.join(root, "store"))
    killed = _store.load_store(os.path.join(root, "store"))
    _store.write_changes(os.path.join(root, "store"), killed, killed.with_changes(ledger=recorded.union(killed.ledger)))
    result = bind(root, host, "hfw-ip-only")
    assert result["changed"] and host.dumps() == probe.dumps()
    assert not bind(root, host, "hfw-ip-only")["changed"]


def test_bridge_state_keeps_what_desired_drops():
    live = {("eb", "nat"): TableState("eb", "nat", {"libvirt-I-vnet0": Chain("libvirt-I-vnet0", ("-j DROP",), "ACCEPT")},
                                      (("PREROUTING", "-i vnet0 -j libvirt-I-vnet0"),)),
            ("ip4", "filter"): TableState("ip4", "filter", {
                "libvirt-in": Chain("libvirt-in", ("-m physdev --physdev-in vnet0 -g FI-vnet0",)),
                "FI-vnet0": Chain("FI-vnet0", ("-j DROP",))}, (("FORWARD", "-j libvirt-in"),))}
    desired = {("ip4", "filter"): TableState("ip4", "filter", {
        "libvirt-in": Chain("libvirt-in", ("-m physdev --physdev-in vnet1 -g FI-vnet1",)),
        "FI-vnet1": Chain("FI-vnet1", ("-j ACCEPT",))}, (("FORWARD", "-j libvirt-in"),))}
    bridge = _apply.bridge_state(desired, live)
    assert bridge[("eb", "nat")] == live[("eb", "nat")]
    ip4 = bridge[("ip4", "filter")]
    assert ip4.chains["libvirt-in"].rules == (
        "-m physdev --physdev-in vnet1 -g FI-vnet1", "-m physdev --physdev-in vnet0 -g FI-vnet0")
    assert set(ip4.chains) == {"libvirt-in", "FI-vnet0", "FI-vnet1"} and ip4.hooks == (("FORWARD", "-j libvirt-in"),)


# ---------------------------------------------------------------- timeouts, signals, bugs

class FaultyHost(RecordingHost):
    """Raises the next fault in ``faults`` (or sends that signal to this process) in place of
    returning from one ip4 restore; the restore goes in first, as a timed-out tool may have committed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.faults = []

    def restore(self, tool, payload):
        if tool != "ip4" or not self.faults:
            return super().restore(tool, payload)
        fault = self.faults.pop()
        super().restore(tool, payload)
        if isinstance(fault, BaseException):
            raise fault
        os.kill(os.getpid(), fault)  # the guard raises Interrupted from its handler
        raise AssertionError("signal %s did not interrupt the apply" % fault)


@pytest.fixture
def faulty(tmp_path):
    root, host = str(tmp_path), FaultyHost()
    H.populate(root, host)
    _actions.nwfilter(H.filter_params(root, xml=IP_ONLY), False, host)
    bind(root, host, EB_ONLY)
    return root, host


@pytest.mark.parametrize("fault,words", [
    (ApplyError("iptables-restore --noflush -w 10 did not finish within 120s and was killed"),
     "did not finish within 120s"),
    (RuntimeError("boom"), "unexpected RuntimeError: boom (a bug: please report it)"),
    (signal.SIGTERM, "interrupted by SIGTERM"),
    (signal.SIGHUP, "interrupted by SIGHUP"),
])
def test_timeout_signal_or_bug_mid_apply_rolls_back_store_and_every_tool(faulty, fault, words):
    root, host = faulty
    before = H.snapshot(root, host)
    handler = signal.getsignal(signal.SIGTERM)
    host.faults.append(fault)
    with pytest.raises(ApplyError) as err:
        bind(root, host, "hfw-ip-only")
    assert words in err.value.msg
    assert "rolled back: ebtables: as before, iptables: as before, ip6tables: as before" in err.value.msg
    assert err.value.context["tool"] == "ip4" and err.value.context["rolled_back"] == []
    if isinstance(fault, int):
        assert err.value.context["interrupted_by"] == signal.Signals(fault).name
    assert H.snapshot(root, host) == before
    # the handlers are back: the guard was local to the apply
    assert signal.getsignal(signal.SIGTERM) is handler


def test_a_signal_while_rolling_back_is_held_until_the_rollback_is_done(faulty):
    root, host = faulty
    before = H.snapshot(root, host)
    host.faults.append(RuntimeError("first"))
    real_save = host.save
    sent = []

    def save_and_signal(tool):
        if not host.faults and host.states and not sent:
            sent.append(tool)
            os.kill(os.getpid(), signal.SIGHUP)
        return real_save(tool)

    host.save = save_and_signal
    seen = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: seen.append(signum))
    try:
        with pytest.raises(ApplyError, match="unexpected RuntimeError: first"):
            bind(root, host, "hfw-ip-only")
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert sent and H.snapshot(root, host) == before
    # the process's own handler still hears about the signal, after the rollback
    assert seen == [signal.SIGHUP]


def test_fault_point_kills_at_the_nth_call_and_logs_every_call(tmp_path):
    log = tmp_path / "faults"
    code = ("import sys; from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import runner; "
            "[runner.fault_point('tool', 'call%d' % n) for n in range(1, 6)]; sys.exit(3)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **{_runner.FAULT_LOG_ENV: str(log)})
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 3
    assert log.read_text().splitlines() == ["%d tool call%d" % (n, n) for n in range(1, 6)]
    log.unlink()
    env[_runner.KILL_AT_ENV] = "3"
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == -signal.SIGKILL
    assert log.read_text().splitlines() == ["1 tool call1", "2 tool call2", "3 tool call3"]


def test_fault_point_does_nothing_without_the_variables(monkeypatch):
    monkeypatch.delenv(_runner.KILL_AT_ENV, raising=False)
    monkeypatch.delenv(_runner.FAULT_LOG_ENV, raising=False)
    count = _runner._FAULTS["count"]
    _runner.fault_point("tool", "x")
    assert _runner._FAULTS["count"] == count


def test_a_bug_anywhere_in_the_kernel_step_puts_the_store_back_with_one_message(faulty, monkeypatch):
    root, host = faulty
    before = H.snapshot(root, host)

    def broken(*_args, **_kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(_backend, "converge_all", broken)
    with pytest.raises(ApplyError, match=r"unexpected KeyError while converging the kernel: 'surprise' \(a bug: "
                                         r"please report it\); the store was put back"):
        bind(root, host, "hfw-ip-only")
    assert H.snapshot(root, host) == before
