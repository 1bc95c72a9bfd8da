# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planner: exact payloads for the basic cases, and a model check on random rulesets."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import plan as _plan  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import save_parse as _saveparse  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import Chain, TableState

from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.xtables_sim import SimTool

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "save")


def dump(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def ip4(chains=(), hooks=(), table="filter"):
    return {("ip4", table): TableState("ip4", table, {c.name: c for c in chains}, tuple(hooks))}


FI = Chain("FI-vnet0", ("-p tcp -j ACCEPT", "-j DROP"))
LIN = Chain("libvirt-in", ("-m physdev --physdev-in vnet0 -g FI-vnet0",))


def lines(plan):
    return [line for t in plan.tables for line in t.lines]


@pytest.mark.parametrize("tool,name", [
    ("ip4", "ip4_nft.save"), ("ip4", "ip4_legacy.save"), ("ip6", "ip6_nft.save"), ("eb", "eb_nft.save"),
])
def test_live_equal_to_desired_gives_an_empty_plan(tool, name):
    live = _saveparse.parse_save(tool, dump(name))
    assert _plan.plan(live, live).is_empty()
    assert _plan.plan(live, live).diff() == []
    assert _plan.plan({}, {}).payload(tool) == ""


def test_new_chains_from_nothing():
    got = _plan.plan(ip4([FI, LIN], [("FORWARD", "-j libvirt-in")]), {})
    assert got.tables_changed == (("ip4", "filter"),)
    assert got.payload("ip4") == (
        "*filter\n"
        ":FI-vnet0 - [0:0]\n"
        ":libvirt-in - [0:0]\n"
        "-A FI-vnet0 -p tcp -j ACCEPT\n"
        "-A FI-vnet0 -j DROP\n"
        "-A libvirt-in -m physdev --physdev-in vnet0 -g FI-vnet0\n"
        "-I FORWARD 1 -j libvirt-in\n"
        "COMMIT\n"
    )
    assert got.payload("eb") == ""


def test_only_the_chain_that_differs_is_rewritten():
    live = ip4([FI, LIN], [("FORWARD", "-j libvirt-in")])
    changed = Chain("FI-vnet0", ("-j DROP",))
    got = _plan.plan(ip4([changed, LIN], [("FORWARD", "-j libvirt-in")]), live)
    assert lines(got) == [":FI-vnet0 - [0:0]", "-A FI-vnet0 -j DROP"]
    diff = got.diff()[0]
    assert "-A FI-vnet0 -p tcp -j ACCEPT" in diff["before"] and "-p tcp" not in diff["after"]
    assert diff["before_header"].startswith("iptables filter")


def test_stale_chain_is_flushed_and_deleted_after_its_references():
    live = ip4([FI, LIN], [("FORWARD", "-j libvirt-in")])
    got = _plan.plan({}, live)
    assert lines(got) == [
        ":FI-vnet0 - [0:0]", ":libvirt-in - [0:0]", "-D FORWARD -j libvirt-in", "-X FI-vnet0", "-X libvirt-in",
    ]
    # a chain rewritten to drop its reference to a stale chain is refilled before the -X
    keep = Chain("libvirt-in", ("-j RETURN",))
    assert lines(_plan.plan(ip4([keep], [("FORWARD", "-j libvirt-in")]), live)) == [
        ":libvirt-in - [0:0]", ":FI-vnet0 - [0:0]", "-A libvirt-in -j RETURN", "-X FI-vnet0",
    ]


def hooks(*rules):
    return [("FORWARD", "-j %s" % r) for r in rules]


def chains(*names):
    return [Chain(n, ("-j RETURN",)) for n in names]


ALL = ("libvirt-in", "libvirt-out", "libvirt-in-post")


@pytest.mark.parametrize("live_hooks,positions,payload", [
    # equal and on top: nothing
    (ALL, (1, 2, 3), []),
    # a missing one fits in between
    (("libvirt-in", "libvirt-in-post"), (1, 2), ["-I FORWARD 2 -j libvirt-out"]),
    (("libvirt-out",), (1,), ["-I FORWARD 1 -j libvirt-in", "-I FORWARD 3 -j libvirt-in-post"]),
    # a duplicate is deleted once (the first copy, as -D does)
    (ALL + ("libvirt-in-post",), (1, 2, 3, 4), ["-D FORWARD -j libvirt-in-post"]),
    # not on top (an admin rule above ours): all of ours move to the top, in order
    (ALL, (2, 3, 4), ["-D FORWARD -j libvirt-in", "-D FORWARD -j libvirt-out", "-D FORWARD -j libvirt-in-post",
                      "-I FORWARD 1 -j libvirt-in", "-I FORWARD 2 -j libvirt-out", "-I FORWARD 3 -j libvirt-in-post"]),
    # wrong order: same
    (("libvirt-out", "libvirt-in", "libvirt-in-post"), (1, 2, 3),
     ["-D FORWARD -j libvirt-out", "-D FORWARD -j libvirt-in", "-D FORWARD -j libvirt-in-post",
      "-I FORWARD 1 -j libvirt-in", "-I FORWARD 2 -j libvirt-out", "-I FORWARD 3 -j libvirt-in-post"]),
    # a gap (foreign rule between ours): same
    (("libvirt-in", "libvirt-out"), (1, 3),
     ["-D FORWARD -j libvirt-in", "-D FORWARD -j libvirt-out",
      "-I FORWARD 1 -j libvirt-in", "-I FORWARD 2 -j libvirt-out", "-I FORWARD 3 -j libvirt-in-post"]),
])
def test_hooks(live_hooks, positions, payload):
    desired = ip4(chains(*ALL), hooks(*ALL))
    live = ip4(chains(*ALL), hooks(*live_hooks))
    got = _plan.plan(desired, live, {("ip4", "filter", "FORWARD"): positions})
    assert lines(got) == payload
    assert got.is_empty() == (not payload)


def test_stale_hook_above_a_kept_one_is_deleted_in_place():
    desired = ip4(chains(*ALL), hooks("libvirt-out"))
    live = ip4(chains(*ALL), hooks("libvirt-in", "libvirt-out"))
    assert lines(_plan.plan(desired, live, {("ip4", "filter", "FORWARD"): (1, 2)})) == ["-D FORWARD -j libvirt-in"]


def test_hooks_off_the_top_are_noted_in_the_diff():
    live, positions = _saveparse.parse_live("ip4", dump("ip4_nft.save"))
    got = _plan.plan(live, live, positions)
    assert got.tables_changed == (("ip4", "filter"),)
    assert lines(got) == [
        "-D INPUT -j libvirt-host-in", "-D INPUT -j LIBVIRT_INP",
        "-I INPUT 1 -j libvirt-host-in", "-I INPUT 2 -j LIBVIRT_INP",
    ]
    assert "# INPUT: our rules stand at positions 2, 3, not at the top" in got.diff()[0]["before"]


def test_ebtables_declares_user_chains_with_their_policy():
    want = {("eb", "nat"): TableState("eb", "nat", {"I-vnet0-mac": Chain("I-vnet0-mac", ("-j DROP",), "RETURN")})}
    have = {("eb", "nat"): TableState("eb", "nat", {"I-vnet0-mac": Chain("I-vnet0-mac", ("-j DROP",), "ACCEPT")})}
    got = _plan.plan(want, have)
    assert got.payload("eb") == "*nat\n:I-vnet0-mac RETURN\n-A I-vnet0-mac -j DROP\nCOMMIT\n"


def test_a_builtin_chain_is_never_declared():
    with pytest.raises(ValueError, match="built-in"):
        _plan.plan(ip4([Chain("FORWARD", ("-j DROP",))]), {})


def test_tables_and_tools_are_in_a_fixed_order():
    desired = {}
    for tool in ("ip6", "eb", "ip4"):
        table = "nat"
        name = "libvirt-I-x" if tool == "eb" else "LIBVIRT_PRT"
        desired[(tool, table)] = TableState(tool, table, {name: Chain(name, ("-j ACCEPT",), "ACCEPT")})
    desired[("ip4", "filter")] = ip4([FI])[("ip4", "filter")]
    got = _plan.plan(desired, {})
    assert got.tables_changed == (("eb", "nat"), ("ip4", "filter"), ("ip4", "nat"), ("ip6", "nat"))
    assert got.tools_changed == ("eb", "ip4", "ip6")
    assert got.payload("ip4").count("COMMIT") == 2


# ---- model check: apply the payload to a simulated table holding foreign rules too ----

OWNED = ("FI-a", "FI-b", "FO-a", "libvirt-in", "libvirt-out")
FOREIGN_FORWARD = ("-j DOCKER-USER", "-s 10.0.0.1/32 -j ACCEPT", '-m comment --comment "admin  rule" -j DROP')
BODIES = ("-j DROP", "-j RETURN", "-p tcp -j ACCEPT", '-m comment --comment "it\\\'s  spaced" -j ACCEPT')


@st.composite
def owned_tables(draw):
    names = draw(st.lists(st.sampled_from(OWNED), unique=True))
    body = st.one_of(st.sampled_from(BODIES), st.sampled_from(names).map("-g {}".format)) if names else st.sampled_from(BODIES)
    found = {n: Chain(n, tuple(draw(st.lists(body, max_size=3)))) for n in names}
    hook = st.sampled_from(names).map("-j {}".format) if names else st.nothing()
    hook_list = draw(st.lists(hook, max_size=4)) if names else []
    return TableState("ip4", "filter", found, tuple(("FORWARD", h) for h in hook_list))


def load(sim, state, foreign):
    """Put a live state and foreign FORWARD rules (interleaved as drawn) into the simulator."""
    sim.tables["filter"]["rules"]["DOCKER-USER"] = []
    sim.tables["filter"]["policies"]["DOCKER-USER"] = "-"
    sim.tables["filter"]["policies"]["FORWARD"] = "DROP"
    for name, chain in state.chains.items():
        sim.tables["filter"]["rules"][name] = list(chain.rules)
        sim.tables["filter"]["policies"][name] = "-"
    ours = [(i + 0.5, rule) for i, (builtin, rule) in enumerate(state.hooks)]
    sim.tables["filter"]["rules"]["FORWARD"] = [rule for position, rule in sorted(foreign + ours, key=lambda x: x[0])]


@settings(max_examples=300, deadline=None)
@given(owned_tables(), owned_tables(), st.lists(st.tuples(st.integers(-1, 5), st.sampled_from(FOREIGN_FORWARD)), max_size=3))
def test_payload_reaches_desired_and_leaves_foreign_rules_alone(desired_state, live_state, foreign):
    sim = SimTool("ip4")
    load(sim, live_state, foreign)
    before = sim.save()
    live, positions = _saveparse.parse_live("ip4", before)
    got = _plan.plan({("ip4", "filter"): desired_state}, live, positions)
    rc, _out, err = sim.restore(got.payload("ip4"))
    assert rc == 0, (err, got.payload("ip4"))
    assert sim.builtin_declarations == []
    after = sim.save()
    live2, positions2 = _saveparse.parse_live("ip4", after)
    want = {("ip4", "filter"): desired_state} if not desired_state.is_empty() else {}
    assert live2 == want
    assert _plan.plan(want, live2, positions2).is_empty()
    assert _saveparse.builtin_policies("ip4", after) == _saveparse.builtin_policies("ip4", before)
    foreign_rules = [r for r in sim.tables["filter"]["rules"]["FORWARD"] if r not in {h for builtin, h in desired_state.hooks}]
    assert foreign_rules == [r for position, r in sorted(foreign, key=lambda f: f[0])]
