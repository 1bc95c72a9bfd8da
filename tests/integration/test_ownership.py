# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Own only what we wrote, against real netfilter (root, network namespaces named hfwts-*).

An admin's SSH guard named like a guest chain (``HI-ssh``, jumped to from INPUT), docker's
``DOCKER-USER`` jumping to a chain named like ours (``FI-trusted``) and an ebtables lookalike must
stay byte-identical through every operation; binding the tap whose chain name a foreign chain holds
is refused, naming it.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import OwnershipError  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import TOOLS, HostRunner  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import TOOL_ORDER  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(b) for b in ("ip", "ebtables")),
                                reason="needs root, iproute2 and ebtables (network namespaces)")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTER_DIR = os.path.join(ROOT, "roles", "default_filters", "files")
DEVICES = ("vnet0", "vnet1", "ssh")
L3_FILTER = """<filter name='hfw-own-l3' chain='root'>
  <filterref filter='clean-traffic'/>
  <rule action='accept' direction='in' priority='500'><tcp dstportstart='22'/></rule>
  <rule action='drop' direction='out' priority='500'><udp dstportstart='41009'/></rule>
</filter>
"""
FOREIGN = {
    "ip4": "*filter\n:HI-ssh - [0:0]\n:FI-trusted - [0:0]\n:DOCKER-USER - [0:0]\n-A INPUT -j HI-ssh\n"
           "-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j FI-trusted\n-A FI-trusted -j RETURN\n"
           "-A HI-ssh -s 10.0.0.1/32 -p tcp -m tcp --dport 22 -j ACCEPT\n"
           "-A HI-ssh -p tcp -m tcp --dport 22 -j DROP\nCOMMIT\n",
    "eb": "*nat\n:I-admin-mac ACCEPT\n-A I-admin-mac -j RETURN\n",
}
LOOKALIKES = ("HI-ssh", "FI-trusted", "DOCKER-USER", "I-admin-mac")


@pytest.fixture
def host(tmp_path):
    ns = "hfwts-%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for index, dev in enumerate(DEVICES):
            subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "add", dev, "type", "veth", "peer", "name",
                            "peer%d" % index], check=True)
        runner = HostRunner(prefix=["ip", "netns", "exec", ns])
        for tool, payload in FOREIGN.items():
            rc, _out, err = runner.restore(tool, payload)
            assert rc == 0, err
        yield runner, str(tmp_path)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


def params(work, **kw):
    base = dict(config_dir=os.path.join(work, "store"), lock_file=os.path.join(work, "lock"), lock_timeout=30)
    base.update(kw)
    return base


def nic(work, **kw):
    given = dict(state="present", bindings=None, portdev=None, mac=None, filter=None, parameters=None,
                 binding_xml=None, exclusive=False, takeover=False)
    given.update(kw)
    return params(work, **given)


def define(work, runner, xml):
    return _actions.nwfilter(params(work, name=None, xml=xml, definition=None, strict=False, state="present"),
                             False, runner)


def binding(dev, index):
    return dict(portdev=dev, mac="52:54:00:00:02:%02x" % index, filter="hfw-own-l3",
                parameters={"IP": "192.0.2.%d" % index})


def lookalike_lines(runner):
    found = {}
    for tool in TOOL_ORDER:
        rc, out, err = runner.run([TOOLS[tool][0]])
        assert rc == 0, err
        found[tool] = [line for line in out.splitlines() if any(name in line for name in LOOKALIKES)]
    return found


def test_foreign_lookalikes_stay_byte_identical_and_a_needed_name_is_refused(host):
    runner, work = host
    before = lookalike_lines(runner)
    assert before["ip4"] and before["eb"]
    steps = [lambda: [define(work, runner, open(os.path.join(FILTER_DIR, name), encoding="utf-8").read())
                      for name in sorted(os.listdir(FILTER_DIR))],
             lambda: define(work, runner, L3_FILTER),
             lambda: _actions.guest_nic_filter(nic(work, bindings=[binding("vnet0", 10), binding("vnet1", 11)]),
                                               False, runner),
             lambda: define(work, runner, L3_FILTER.replace("41009", "41010")),  # rebuilds both NICs
             lambda: _actions.guest_nic_filter(nic(work, state="absent", portdev="vnet1"), False, runner)]
    for step in steps:
        step()
        assert lookalike_lines(runner) == before
    ledger = _store.load_store(os.path.join(work, "store")).ledger
    assert ledger.has_chain("ip4", "filter", "HI-vnet0") and not ledger.has_chain("ip4", "filter", "HI-ssh")
    with pytest.raises(OwnershipError) as err:
        _actions.guest_nic_filter(nic(work, bindings=[binding("ssh", 12)]), False, runner)
    assert "HI-ssh" in err.value.msg and "rename or remove that chain" in err.value.msg
    assert lookalike_lines(runner) == before
    assert "ssh" not in _store.load_store(os.path.join(work, "store")).bindings


KILLED_BIND = """
import json, sys
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner
params, prefix = json.loads(sys.argv[1]), json.loads(sys.argv[2])
actions.guest_nic_filter(params, False, HostRunner(prefix=prefix))
"""
OUR_CHAIN_PREFIXES = ("libvirt-I-", "libvirt-O-", "I-vnet", "O-vnet", "FI-vnet", "FO-vnet", "HI-vnet", "libvirt-in",
                      "libvirt-out", "libvirt-host-in")


def live_chains(runner):
    """(tool, table, chain) of every declared chain named like ours, lookalikes excluded."""
    found = set()
    for tool in TOOL_ORDER:
        _rc, out, _err = runner.run([TOOLS[tool][0]])
        table = None
        for line in out.splitlines():
            if line.startswith("*"):
                table = line[1:].strip()
            elif line.startswith(":") and line[1:].split()[0].startswith(OUR_CHAIN_PREFIXES):
                name = line[1:].split()[0]
                if name not in LOOKALIKES:
                    found.add((tool, table, name))
    return found


def test_a_kill_at_any_point_leaves_everything_of_ours_recorded_and_the_next_run_converges(host):
    runner, work = host
    for name in sorted(os.listdir(FILTER_DIR)):
        with open(os.path.join(FILTER_DIR, name), encoding="utf-8") as handle:
            define(work, runner, handle.read())
    define(work, runner, L3_FILTER)
    start = nic(work, bindings=[binding("vnet0", 10)], exclusive=True)
    move = nic(work, bindings=[dict(binding("vnet0", 10), filter="clean-traffic"), binding("vnet1", 11)], exclusive=True)
    _actions.guest_nic_filter(start, False, runner)
    before = lookalike_lines(runner)
    env = dict(os.environ, PYTHONPATH=_store.__file__.split(os.sep + "ansible_collections" + os.sep, maxsplit=1)[0])
    log = os.path.join(work, "faults")
    counted = subprocess.run([sys.executable, "-c", KILLED_BIND, json.dumps(move), json.dumps(runner.prefix)],
                             env=dict(env, HFW_TEST_FAULT_LOG=log), capture_output=True, text=True, check=False)
    assert counted.returncode == 0, counted.stderr
    with open(log, encoding="utf-8") as handle:
        points = [line.split(" ", 2) for line in handle.read().splitlines()]
    renames = [n for n, kind, _detail in points if kind == "rename"]
    assert len(renames) == 2, "one commit before the apply, one that shrinks the ledger after it: %s" % points
    # the points that change something: every store rename and every restore (the reads change nothing)
    changing = [n for n, kind, detail in points if kind == "rename" or detail.endswith("-restore")]
    assert len(changing) >= 4, points
    _actions.guest_nic_filter(start, False, runner)
    for number in changing:
        killed = subprocess.run([sys.executable, "-c", KILLED_BIND, json.dumps(move), json.dumps(runner.prefix)],
                                env=dict(env, HFW_TEST_KILL_AT=number), capture_output=True, text=True, check=False)
        assert killed.returncode == -9, (number, killed.stderr)
        ledger = _store.load_store(os.path.join(work, "store")).ledger
        assert live_chains(runner) <= ledger.chains, "killed at point %s: a chain of ours is not recorded" % number
        assert lookalike_lines(runner) == before
        _actions.guest_nic_filter(move, False, runner)
        assert not _actions.guest_nic_filter(move, False, runner)["changed"], number
        assert live_chains(runner) == _store.load_store(os.path.join(work, "store")).ledger.chains
        _actions.guest_nic_filter(start, False, runner)
    assert lookalike_lines(runner) == before
