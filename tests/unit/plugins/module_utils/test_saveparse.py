# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Save parser on real dumps (fixtures/save/capture.sh regenerates them)."""

import os

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import save_parse as _saveparse  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import SaveParseError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import Chain, render_table
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import Scope

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "save")


def dump(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


IP_FILTER_OWNED = [
    "FI-vnet0", "FI-vnet1", "FO-vnet0", "HI-vnet0", "LIBVIRT_FWI", "LIBVIRT_FWO", "LIBVIRT_FWX",
    "LIBVIRT_INP", "libvirt-host-in", "libvirt-in", "libvirt-in-post", "libvirt-out",
]
FORWARD_HOOKS = (
    "-j libvirt-in", "-j libvirt-out", "-j libvirt-in-post", "-j LIBVIRT_FWX", "-j LIBVIRT_FWI", "-j LIBVIRT_FWO",
)


@pytest.mark.parametrize("tool,name", [
    ("ip4", "ip4_nft.save"), ("ip4", "ip4_legacy.save"), ("ip4", "ip4_nft_counters.save"),
    ("ip4", "ip4_legacy_counters.save"), ("ip4", "ip4_nft_with_legacy_warning.save"),
    ("ip6", "ip6_nft.save"), ("ip6", "ip6_legacy.save"),
])
def test_ip_dump_keeps_exactly_our_chains_and_hooks(tool, name):
    ruleset, positions = _saveparse.parse_live(tool, dump(name))
    assert sorted(ruleset) == [(tool, "filter"), (tool, "mangle"), (tool, "nat")]
    filt = ruleset[(tool, "filter")]
    assert sorted(filt.chains) == IP_FILTER_OWNED
    assert filt.hooks_of("FORWARD") == FORWARD_HOOKS
    assert filt.hooks_of("INPUT") == ("-j libvirt-host-in", "-j LIBVIRT_INP")
    # the admin's rule stands first in INPUT: ours are 2 and 3
    assert positions[(tool, "filter", "INPUT")] == (2, 3)
    assert positions[(tool, "filter", "FORWARD")] == (1, 2, 3, 4, 5, 6)
    assert ruleset[(tool, "nat")].hooks == (("POSTROUTING", "-j LIBVIRT_PRT"),)
    assert list(ruleset[(tool, "nat")].chains) == ["LIBVIRT_PRT"]
    assert all(c.policy == "-" for c in filt.chains.values())


def test_comment_with_spaces_and_quotes_is_kept_verbatim():
    filt = _saveparse.parse_save("ip4", dump("ip4_nft.save"))[("ip4", "filter")]
    assert filt.chains["FI-vnet0"] == Chain("FI-vnet0", (
        "-p tcp -m tcp --sport 22 -m conntrack --ctstate ESTABLISHED -m comment "
        "--comment \"ssh reply, it\\'s fine\" -j RETURN",
        "-j DROP",
    ))


@pytest.mark.parametrize("tool,plain,others", [
    ("ip4", "ip4_nft.save", ["ip4_legacy.save", "ip4_nft_counters.save", "ip4_legacy_counters.save",
                             "ip4_nft_with_legacy_warning.save"]),
    ("ip6", "ip6_nft.save", ["ip6_legacy.save"]),
    ("eb", "eb_nft.save", ["eb_nft_counters.save"]),
])
def test_variants_and_counters_parse_equal(tool, plain, others):
    want = _saveparse.parse_live(tool, dump(plain))
    for other in others:
        assert _saveparse.parse_live(tool, dump(other)) == want, other


def test_foreign_chains_and_admin_rules_are_not_ours():
    ruleset = _saveparse.parse_save("ip4", dump("ip4_nft.save"))
    every_rule = [r for state in ruleset.values() for c in state.chains.values() for r in c.rules]
    every_rule += [r for state in ruleset.values() for builtin, r in state.hooks]
    for foreign in ("DOCKER", "INPUT_direct", "FWDI_public", "admin: allow", "docker0"):
        assert not [rule for rule in every_rule if foreign in rule]
    for state in ruleset.values():
        assert {_saveparse.jump_target(rule) for builtin, rule in state.hooks} <= set(state.chains)


def test_without_network_management_libvirt_network_chains_are_foreign():
    ruleset, positions = _saveparse.parse_live("ip4", dump("ip4_nft.save"), Scope(manage_networks=False))
    assert list(ruleset) == [("ip4", "filter")]
    filt = ruleset[("ip4", "filter")]
    assert not [c for c in filt.chains if c.startswith("LIBVIRT")]
    assert filt.hooks_of("FORWARD") == FORWARD_HOOKS[:3]
    assert positions[("ip4", "filter", "INPUT")] == (2,)


def test_foreign_devices_are_left_out():
    scope = Scope(foreign_devices=frozenset({"vnet1"}))
    ip4 = _saveparse.parse_save("ip4", dump("ip4_nft.save"), scope)[("ip4", "filter")]
    assert "FI-vnet1" not in ip4.chains and "FI-vnet0" in ip4.chains
    eb, positions = _saveparse.parse_live("eb", dump("eb_nft.save"), scope)
    assert "libvirt-I-vnet1" not in eb[("eb", "nat")].chains
    assert eb[("eb", "nat")].hooks_of("PREROUTING") == ("-i vnet0 -j libvirt-I-vnet0",)
    assert positions[("eb", "nat", "PREROUTING")] == (2,)


def test_ebtables_dump():
    ruleset, positions = _saveparse.parse_live("eb", dump("eb_nft.save"))
    assert list(ruleset) == [("eb", "nat")]  # the filter table holds only foreign chains
    nat = ruleset[("eb", "nat")]
    assert sorted(nat.chains) == ["I-vnet0-arp-mac", "I-vnet0-ipv4", "libvirt-I-vnet0", "libvirt-I-vnet1", "libvirt-O-vnet0"]
    assert nat.chains["I-vnet0-arp-mac"].policy == "RETURN"
    assert nat.chains["libvirt-O-vnet0"] == Chain("libvirt-O-vnet0", ("-p RARP -j DROP",), "ACCEPT")
    assert nat.hooks == (
        ("PREROUTING", "-i vnet0 -j libvirt-I-vnet0"),
        ("PREROUTING", "-i vnet1 -j libvirt-I-vnet1"),
        ("POSTROUTING", "-o vnet0 -j libvirt-O-vnet0"),
    )
    assert positions == {("eb", "nat", "PREROUTING"): (2, 3), ("eb", "nat", "POSTROUTING"): (1,)}


@pytest.mark.parametrize("tool,name", [("ip4", "ip4_nft.save"), ("ip6", "ip6_legacy.save"), ("eb", "eb_nft.save")])
def test_rendered_owned_part_parses_back_to_itself(tool, name):
    ruleset = _saveparse.parse_save(tool, dump(name))
    for key, state in ruleset.items():
        assert _saveparse.parse_save(tool, render_table(state))[key] == state


def test_builtin_policies():
    assert _saveparse.builtin_policies("ip4", dump("ip4_legacy_counters.save"))[("filter", "FORWARD")] == "DROP"
    policies = _saveparse.builtin_policies("eb", dump("eb_nft.save"))
    assert policies == {
        ("filter", "INPUT"): "ACCEPT", ("filter", "FORWARD"): "DROP", ("filter", "OUTPUT"): "ACCEPT",
        ("nat", "PREROUTING"): "ACCEPT", ("nat", "OUTPUT"): "ACCEPT", ("nat", "POSTROUTING"): "ACCEPT",
    }


def test_inline_counters_and_whitespace_are_normalised():
    text = (
        "*filter\n:FORWARD ACCEPT [5:100]\n:FI-vnet0 - [0:0]\n"
        "-A FI-vnet0   -p tcp  -c 10 2000 -m comment --comment \"two  spaces -c 1 2\"   -j RETURN\n"
        "[3:4] -A FORWARD -j FI-vnet0 --set-counters 7 8\nCOMMIT\n"
    )
    filt = _saveparse.parse_save("ip4", text)[("ip4", "filter")]
    assert filt.chains["FI-vnet0"].rules == ('-p tcp -m comment --comment "two  spaces -c 1 2" -j RETURN',)
    assert filt.hooks == (("FORWARD", "-j FI-vnet0"),)


def test_empty_dump_has_no_owned_content():
    assert _saveparse.parse_live("ip6", "") == ({}, {})


@pytest.mark.parametrize("text,line", [
    ("*filter\n:INPUT ACCEPT [0:0]\nthis is not a rule\nCOMMIT\n", 3),
    ("-A INPUT -j ACCEPT\n", 1),
    ("*filter\n:INPUT ACCEPT [0:0]\n-A NOPE -j ACCEPT\nCOMMIT\n", 3),
    ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment \"open\nCOMMIT\n", 3),
    ("*filter\n:INPUT\nCOMMIT\n", 2),
    ("*filter\nCOMMIT\n*nat\nCOMMIT\n*filter\nCOMMIT\n", 5),
    ("*filter\n:INPUT ACCEPT [0:0]\n*nat\nCOMMIT\n", 3),
    ("*filter\nCOMMIT\n-A INPUT -j ACCEPT\n", 3),
])
def test_garbage_names_the_line(text, line):
    with pytest.raises(SaveParseError) as err:
        _saveparse.parse_save("ip4", text)
    assert err.value.context["line"] == line
    assert "line %d" % line in str(err.value)


def test_truncated_iptables_dump_is_an_error_but_ebtables_needs_no_commit():
    with pytest.raises(SaveParseError, match="truncated"):
        _saveparse.parse_save("ip4", "*filter\n:INPUT ACCEPT [0:0]\n")
    assert _saveparse.parse_save("eb", "*nat\n:PREROUTING ACCEPT\n:libvirt-I-x ACCEPT\n-A libvirt-I-x -j DROP\n")


def test_jump_target_ignores_quoted_text():
    assert _saveparse.jump_target('-m comment --comment "-j FI-vnet0" -j ACCEPT') == "ACCEPT"
    assert _saveparse.jump_target("-m physdev --physdev-in vnet0 -g FI-vnet0") == "FI-vnet0"
    assert _saveparse.jump_target("-p tcp") is None
