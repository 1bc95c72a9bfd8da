# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/adopt.yml against a namespace hypervisor and a temporary libvirt root.

The root holds libvirt's own filters, two live bindings (vnet0's address only in
adopt_binding_parameters, as libvirtd learns it and never writes it down) and libvirt's networks.
The check run with --diff changes neither the kernel nor the store; the real run installs the
chains (a spoofed source MAC is dropped, the guest's own traffic passes, an admin's rule stays);
a second run changes nothing.
"""

import os
import re
import shutil

import pytest

from ansible_run import PLAYBOOK_BIN, ROOT, host_vars, run_playbook
from lab import Lab, format_table, run_battery
from lab.battery import cases_by_name

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import apply as _apply  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.plan import plan
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import Scope
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import backend as _backend
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import libvirt_root

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not os.path.exists(PLAYBOOK_BIN),
    reason="needs root, iproute2 and ansible-playbook next to the test interpreter")

ADOPT = os.path.join(ROOT, "playbooks", "adopt.yml")
SAVE = {"eb": ["ebtables-save"], "ip4": ["iptables-save"], "ip6": ["ip6tables-save"]}
ADMIN_RULE = ["iptables", "-A", "INPUT", "-s", "10.0.0.1/32", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"]
CASES = ("ipv4-udp", "spoofed-src-mac", "spoofed-src-ip")


def kernel(lab):
    """Every tool's full save text without comment lines (they carry dates)."""
    return {tool: "".join(line for line in lab.exec("hv", argv).stdout.splitlines(True) if not line.startswith("#"))
            for tool, argv in SAVE.items()}


def verdicts(lab):
    """Whether each case's frame reached the other guest."""
    results = run_battery(lab, cases_by_name(*CASES))
    return {name: row["guest"] for name, row in results.items()}, format_table(results)


def debug_lines(stdout):
    """The adopt.yml summary lines ("bindings: ...", "networks: ...") printed by its debug task."""
    return dict(re.findall(r'^\s+"(bindings|networks|skipped): (.*)",?$', stdout, re.M))


def test_adopt_playbook_check_then_take_over_then_nothing_to_do(tmp_path):
    workdir, root = str(tmp_path / "work"), str(tmp_path / "libvirt")
    with Lab("hfwhfww_ap%d" % (os.getpid() % 10000), guests=2) as lab:
        g0, g1 = lab.guests
        libvirt_root.make_root(root, [(g0.tap, g0.mac, "clean-traffic", ()),
                                      (g1.tap, g1.mac, "clean-traffic", (("IP", g1.ipv4),))])
        hv = host_vars(lab.hv, workdir)
        hv.update(adopt_config_dir=hv["hfw_config_dir"], adopt_lock_file=hv["hfw_lock_file"])
        inventory = {"hypervisors": {"hv": hv}}
        extra = {"adopt_libvirt_root": root, "adopt_binding_parameters": {g0.tap: {"IP": g0.ipv4}}}
        lab.exec("hv", ADMIN_RULE)
        unfiltered, table = verdicts(lab)
        assert unfiltered == dict.fromkeys(CASES, True), "the lab must pass everything unfiltered:\n" + table
        before = kernel(lab)

        # without the address libvirtd learned, clean-traffic on vnet0 cannot be compiled
        proc, recap = run_playbook(workdir, ADOPT, inventory, check=True,
                                   extra_vars=dict(extra, adopt_binding_parameters={}))
        assert proc.returncode != 0 and recap["hv"]["failed"] == 1, proc.stdout[-4000:]
        assert "vnet0.xml" in proc.stdout and "binding_parameters: {vnet0" in proc.stdout
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout[-4000:]

        proc, recap = run_playbook(workdir, ADOPT, inventory, check=True, diff=True, extra_vars=extra)
        assert proc.returncode == 0 and recap["hv"]["changed"] == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert kernel(lab) == before
        assert not os.path.exists(hv["hfw_config_dir"])
        # the diff shows the store files and the chains that would appear
        assert "filters/clean-traffic.xml" in proc.stdout and "bindings/vnet0.xml" in proc.stdout
        assert "-A libvirt-I-vnet0" in proc.stdout and ":LIBVIRT_FWX" in proc.stdout
        assert "chains rewritten (check mode: would be): " in proc.stdout

        proc, recap = run_playbook(workdir, ADOPT, inventory, extra_vars=extra)
        assert proc.returncode == 0 and recap["hv"]["changed"] == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
        summary = debug_lines(proc.stdout)
        assert summary["bindings"] == "vnet0, vnet1" and summary["networks"] == "default, routed", summary
        assert "host-bridge" in summary["skipped"] and "spare" in summary["skipped"], summary
        adopted = kernel(lab)
        assert "-A libvirt-I-vnet0" in adopted["eb"] and "-A libvirt-I-vnet1" in adopted["eb"]
        assert ":LIBVIRT_FWX" in adopted["ip4"]
        assert " ".join(ADMIN_RULE[2:]).replace("--dport", "-m tcp --dport") in adopted["ip4"]
        after, table = verdicts(lab)
        assert after == {"ipv4-udp": True, "spoofed-src-mac": False, "spoofed-src-ip": False}, table

        runner = HostRunner(prefix=lab.hv_prefix)
        stored = _store.load_store(hv["hfw_config_dir"])
        assert sorted(stored.bindings) == [g0.tap, g1.tap]
        desired, _warnings = _service.build_desired(stored, _backend.select("xtables"), runner.list_devices())
        live, positions = _apply.read_live(runner, Scope(manage_networks=True))
        assert plan(desired, live, positions).tables == ()

        proc, recap = run_playbook(workdir, ADOPT, inventory, extra_vars=extra)
        assert proc.returncode == 0 and recap["hv"]["changed"] == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert kernel(lab) == adopted
