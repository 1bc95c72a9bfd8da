# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/audit.yml when hosts drift, fail or cannot be reached (root, network namespaces).

Four hosts, listed so that the two that never finish come first (the run-once summary must still
run, on a host that is alive): 'gone' (its namespace does not exist: unreachable), 'broken' (its
declaration holds a malformed filter: the role fails), hv1 (in sync) and hv2 (tampered). With
audit_fail_on_drift the drifted host fails too; without it the audit only reports the drift.
"""

import contextlib
import json
import os
import re
import shutil

import pytest

from ansible_run import run_playbook
from lab import Lab
from fleet_ssh import serve
from test_fleet import AUDIT, SITE, SKIP_HOST_SETUP, _host_vars, kernel

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (network namespaces)")

ORDER = ["gone", "broken", "hv1", "hv2"]
BAD_FILTER = ("<filter name='hfww-broken' chain='root'><rule action='accept' direction='in'>"
              "<tcp dstportstart='ssh'/></rule></filter>")
NOT_AUDITED = "%s: NOT AUDITED (failed or unreachable, see above)"
DRIFTED = "hv2: DRIFTED (NICs: vnet0; chains: libvirt-I-vnet0; tables: ebtables nat)"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, ssh_fleet):
    """(workdir, labs, inventory): hv1 and hv2 provisioned by site.yml, hv2 then tampered."""
    workdir = str(tmp_path_factory.mktemp("audit-failures"))
    with contextlib.ExitStack() as stack:
        labs = {name: stack.enter_context(Lab("hfwwa%d_%d" % (os.getpid(), i), guests=2)) for i, name in enumerate(ORDER[1:])}
        for lab in labs.values():
            serve(stack, ssh_fleet, lab)
        hosts = {name: _host_vars(workdir, lab, ssh_fleet) for name, lab in labs.items()}
        hosts["broken"]["hypervisor_extra_filters"] = [BAD_FILTER]
        # no such namespace: the SSH proxy command fails, the host is unreachable
        gone = dict(hosts["hv1"], **ssh_fleet.host_vars("hfwhfwwa-gone-hv"))
        inventory = {"hypervisors": {name: gone if name == "gone" else hosts[name] for name in ORDER}}
        proc, recap = run_playbook(workdir, SITE, inventory, extra_vars=SKIP_HOST_SETUP,
                                   extra_args=["--limit", "hv1,hv2", "--forks", "4"])
        assert proc.returncode == 0 and sorted(recap) == ["hv1", "hv2"], proc.stdout[-3000:]
        labs["hv2"].exec("hv", ["ebtables", "-t", "nat", "-D", "libvirt-I-vnet0", "1"])
        yield workdir, labs, inventory


def audit(fleet, name, fail_on_drift, limit=None):
    """Run audit.yml; returns (process, recap, {host: report} for the reports written, summary lines)."""
    workdir, _labs, inventory = fleet
    report_dir = os.path.join(workdir, name)
    extra_args = ["--forks", "4"] + (["--limit", limit] if limit else [])
    proc, recap = run_playbook(workdir, AUDIT, inventory, extra_args=extra_args,
                               extra_vars=dict(SKIP_HOST_SETUP, audit_report_dir=report_dir,
                                               audit_fail_on_drift=fail_on_drift))
    reports = {}
    for entry in sorted(os.listdir(report_dir)):
        with open(os.path.join(report_dir, entry)) as handle:
            reports[entry[:-len(".json")]] = json.load(handle)
    summary = re.search(r'"msg": \[\n(.*?)\n\s*\]', proc.stdout, re.S)
    assert summary, proc.stdout[-3000:]
    lines = [json.loads(line.strip().rstrip(",")) for line in summary.group(1).splitlines()]
    return proc, recap, reports, lines


def test_fail_on_drift_fails_the_drifted_host_and_names_the_hosts_not_audited(fleet):
    tampered = kernel(fleet[1]["hv2"])
    proc, recap, reports, lines = audit(fleet, "strict", fail_on_drift=True)
    assert proc.returncode != 0
    assert {h: (r["unreachable"], r["failed"]) for h, r in recap.items()} == {
        "gone": (1, 0), "broken": (0, 1), "hv1": (0, 0), "hv2": (0, 1)}, proc.stdout[-3000:]
    assert "hv2 drifted from its declaration; playbooks/site.yml heals it" in proc.stdout
    assert re.search(r"fatal: \[broken\]: FAILED! .*hfww-broken", proc.stdout), proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert lines == [NOT_AUDITED % "broken", NOT_AUDITED % "gone", "hv1: in sync", DRIFTED]
    assert sorted(reports) == ["hv1", "hv2"]
    assert not reports["hv1"]["drifted"] and reports["hv2"]["drifted"]
    assert reports["hv2"]["chains"] == ["libvirt-I-vnet0"]
    assert kernel(fleet[1]["hv2"]) == tampered, "an audit must never change a host"


def test_without_fail_on_drift_the_drift_is_reported_not_failed(fleet):
    proc, recap, reports, lines = audit(fleet, "lenient", fail_on_drift=False, limit="hv1,hv2")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert {h: r["failed"] for h, r in recap.items()} == {"hv1": 0, "hv2": 0}
    assert lines == ["hv1: in sync", DRIFTED]
    assert reports["hv2"]["drifted"] and "drifted from its declaration" not in proc.stdout
