# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Golden tests of the xtables compiler (REGEN=1 rewrites the golden files)."""

import os

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import compile as _compile_xt  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import DeviceNameError, ResolveError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import TOOL_ORDER, render_table
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.golden import golden

from compile_xt_cases import CASES, MAC, R, nic

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "compile_xt")


def render_ruleset(ruleset):
    parts = []
    for tool in TOOL_ORDER:
        for key in sorted(k for k in ruleset if k[0] == tool):
            parts.append("# %s\n%s" % (tool, render_table(ruleset[key])))
    return "".join(parts)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case):
    text = render_ruleset(_compile_xt.compile_nics(CASES[case]))
    assert text == golden(os.path.join(FIXTURES, case + ".txt"), text)


def rules_of(ruleset, tool, table, chain):
    return list(ruleset[(tool, table)].chains[chain].rules)


def test_no_rules_no_chains():
    assert _compile_xt.compile_nics([nic("vnet0")]) == {}


def test_only_l2_rules_create_no_iptables_chains():
    ruleset = _compile_xt.compile_nics([nic("vnet0", R("accept", "out", "mac", [("protocolid", "2048")]))])
    assert set(ruleset) == {("eb", "nat")}
    assert set(ruleset[("eb", "nat")].chains) == {"libvirt-I-vnet0"}
    assert ruleset[("eb", "nat")].hooks == (("PREROUTING", "-i vnet0 -j libvirt-I-vnet0"),)


def test_inout_l2_rule_is_reversed_in_the_from_guest_chain_only():
    rule = R("accept", "inout", "mac", [("srcmacaddr", MAC), ("dstmacaddr", "ff:ff:ff:ff:ff:ff")])
    ruleset = _compile_xt.compile_nics([nic("vnet0", rule)])
    assert rules_of(ruleset, "eb", "nat", "libvirt-I-vnet0") == ["-s Broadcast -d %s -j ACCEPT" % MAC]
    assert rules_of(ruleset, "eb", "nat", "libvirt-O-vnet0") == ["-s %s -d Broadcast -j ACCEPT" % MAC]


def test_jump_goes_before_first_root_rule_with_higher_or_equal_priority():
    ruleset = _compile_xt.compile_nics([nic(
        "vnet0",
        R("accept", "out", "mac", [("protocolid", "2048")], priority=-701),
        R("accept", "out", "mac", [("protocolid", "2054")], priority=-700),
        R("drop", "out", "ip", [], chain="ipv4"),
    )])
    assert rules_of(ruleset, "eb", "nat", "libvirt-I-vnet0") == [
        "-p IPv4 -j ACCEPT", "-p IPv4 -j I-vnet0-ipv4", "-p ARP -j ACCEPT"]


def test_default_state_matches_and_targets_per_chain():
    ruleset = _compile_xt.compile_nics([nic("vnet0", R("accept", "out", "tcp", [("dstportstart", "22")]))])
    assert rules_of(ruleset, "ip4", "filter", "FI-vnet0") == [
        "-p tcp -m tcp --dport 22 -m conntrack --ctstate NEW,ESTABLISHED -m conntrack --ctdir ORIGINAL -j RETURN"]
    assert rules_of(ruleset, "ip4", "filter", "FO-vnet0") == [
        "-p tcp -m tcp --sport 22 -m conntrack --ctstate ESTABLISHED -m conntrack --ctdir REPLY -j ACCEPT"]
    assert rules_of(ruleset, "ip4", "filter", "HI-vnet0") == rules_of(ruleset, "ip4", "filter", "FI-vnet0")


def test_in_post_accepts_only_bridged_traffic():
    ruleset = _compile_xt.compile_nics([nic("vnet0", R("accept", "inout", "all", []))])
    assert rules_of(ruleset, "ip4", "filter", "libvirt-in-post") == [
        "-m physdev --physdev-in vnet0 --physdev-is-bridged -j ACCEPT"]
    assert ruleset[("ip4", "filter")].hooks_of("FORWARD") == ("-j libvirt-in", "-j libvirt-out", "-j libvirt-in-post")


def test_explicit_state_limits_copies_to_own_direction():
    ruleset = _compile_xt.compile_nics([nic("vnet0", R("accept", "in", "all", [("state", "NEW")]))])
    state = ruleset[("ip4", "filter")]
    assert state.chains["FI-vnet0"].rules == () and state.chains["HI-vnet0"].rules == ()
    assert state.chains["FO-vnet0"].rules == ("-m conntrack --ctstate NEW -j ACCEPT",)


@pytest.mark.parametrize("value", ["evil -j ACCEPT", "x\ny", ""])
def test_values_cannot_inject_options(value):
    with pytest.raises(ResolveError):
        _compile_xt.compile_nics([nic("vnet0", R("accept", "out", "all", [("ipset", value)]))])


def test_comment_with_newline_is_refused():
    with pytest.raises(ResolveError):
        _compile_xt.compile_nics([nic("vnet0", R("accept", "out", "all", [("comment", "a\nb")]))])


def test_bad_device_name_is_refused():
    with pytest.raises(DeviceNameError):
        _compile_xt.compile_nics([nic("vnet+", R("accept", "out", "all", []))])


def test_stp_inout_with_source_mac_is_refused():
    with pytest.raises(ResolveError):
        _compile_xt.compile_nics([nic("vnet0", R("accept", "inout", "stp", [("srcmacaddr", MAC)], chain="stp"))])
