# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``state: gathered`` of guest_nic_filter and virt_network_fw reports real packet counters.

A lab whose g0 is filtered and whose br0 carries network 'lab' (counter_traffic.install) gets
frames with known counts; then one playbook gathers with both modules.  Each count must land on
the rule that handled those frames, and gathering must change nothing (nor zero the counters).
"""

import json
import os
import shutil

import pytest

from ansible_run import PLAYBOOK_BIN, host_vars, run_playbook
from counter_traffic import SENT, install, send_frames
from lab import Lab

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import TOOL_ORDER
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import Scope, parse_counters

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(b) for b in ("ip", "iptables-save", "ebtables-save"))
    or not os.path.exists(PLAYBOOK_BIN),
    reason="needs root, iproute2, iptables, ebtables and ansible-playbook next to the test interpreter")

GATHER_PLAY = """
- hosts: hv
  gather_facts: false
  tasks:
    - name: guest NICs
      hypervisor.firewall.guest_nic_filter:
        config_dir: "{{ hfw_config_dir }}"
        lock_file: "{{ hfw_lock_file }}"
        state: gathered
      register: nics
    - name: networks
      hypervisor.firewall.virt_network_fw:
        config_dir: "{{ hfw_config_dir }}"
        lock_file: "{{ hfw_lock_file }}"
        state: gathered
      register: networks
    - name: record
      ansible.builtin.copy:
        content: "{{ {'nics': nics, 'networks': networks} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def counters_of(rules, text):
    """(packets, bytes) of the one rule whose text contains ``text``."""
    found = [(r["packets"], r["bytes"]) for r in rules if text in r["rule"]]
    assert len(found) == 1, "%r in %s" % (text, rules)
    return found[0]


def counted(lab):
    """{(tool, table, chain): CountedRules} of the owned chains, read straight from the lab."""
    runner = HostRunner(prefix=lab.hv_prefix)
    return {(tool,) + key: rules for tool in TOOL_ORDER
            for key, rules in parse_counters(tool, runner.save_counters(tool), Scope()).items()}


@pytest.fixture(scope="module")
def gathered(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("counters"))
    with Lab("hfwhfwu2_gc%d" % os.getpid(), guests=2) as lab:
        hv = host_vars(lab.hv, work)
        install(lab, HostRunner(prefix=lab.hv_prefix), hv["hfw_config_dir"], hv["hfw_lock_file"])
        send_frames(lab)
        before = counted(lab)
        out = os.path.join(work, "gathered.json")
        proc, recap = run_playbook(work, GATHER_PLAY, {"hv": {lab.hv: hv}}, extra_vars={"out": out})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert recap[lab.hv]["changed"] == 1  # only the copy
        after = counted(lab)
        with open(out) as handle:
            yield lab, json.load(handle), before, after


def test_each_nic_rule_counts_the_frames_it_handled(gathered):
    lab, result, _before, _after = gathered
    items = result["nics"]["gathered"]
    assert [(i["portdev"], i["tap"], i["present"]) for i in items] == [("vnet0", "vnet0", True)]
    chains = items[0]["chains"]
    ipv4 = chains["ebtables nat I-vnet0-ipv4-ip"]
    assert counters_of(ipv4, "-j DROP")[0] == SENT["spoofed"]
    own = counters_of(ipv4, "--ip-src %s -j RETURN" % lab.guests[0].ipv4)[0]
    assert own >= SENT["passed"] + SENT["blocked"]
    assert counters_of(chains["iptables filter FI-vnet0"], "--dport 40009 -j DROP")[0] == SENT["blocked"]
    assert counters_of(chains["ebtables nat O-vnet0-ipv4"], "-j ACCEPT")[0] >= SENT["to_guest"]
    # untouched rules stay at zero, and bytes go with packets
    assert counters_of(chains["ebtables nat I-vnet0-mac"], "-j DROP") == (0, 0)
    assert all((r["packets"] == 0) == (r["bytes"] == 0) for rules in chains.values() for r in rules)


def test_network_rules_count_the_bridged_frames(gathered):
    _lab, result, _before, _after = gathered
    networks = result["networks"]["gathered"]
    assert counters_of(networks["iptables filter LIBVIRT_FWX"], "-i br0 -o br0 -j ACCEPT")[0] >= SENT["to_guest"]
    assert counters_of(networks["iptables filter LIBVIRT_FWI"], "-j REJECT") == (0, 0)


def test_gathering_changes_nothing_not_even_counters(gathered):
    _lab, result, before, after = gathered
    assert result["nics"]["changed"] is False and result["networks"]["changed"] is False
    # the guests' kernels keep talking (ND, IGMP), so counters may grow; zeroing would shrink them
    assert {k: [r.rule for r in v] for k, v in after.items()} == {k: [r.rule for r in v] for k, v in before.items()}
    assert all(a.packets >= b.packets for key in before for a, b in zip(after[key], before[key]))
    assert after[("eb", "nat", "I-vnet0-ipv4-ip")][-1].packets == SENT["spoofed"]
