# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A playbook that changes bindings while the re-apply watcher heals a flushed ruleset.

Both writers take the host lock, so whichever runs second must start from what the first one left
and from the store as it is then. The test makes them contend for real: it holds the lock itself,
flushes the ruleset, starts the playbook and waits until the watcher and the module both have the
lock file open, then lets go. A second round flushes again and again while the playbook runs, with
nobody holding the lock (a tool outside our control). Either way, once both settle the live owned
chains are exactly what the final store compiles to, with no jump in a built-in chain twice.
"""

import collections
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from ansible_run import PLAYBOOK_BIN, ROOT, host_vars, run_playbook
from lab import Lab

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import apply as _apply  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import transitions as _ops  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import plan as _plan  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.names import is_owned_chain
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import TOOL_ORDER, is_builtin_chain
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import TOOLS
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner, host_lock
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import Scope, jump_target
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import backend as _backend

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(PLAYBOOK_BIN)
    or not all(shutil.which(b) for b in ("ip", "nft", "iptables", "ebtables")),
    reason="needs root, iproute2, nft, iptables, ebtables and ansible-playbook")

SCRIPT = os.path.join(ROOT, "bin", "hypervisor-firewall-reapply")
FILTER_DIR = os.path.join(ROOT, "roles", "default_filters", "files")
SETTLE_DEADLINE = 10.0
# clean-traffic compiles to ebtables only; these rules give the NIC iptables and ip6tables chains too
WEB_FILTER = """<filter name='hfww-web' chain='root'>
  <filterref filter='clean-traffic'/>
  <rule action='accept' direction='in' priority='500'><tcp dstportstart='22'/></rule>
  <rule action='drop' direction='in' priority='500'><udp-ipv6 dstportstart='41009'/></rule>
</filter>
"""
PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - hypervisor.firewall.guest_nic_filter:
        config_dir: "{{ hfw_config_dir }}"
        lock_file: "{{ hfw_lock_file }}"
        lock_timeout: 60
        exclusive: true
        bindings: "{{ nics }}"
"""


def initial_store(state, lab):
    """Every default filter and hfww-web; guest 0 bound with clean-traffic."""
    for name in sorted(os.listdir(FILTER_DIR)):
        with open(os.path.join(FILTER_DIR, name), encoding="utf-8") as handle:
            state = _ops.define_filter(state, _filterxml.parse_filter_xml(handle.read())[0])
    state = _ops.define_filter(state, _filterxml.parse_filter_xml(WEB_FILTER)[0])
    g0 = lab.guests[0]
    binding = _actions.binding_from_params(dict(portdev=g0.tap, mac=g0.mac, filter="clean-traffic",
                                                parameters={"IP": g0.ipv4}))
    return _ops.set_bindings(state, [binding])


def nics(lab, ipv4_of_g0):
    g0, g1 = lab.guests
    return [{"portdev": g0.tap, "mac": g0.mac, "filter": "clean-traffic", "parameters": {"IP": ipv4_of_g0}},
            {"portdev": g1.tap, "mac": g1.mac, "filter": "hfww-web", "parameters": {"IP": g1.ipv4}}]


def remaining_plan(runner, config_dir):
    """The plan from the live kernel to what the store compiles to now (empty = consistent)."""
    stored = _store.load_store(config_dir)
    desired, _warnings = _service.build_desired(stored, _backend.select("xtables"), runner.list_devices())
    live, positions = _apply.read_live(runner, Scope(manage_networks=stored.manage_networks))
    return _plan.plan(desired, live, positions)


def wait_consistent(runner, config_dir, deadline=SETTLE_DEADLINE):
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        if remaining_plan(runner, config_dir).is_empty():
            return True
        time.sleep(0.1)
    return False


def duplicated_jumps(lab):
    """Jump rules into our chains that a built-in chain holds more than once, per tool and table."""
    dups = {}
    for tool in TOOL_ORDER:
        table, seen = None, collections.Counter()
        for line in lab.exec("hv", [TOOLS[tool][0]]).stdout.splitlines():
            words = line.split()
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith("-A ") and is_builtin_chain(tool, table, words[1]):
                target = jump_target(" ".join(words[2:]))
                if target and is_owned_chain(tool, table, target):
                    seen[(table, line)] += 1
        dups.update({(tool,) + key: n for key, n in seen.items() if n > 1})
    return dups


def lock_holders(path):
    """Pids other than ours with ``path`` open (the lock is taken by polling, so open = contending)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir("/proc/%s/fd" % pid)
            if any(os.readlink("/proc/%s/fd/%s" % (pid, fd)) == path for fd in fds):
                found.add(int(pid))
        except OSError:
            continue
    return found


def both_waiting(path, watcher_pid):
    holders = lock_holders(path)
    return watcher_pid in holders and len(holders) >= 2


class Background(threading.Thread):
    """Runs the playbook on a thread; .result holds (proc, recap) once done."""

    def __init__(self, *args, **kwargs):
        super().__init__(daemon=True)
        self.args, self.kwargs, self.result = args, kwargs, None

    def run(self):
        self.result = run_playbook(*self.args, **self.kwargs)


@pytest.fixture
def host(tmp_path):
    """A lab with the initial store applied and the watcher running in its hv namespace."""
    workdir = str(tmp_path)
    with Lab("hfwhfww_rr%d" % (os.getpid() % 10000), guests=2) as lab:
        hv = host_vars(lab.hv, workdir)
        runner = HostRunner(prefix=lab.hv_prefix)
        _service.reconcile(hv["hfw_config_dir"], lambda s: (initial_store(s, lab), []), runner, False,
                           lock_file=hv["hfw_lock_file"])
        log = open(os.path.join(workdir, "watch.log"), "w+")
        argv = lab.hv_prefix + [sys.executable, SCRIPT, "--config-dir", hv["hfw_config_dir"],
                                "--lock-file", hv["hfw_lock_file"], "--watch", "1"]
        watcher = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield lab, hv, runner, watcher, log
        finally:
            watcher.send_signal(signal.SIGTERM)
            watcher.wait(timeout=10)
            log.close()


def watcher_output(log):
    log.flush()
    log.seek(0)
    return log.read()


def assert_settled(lab, hv, runner, watcher, log):
    """Consistent now and a watcher tick later, no jump twice, the watcher alive; its error lines."""
    assert wait_consistent(runner, hv["hfw_config_dir"]), remaining_plan(runner, hv["hfw_config_dir"]).diff()
    time.sleep(1.5)
    assert remaining_plan(runner, hv["hfw_config_dir"]).is_empty()
    assert duplicated_jumps(lab) == {}
    output = watcher_output(log)
    assert watcher.poll() is None and "Traceback" not in output, output
    return [line for line in output.splitlines() if "error" in line]


def test_watcher_and_playbook_contending_for_the_lock_end_consistent(host, tmp_path):
    lab, hv, runner, watcher, log = host
    assert wait_consistent(runner, hv["hfw_config_dir"])
    inventory = {"hypervisors": {lab.hv: hv}}
    new_ip = "192.168.100.77"
    with host_lock(hv["hfw_lock_file"], timeout=10):
        lab.exec("hv", ["nft", "flush", "ruleset"])
        play = Background(str(tmp_path / "play"), PLAY, inventory, extra_vars={"nics": nics(lab, new_ip)})
        play.start()
        deadline = time.monotonic() + 60
        while not both_waiting(hv["hfw_lock_file"], watcher.pid):
            assert time.monotonic() < deadline and play.is_alive(), "watcher and module never both waited"
            time.sleep(0.05)
    play.join(timeout=120)
    proc, recap = play.result
    assert proc.returncode == 0 and recap[lab.hv]["changed"] == 1, proc.stdout[-4000:] + proc.stderr[-2000:]

    stored = _store.load_store(hv["hfw_config_dir"])
    assert sorted(stored.bindings) == ["vnet0", "vnet1"]
    assert dict(stored.bindings["vnet0"].parameters)["IP"] == new_ip
    assert assert_settled(lab, hv, runner, watcher, log) == []
    assert any(":FI-vnet1" in line for line in lab.exec("hv", ["iptables-save"]).stdout.splitlines())


def test_flushes_during_a_playbook_run_end_consistent(host, tmp_path):
    lab, hv, runner, watcher, log = host
    assert wait_consistent(runner, hv["hfw_config_dir"])
    inventory = {"hypervisors": {lab.hv: hv}}
    before = _store.load_store(hv["hfw_config_dir"])
    play = Background(str(tmp_path / "play"), PLAY, inventory, extra_vars={"nics": nics(lab, lab.guests[0].ipv4)})
    play.start()
    flushes = 0
    while play.is_alive():
        lab.exec("hv", ["nft", "flush", "ruleset"])
        flushes += 1
        time.sleep(0.25)
    proc, recap = play.result
    assert flushes >= 2
    after = _store.load_store(hv["hfw_config_dir"])
    if proc.returncode == 0:
        assert sorted(after.bindings) == ["vnet0", "vnet1"]
    else:
        # a flush inside the module's own transaction may fail it, cleanly, with the store put back
        assert "Traceback" not in proc.stdout + proc.stderr and after == before, proc.stdout[-4000:]
    # the watcher's own transactions race the flushes too: it logs one line and starts over
    for line in assert_settled(lab, hv, runner, watcher, log):
        assert line.startswith("hypervisor-firewall-reapply: error: ") and "bug in the rule compiler" not in line, line
