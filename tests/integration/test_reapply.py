# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bin/hypervisor-firewall-reapply against a lab host whose firewall service "restarted".

The lab host gets the default filters, clean-traffic on both guests and a NAT network on br0.
Then its tables are flushed the way a firewall restart does it, and the command (or its watcher)
must put our chains back byte for byte, with the same packet verdicts.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from lab import Lab, format_table, run_battery

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import network as _network  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import transitions as _ops  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.names import is_owned_chain
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import TOOL_ORDER, is_builtin_chain
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import TOOLS
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import jump_target

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "bin", "hypervisor-firewall-reapply")
FILTER_DIR = os.path.join(ROOT, "roles", "default_filters", "files")
HEAL_DEADLINE = 5.0
# clean-traffic is all ebtables; these rules give each guest iptables and ip6tables chains too
GUEST_FILTER = """<filter name='hfw-guest' chain='root'>
  <filterref filter='clean-traffic'/>
  <rule action='accept' direction='in' priority='500'><tcp dstportstart='22'/></rule>
  <rule action='drop' direction='in' priority='500'><udp dstportstart='41009'/></rule>
  <rule action='drop' direction='in' priority='500'><udp-ipv6 dstportstart='41009'/></rule>
</filter>
"""

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(b) for b in ("ip", "nft", "iptables", "ebtables")),
    reason="needs root, iproute2, nft, iptables and ebtables (network namespaces)")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A lab with filters, bindings and a network applied; yields (lab, params, expected owned lines)."""
    work = tmp_path_factory.mktemp("reapply")
    params = dict(config_dir=str(work / "store"), lock_file=str(work / "lock"), lock_timeout=30)
    with Lab("hfwhfwm_ra%d" % os.getpid(), guests=2) as lab:
        runner = HostRunner(prefix=lab.hv_prefix)
        _service.reconcile(params["config_dir"], lambda s: (define_all(s, lab), []), runner, False,
                           lock_file=params["lock_file"])
        network = _network.network_from_params(dict(name="labnet", bridge=lab.bridge, mode="nat",
                                                    ipv4=lab.host_ipv4 + "/24"))
        _actions.virt_network_fw(dict(params, network_xml=_network.format_network_xml(network), state="present"),
                                 False, runner=runner)
        expected = owned_lines(lab)
        assert len([l for l in expected["ip4"] if l.split()[1].startswith(":")]) > 4, expected
        yield lab, params, expected


def define_all(state, lab):
    for name in sorted(os.listdir(FILTER_DIR)):
        with open(os.path.join(FILTER_DIR, name), encoding="utf-8") as handle:
            state = _ops.define_filter(state, _filterxml.parse_filter_xml(handle.read())[0])
    state = _ops.define_filter(state, _filterxml.parse_filter_xml(GUEST_FILTER)[0])
    bindings = [_actions.binding_from_params(dict(portdev=g.tap, mac=g.mac, filter="hfw-guest",
                                                  parameters={"IP": g.ipv4})) for g in lab.guests]
    return _ops.set_bindings(state, bindings)


def save(lab, tool):
    return lab.exec("hv", [TOOLS[tool][0]]).stdout


def owned_lines(lab):
    """Per tool: the *-save lines of our chains and of our jumps in built-in chains, in save order."""
    found = {}
    for tool in TOOL_ORDER:
        kept, table = [], None
        for line in save(lab, tool).splitlines():
            words = line.split()
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":") and is_owned_chain(tool, table, words[0][1:]) \
                    and not is_builtin_chain(tool, table, words[0][1:]):
                kept.append("%s %s" % (table, line))
            elif line.startswith("-A "):
                target = jump_target(" ".join(words[2:]))
                if is_owned_chain(tool, table, words[1]) or (target and is_owned_chain(tool, table, target)):
                    kept.append("%s %s" % (table, line))
        found[tool] = kept
    return found


def restart_flush(lab):
    """What `systemctl restart iptables ip6tables ebtables` does before loading its own rules."""
    for binary in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            lab.exec("hv", [binary, "-t", table, "-F"])
            lab.exec("hv", [binary, "-t", table, "-X"])
    for table in ("filter", "nat"):
        lab.exec("hv", ["ebtables", "-t", table, "-F"])
        lab.exec("hv", ["ebtables", "-t", table, "-X"])


def reapply(lab, params, *extra, python=sys.executable):
    argv = [python, SCRIPT, "--config-dir", params["config_dir"], "--lock-file", params["lock_file"]]
    return lab.exec("hv", argv + list(extra), check=False)


def test_restart_flush_is_restored_byte_identical_with_the_same_verdicts(host):
    lab, params, expected = host
    filtered = run_battery(lab)
    restart_flush(lab)
    assert owned_lines(lab) == {tool: [] for tool in TOOL_ORDER}
    unfiltered = run_battery(lab)
    assert unfiltered != filtered, "the filters must change some verdict, or this test proves nothing"

    done = reapply(lab, params)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("restored from the store (2 bindings, 1 network):")
    assert "iptables filter: chains " in done.stdout and "FI-vnet0" in done.stdout
    assert "ebtables nat: chains " in done.stdout and "libvirt-I-vnet1" in done.stdout
    assert owned_lines(lab) == expected
    healed = run_battery(lab)
    assert healed == filtered, format_table(filtered) + "\nafter re-apply:\n" + format_table(healed)

    again = reapply(lab, params)
    assert (again.returncode, again.stdout) == (0, "in sync (2 bindings, 1 network)\n"), again.stderr
    assert owned_lines(lab) == expected


def test_check_reports_drift_without_changing_anything(host):
    lab, params, expected = host
    in_sync = reapply(lab, params, "--check")
    assert (in_sync.returncode, in_sync.stdout) == (0, "in sync (2 bindings, 1 network)\n"), in_sync.stderr
    lab.exec("hv", ["iptables", "-F", "FI-vnet0"])
    drift = reapply(lab, params, "--check")
    assert drift.returncode == 2, drift.stderr
    assert drift.stdout.splitlines() == ["drifted from the store (2 bindings, 1 network):",
                                         "  iptables filter: chains FI-vnet0"]
    assert owned_lines(lab) != expected
    assert reapply(lab, params).returncode == 0
    assert owned_lines(lab) == expected


def test_errors_are_one_line_and_exit_1(host):
    lab, params, _expected = host
    missing = reapply(lab, dict(params, config_dir=params["config_dir"] + "-typo"))
    usage = reapply(lab, params, "--check", "--watch", "1")
    for done in (missing, usage):
        assert done.returncode == 1 and done.stdout == ""
        assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert "does not exist" in missing.stderr and "cannot be combined" in usage.stderr


def test_engine_runs_without_ansible(host):
    """The installed command has no Ansible on the host: importing it must never be attempted."""
    lab, params, _expected = host
    code = ("import runpy, sys; sys.modules['ansible'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    done = lab.exec("hv", [sys.executable, "-c", code, SCRIPT, "--check", "--config-dir", params["config_dir"],
                           "--lock-file", params["lock_file"]], check=False)
    assert (done.returncode, done.stdout) == (0, "in sync (2 bindings, 1 network)\n"), done.stderr


def wait_healed(lab, expected, deadline):
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        if owned_lines(lab) == expected:
            return time.monotonic() - start
        time.sleep(0.05)
    return None


@pytest.mark.parametrize("mode", ["nft-monitor", "polling"])
def test_watcher_heals_a_flushed_ruleset_by_itself(host, tmp_path, mode):
    lab, params, expected = host
    lab.exec("hv", ["nft", "flush", "ruleset"])
    log = open(tmp_path / "watch.log", "w+")
    extra = ["--no-monitor"] if mode == "polling" else []
    argv = ["ip", "netns", "exec", lab.hv, sys.executable, SCRIPT, "--config-dir", params["config_dir"],
            "--lock-file", params["lock_file"], "--watch", "1"] + extra
    watcher = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_healed(lab, expected, HEAL_DEADLINE) is not None, "no heal after start"
        time.sleep(0.3)
        lab.exec("hv", ["nft", "flush", "ruleset"])
        recovery = wait_healed(lab, expected, HEAL_DEADLINE)
        if recovery is None:
            log.seek(0)
        assert recovery is not None, "the watcher did not heal within %ss:\n%s" % (
            HEAL_DEADLINE, "" if recovery is not None else log.read())
        print("\nwatcher (%s, --watch 1) recovered from `nft flush ruleset` in %.2f s" % (mode, recovery))
        time.sleep(1.5)
        assert owned_lines(lab) == expected
    finally:
        watcher.send_signal(signal.SIGTERM)
        rc = watcher.wait(timeout=10)
    log.seek(0)
    output = log.read()
    log.close()
    assert rc == 0, output
    assert output.count("restored from the store") == 2, output
    assert ("(polling only)" in output) == (mode == "polling")


ROLE_PLAY = """
- hosts: all
  gather_facts: false
  roles:
    - role: hypervisor.firewall.reapply
      vars:
        reapply_state: "{{ state }}"
        reapply_prefix: "{{ prefix }}"
        reapply_python: "{{ python }}"
        reapply_config_dir: "{{ hfw_config_dir }}"
        reapply_lock_file: "{{ hfw_lock_file }}"
        reapply_install_packages: false
        reapply_manage_systemd: false
"""


def test_role_installs_a_working_command_and_removes_it(host, tmp_path):
    from ansible_run import changed_by_play
    lab, params, expected = host
    prefix = tmp_path / "prefix"

    def play(state):
        return changed_by_play(str(tmp_path), lab.hv, params, ROLE_PLAY,
                               state=state, prefix=str(prefix), python=sys.executable)

    command = prefix / "sbin" / "hypervisor-firewall-reapply"
    engine = prefix / "lib" / "hypervisor-firewall" / "module_utils"
    engine.mkdir(parents=True)
    (engine / "_gone_in_this_version.py").write_text("")  # left by an earlier version
    assert play("present") > 0
    assert command.read_text().startswith("#!%s\n" % sys.executable) and os.access(command, os.X_OK)
    assert (engine / "reapply.py").exists() and not (engine / "_module.py").exists()
    assert not (engine / "_gone_in_this_version.py").exists()
    assert play("present") == 0

    restart_flush(lab)
    done = lab.exec("hv", [str(command), "--config-dir", params["config_dir"], "--lock-file", params["lock_file"]],
                    check=False)
    assert done.returncode == 0 and done.stdout.startswith("restored from the store"), done.stderr
    assert owned_lines(lab) == expected

    assert play("absent") > 0
    assert not command.exists() and not (prefix / "lib" / "hypervisor-firewall").exists()
    assert owned_lines(lab) == expected, "removing the command must leave the rules alone"
