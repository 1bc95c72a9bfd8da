# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/site.yml and playbooks/audit.yml across five namespace "hypervisors" (root).

One scenario, in order, because each step starts from the state the previous one left:
check mode changes nothing -> apply -> re-run changes nothing -> tamper one host -> the audit
names exactly that host and what drifted -> site.yml heals it -> the audit is clean.
"""

import contextlib
import json
import os
import re
import shutil

import pytest

from ansible_run import ROOT, run_playbook
from fleet_ssh import serve, ssh_host_vars
from lab import Lab

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (network namespaces)")

HOSTS = ["hv%d" % i for i in range(1, 6)]
TAMPERED = "hv3"
SITE = os.path.join(ROOT, "playbooks", "site.yml")
AUDIT = os.path.join(ROOT, "playbooks", "audit.yml")
SAVE = {"eb": ["ebtables-save"], "ip4": ["iptables-save"], "ip6": ["ip6tables-save"]}
# iptables rules for vnet1 (clean-traffic alone compiles to ebtables only)
WEB_GUEST = """<filter name='hfwn-web' chain='root'>
  <filterref filter='clean-traffic'/>
  <rule action='accept' direction='in' priority='500'><tcp dstportstart='22'/></rule>
  <rule action='accept' direction='out' priority='500'><all state='ESTABLISHED,RELATED'/></rule>
  <rule action='drop' direction='inout' priority='1000'><all/></rule>
</filter>"""
SKIP_HOST_SETUP = {"hypervisor_manage_packages": False, "hypervisor_manage_sysctl": False,
                   "hypervisor_enable_reapply": False}
# clean-traffic and what it references: the full default set costs ~0.4 s per filter per host
CLEAN_TRAFFIC_FILTERS = ["allow-incoming-ipv4", "clean-traffic", "no-arp-ip-spoofing", "no-arp-mac-spoofing",
                         "no-arp-spoofing", "no-ip-spoofing", "no-mac-spoofing", "no-other-l2-traffic",
                         "no-other-rarp-traffic", "qemu-announce-self", "qemu-announce-self-rarp"]
# canary hv1 alone, then the other four at once (more batches cost runtime, not coverage)
SITE_SERIAL = ["100%"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, ssh_fleet):
    workdir = str(tmp_path_factory.mktemp("fleet"))
    with contextlib.ExitStack() as stack:
        labs = {host: stack.enter_context(Lab("hfwn%d_%d" % (os.getpid(), i), guests=2)) for i, host in enumerate(HOSTS, 1)}
        for lab in labs.values():
            serve(stack, ssh_fleet, lab)
        yield workdir, labs, ssh_fleet


def inventory(workdir, labs, ssh):
    hosts = {host: dict(_host_vars(workdir, lab, ssh)) for host, lab in labs.items()}
    return {"hypervisors": hosts, "canary": {"hv1": hosts["hv1"]}}


def _host_vars(workdir, lab, ssh):
    hv = ssh_host_vars(ssh, lab.hv, workdir)
    g0, g1 = lab.guests
    hv.update(
        hypervisor_config_dir=hv["hfw_config_dir"],
        hypervisor_lock_file=hv["hfw_lock_file"],
        default_filters_names=CLEAN_TRAFFIC_FILTERS,
        hypervisor_extra_filters=[WEB_GUEST],
        hypervisor_networks=[{"name": "lab", "bridge": lab.bridge, "mode": "nat", "ipv4": lab.host_ipv4 + "/24"}],
        hypervisor_guest_nics=[
            {"portdev": g0.tap, "mac": g0.mac, "filter": "clean-traffic", "parameters": {"IP": g0.ipv4}},
            {"portdev": g1.tap, "mac": g1.mac, "filter": "hfwn-web", "parameters": {"IP": g1.ipv4}},
        ],
    )
    return hv


def play(fleet, playbook, check=False, **extra):
    workdir, labs, ssh = fleet
    proc, recap = run_playbook(workdir, playbook, inventory(workdir, labs, ssh), check=check, diff=check,
                               extra_vars=dict(SKIP_HOST_SETUP, site_serial=SITE_SERIAL, **extra), extra_args=["--forks", "5"])
    assert sorted(recap) == HOSTS, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, recap


def kernel(lab):
    """Every tool's full save text without comment lines (they carry dates)."""
    return {tool: "".join(line for line in lab.exec("hv", argv).stdout.splitlines(True) if not line.startswith("#"))
            for tool, argv in SAVE.items()}


def owned_chains(lab, argv, mark):
    text = lab.exec("hv", argv).stdout
    return [name for name in re.findall(r"^:(\S+)", text, re.M) if mark in name]


def audit(fleet, report_dir, fail_on_drift):
    proc, recap = play(fleet, AUDIT, audit_report_dir=report_dir, audit_fail_on_drift=fail_on_drift)
    reports = {}
    for host in HOSTS:
        with open(os.path.join(report_dir, host + ".json")) as handle:
            reports[host] = json.load(handle)
    summary = re.search(r'"msg": \[\n(.*?)\n\s*\]', proc.stdout, re.S)
    assert summary, proc.stdout[-3000:]
    lines = [json.loads(line.strip().rstrip(",")) for line in summary.group(1).splitlines()]
    return proc, recap, reports, lines


def test_fleet_check_apply_rerun_tamper_audit_heal(fleet):
    workdir, labs, _ssh = fleet
    before = {host: kernel(lab) for host, lab in labs.items()}

    proc, recap = play(fleet, SITE, check=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert all(recap[h]["changed"] > 0 for h in HOSTS), recap
    assert {host: kernel(lab) for host, lab in labs.items()} == before
    assert not any(os.path.exists(os.path.join(workdir, lab.hv, "store")) for lab in labs.values())

    proc, recap = play(fleet, SITE)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert all(recap[h]["changed"] > 0 and recap[h]["failed"] == 0 for h in HOSTS), recap
    for lab in labs.values():
        assert "libvirt-I-vnet0" in owned_chains(lab, ["ebtables-save", "-t", "nat"], "vnet0")
        assert owned_chains(lab, ["iptables-save", "-t", "filter"], "vnet1")
        assert owned_chains(lab, ["iptables-save", "-t", "filter"], "LIBVIRT_FW")
    applied = {host: kernel(lab) for host, lab in labs.items()}

    proc, recap = play(fleet, SITE)
    assert proc.returncode == 0 and all(recap[h]["changed"] == 0 for h in HOSTS), (recap, proc.stdout[-3000:])
    assert {host: kernel(lab) for host, lab in labs.items()} == applied

    lab = labs[TAMPERED]
    lab.exec("hv", ["ebtables", "-t", "nat", "-D", "libvirt-I-vnet0", "1"])
    flushed = next(name for name in owned_chains(lab, ["iptables-save", "-t", "filter"], "vnet1")
                   if lab.exec("hv", ["iptables", "-S", name]).stdout.count("\n") > 1)
    lab.exec("hv", ["iptables", "-F", flushed])
    tampered = kernel(lab)

    report_dir = os.path.join(workdir, "audit-drift")
    proc, recap, reports, lines = audit(fleet, report_dir, fail_on_drift=True)
    assert proc.returncode != 0
    assert [h for h in HOSTS if recap[h]["failed"]] == [TAMPERED], recap
    assert kernel(lab) == tampered
    drift = reports[TAMPERED]
    assert drift["drifted"] is True
    assert drift["nics"] == ["vnet0", "vnet1"]
    assert drift["chains"] == sorted(["libvirt-I-vnet0", flushed])
    assert drift["tables"] == ["ebtables nat", "iptables filter"]
    assert drift["store"] == [] and drift["networks"] == [] and drift["host_settings"] == []
    assert [h for h in HOSTS if reports[h]["drifted"]] == [TAMPERED]
    assert lines == [
        "%s: in sync" % h if h != TAMPERED else
        "%s: DRIFTED (NICs: vnet0, vnet1; chains: %s; tables: ebtables nat, iptables filter)"
        % (h, ", ".join(sorted(["libvirt-I-vnet0", flushed])))
        for h in HOSTS
    ]

    proc, recap = play(fleet, SITE)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert [h for h in HOSTS if recap[h]["changed"]] == [TAMPERED], recap
    assert kernel(lab) == applied[TAMPERED]

    proc, recap, reports, lines = audit(fleet, os.path.join(workdir, "audit-clean"), fail_on_drift=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert lines == ["%s: in sync" % h for h in HOSTS]
    assert not any(report["drifted"] for report in reports.values())
