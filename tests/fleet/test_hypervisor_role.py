# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role hypervisor on one namespace host: bridge netfilter setup, then decommission (root)."""

import contextlib
import os
import shutil

import pytest

from ansible_run import run_playbook
from fleet_ssh import serve, ssh_host_vars
from lab import Lab
from lab.netns import read_sysctl, write_sysctl
from test_fleet import CLEAN_TRAFFIC_FILTERS, kernel

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (network namespaces)")

PLAY = """\
- hosts: hypervisors
  gather_facts: false
  roles:
    - hypervisor.firewall.hypervisor
"""
KEYS = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")
BUILTIN = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING", "BROUTING"}


def rules_and_chains(lab):
    """Every rule and user chain left (a table that was ever used stays, empty, after removal)."""
    return {tool: [line for line in text.splitlines()
                   if line.startswith("-A") or (line.startswith(":") and line.split()[0][1:] not in BUILTIN)]
            for tool, text in kernel(lab).items()}


def test_bridge_nf_then_decommission(tmp_path, ssh_fleet):
    workdir = str(tmp_path)
    with Lab("hfwhfwnr%d" % os.getpid(), guests=1) as lab, contextlib.ExitStack() as stack:
        serve(stack, ssh_fleet, lab)
        for key in KEYS:
            write_sysctl(lab.hv, key, 0)
        pristine = rules_and_chains(lab)
        assert pristine == {"eb": [], "ip4": [], "ip6": []}
        guest = lab.guests[0]
        hv = ssh_host_vars(ssh_fleet, lab.hv, workdir)
        hv.update(hypervisor_config_dir=hv["hfw_config_dir"], hypervisor_lock_file=hv["hfw_lock_file"],
                  hypervisor_modules_load_file=str(tmp_path / "modules-load.conf"),
                  hypervisor_sysctl_file=str(tmp_path / "sysctl.conf"),
                  hypervisor_manage_packages=False, hypervisor_enable_reapply=False,
                  hypervisor_bridge_nf_call=True, default_filters_names=CLEAN_TRAFFIC_FILTERS,
                  hypervisor_networks=[{"bridge": lab.bridge, "mode": "isolated", "ipv4": lab.host_ipv4 + "/24"}],
                  hypervisor_guest_nics=[{"portdev": guest.tap, "mac": guest.mac, "filter": "clean-traffic",
                                          "parameters": {"IP": guest.ipv4}}])
        inventory = {"hypervisors": {"hv": hv}}

        def run(**extra):
            proc, recap = run_playbook(workdir, PLAY, inventory, extra_vars=extra)
            assert proc.returncode == 0, proc.stdout[-3000:]
            return recap["hv"]["changed"]

        assert run() > 0
        assert [read_sysctl(lab.hv, key) for key in KEYS] == ["1", "1"]
        assert (tmp_path / "modules-load.conf").read_text().splitlines()[-1] == "br_netfilter"
        assert (tmp_path / "sysctl.conf").read_text().count(" = 1\n") == 2
        assert rules_and_chains(lab) != pristine
        assert run() == 0

        assert run(hypervisor_state="absent") > 0
        assert not os.path.exists(hv["hfw_config_dir"])
        assert not (tmp_path / "sysctl.conf").exists() and not (tmp_path / "modules-load.conf").exists()
        assert rules_and_chains(lab) == pristine
        assert run(hypervisor_state="absent") == 0
