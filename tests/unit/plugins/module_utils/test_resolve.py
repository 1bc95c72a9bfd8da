# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter graph resolution: cycles, scoping, list iteration, ordering, errors."""

import json
import os

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import resolve as _resolve  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ResolveError, VariableError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import (
    Binding, Filter, FilterRef, Match, Rule)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "resolve")
MAC = "52:54:00:12:34:56"


def ref(name, **params):
    pairs = []
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, item))
    return FilterRef(name, tuple(pairs))


def rule(action="accept", direction="out", priority=500, proto=None, **attrs):
    matches = (Match(proto, tuple(attrs.items())),) if proto else ()
    return Rule(action, direction, priority, True, matches)


def filters(*defs):
    return {f.name: f for f in defs}


def binding(name, **params):
    return Binding("vnet0", MAC, name, ref(name, **params).parameters)


def values(inst, attr):
    return [ri.matches[0].get(attr) for ri in inst.rules if ri.matches]


# ---------------------------------------------------------------------------------- cycles


def test_cycle_of_length_one():
    with pytest.raises(ResolveError) as err:
        _resolve.find_cycle({}, Filter("a", entries=(ref("a"),)))
    assert "filter 'a' -> 'a' forms a reference cycle" in str(err.value)


def test_cycle_of_length_two():
    existing = filters(Filter("b", entries=(ref("a"),)))
    with pytest.raises(ResolveError) as err:
        _resolve.find_cycle(existing, Filter("a", entries=(ref("b"),)))
    assert "filter 'a' -> 'b' -> 'a' forms a reference cycle" in str(err.value)
    assert err.value.context["cycle"] == ["a", "b", "a"]


def test_cycle_of_length_five_through_a_dag():
    existing = filters(
        Filter("b", entries=(ref("x"), ref("c"))),
        Filter("x"),
        Filter("c", entries=(ref("d"),)),
        Filter("d", entries=(ref("missing"), ref("e"))),
        Filter("e", entries=(ref("a"),)),
    )
    with pytest.raises(ResolveError) as err:
        _resolve.find_cycle(existing, Filter("a", entries=(ref("b"),)))
    assert "'a' -> 'b' -> 'c' -> 'd' -> 'e' -> 'a'" in str(err.value)


def test_redefinition_replaces_the_old_definition():
    # the stored 'a' references 'b', but the candidate no longer does: no cycle
    existing = filters(Filter("a", entries=(ref("b"),)), Filter("b", entries=(ref("a"),)))
    _resolve.find_cycle(existing, Filter("a", entries=(ref("c"),)))


def test_unknown_references_and_shared_children_are_fine():
    existing = filters(Filter("b", entries=(ref("d"),)), Filter("c", entries=(ref("d"),)), Filter("d"))
    _resolve.find_cycle(existing, Filter("a", entries=(ref("b"), ref("c"), ref("nowhere"))))


def test_instantiation_refuses_a_stored_cycle():
    stored = filters(Filter("a", entries=(ref("b"),)), Filter("b", entries=(ref("a"),)))
    with pytest.raises(ResolveError, match="'a' -> 'b' -> 'a'"):
        _resolve.instantiate(binding("a"), stored)


# ---------------------------------------------------------------------------------- graph views


def test_dependants_and_tree():
    graph = filters(
        Filter("top", entries=(ref("mid"), ref("ghost"))),
        Filter("mid", entries=(ref("leaf"),)),
        Filter("other", entries=(ref("leaf"),)),
        Filter("leaf"),
        Filter("alone"),
    )
    assert _resolve.dependants(graph, "leaf") == ["mid", "other", "top"]
    assert _resolve.dependants(graph, "top") == []
    assert _resolve.tree(graph, "top") == {
        "name": "top",
        "references": [
            {"name": "mid", "references": [{"name": "leaf", "references": []}]},
            {"name": "ghost", "missing": True, "references": []},
        ],
    }


# ---------------------------------------------------------------------------------- scoping


def test_caller_variables_win_and_filterref_fills_the_rest():
    graph = filters(
        Filter("top", entries=(ref("child", IP="10.9.9.9", PORT_HOST="10.8.8.8"),)),
        Filter("child", chain="ipv4", entries=(
            rule(proto="ip", srcipaddr="$IP"),
            rule(proto="ip", dstipaddr="$PORT_HOST"),
        )),
    )
    inst = _resolve.instantiate(binding("top", IP="10.0.0.1"), graph)
    assert [ri.matches[0].attrs for ri in inst.rules] == [
        (("srcipaddr", "10.0.0.1"),),
        (("dstipaddr", "10.8.8.8"),),
    ]


def test_mac_comes_from_the_binding_unless_given():
    graph = filters(Filter("f", entries=(rule(proto="mac", srcmacaddr="$MAC"),)))
    assert values(_resolve.instantiate(binding("f"), graph), "srcmacaddr") == [MAC]
    given = _resolve.instantiate(binding("f", MAC="52:54:00:AB:CD:EF"), graph)
    assert values(given, "srcmacaddr") == ["52:54:00:ab:cd:ef"]


def test_inner_filterref_cannot_override_outer_value():
    graph = filters(
        Filter("top", entries=(ref("mid", X="10.0.0.2"),)),
        Filter("mid", entries=(ref("leaf", X="10.0.0.3"),)),
        Filter("leaf", chain="ipv4", entries=(rule(proto="ip", srcipaddr="$X"),)),
    )
    assert values(_resolve.instantiate(binding("top"), graph), "srcipaddr") == ["10.0.0.2"]


# ---------------------------------------------------------------------------------- lists


def _two_list_filter(src, dst):
    return filters(Filter("f", chain="ipv4", entries=(rule(proto="ip", srcipaddr=src, dstipaddr=dst),)))


def pairs(inst):
    return [(ri.matches[0].get("srcipaddr"), ri.matches[0].get("dstipaddr")) for ri in inst.rules]


def test_plain_lists_walk_in_step():
    inst = _resolve.instantiate(binding("f", A=["10.0.0.1", "10.0.0.2"], B=["10.1.0.1", "10.1.0.2"]),
                                _two_list_filter("$A", "$B"))
    assert pairs(inst) == [("10.0.0.1", "10.1.0.1"), ("10.0.0.2", "10.1.0.2")]


def test_same_explicit_iterator_walks_in_step():
    inst = _resolve.instantiate(binding("f", A=["10.0.0.1", "10.0.0.2"], B=["10.1.0.1", "10.1.0.2"]),
                                _two_list_filter("$A[@3]", "$B[@3]"))
    assert pairs(inst) == [("10.0.0.1", "10.1.0.1"), ("10.0.0.2", "10.1.0.2")]


def test_different_iterators_combine_first_one_fastest():
    inst = _resolve.instantiate(binding("f", A=["10.0.0.1", "10.0.0.2"], B=["10.1.0.1", "10.1.0.2", "10.1.0.3"]),
                                _two_list_filter("$A[@1]", "$B[@2]"))
    assert pairs(inst) == [
        ("10.0.0.1", "10.1.0.1"), ("10.0.0.2", "10.1.0.1"),
        ("10.0.0.1", "10.1.0.2"), ("10.0.0.2", "10.1.0.2"),
        ("10.0.0.1", "10.1.0.3"), ("10.0.0.2", "10.1.0.3"),
    ]


def test_iterator_zero_varies_fastest_even_when_used_last():
    inst = _resolve.instantiate(binding("f", A=["10.0.0.1", "10.0.0.2"], B=["10.1.0.1", "10.1.0.2"]),
                                _two_list_filter("$A[@1]", "$B"))
    assert pairs(inst) == [
        ("10.0.0.1", "10.1.0.1"), ("10.0.0.1", "10.1.0.2"),
        ("10.0.0.2", "10.1.0.1"), ("10.0.0.2", "10.1.0.2"),
    ]


def test_index_picks_one_element():
    inst = _resolve.instantiate(binding("f", A=["10.0.0.1", "10.0.0.2"], B=["10.1.0.1", "10.1.0.2"]),
                                _two_list_filter("$A", "$B[1]"))
    assert pairs(inst) == [("10.0.0.1", "10.1.0.2"), ("10.0.0.2", "10.1.0.2")]


def test_repeated_tuples_collapse_but_distinct_ones_stay():
    inst = _resolve.instantiate(
        binding("f", A=["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.1"],
                B=["10.1.0.1", "10.1.0.3", "10.1.0.1", "10.1.0.9"]),
        _two_list_filter("$A", "$B"))
    assert pairs(inst) == [("10.0.0.1", "10.1.0.1"), ("10.0.0.2", "10.1.0.3"), ("10.0.0.1", "10.1.0.9")]


def test_lists_in_step_must_have_equal_length():
    with pytest.raises(VariableError, match="differ in length"):
        _resolve.instantiate(binding("f", A=["10.0.0.1", "10.0.0.2"], B="10.1.0.1"), _two_list_filter("$A", "$B"))


def test_list_explosion_is_refused(monkeypatch):
    monkeypatch.setattr(_resolve, "MAX_INSTANCES", 5)
    graph = _two_list_filter("$A[@1]", "$B[@2]")
    with pytest.raises(ResolveError, match="more than the limit of 5"):
        _resolve.instantiate(binding("f", A=["10.0.0.%d" % i for i in range(1, 4)],
                                     B=["10.1.0.%d" % i for i in range(1, 3)]), graph)


def test_values_are_canonicalised_after_substitution():
    graph = filters(Filter("f", chain="ipv6", entries=(rule(proto="ipv6", srcipaddr="$V6", srcipmask="$M"),)))
    inst = _resolve.instantiate(binding("f", V6="FE80:0:0::1", M="ffff:ffff::"), graph)
    assert inst.rules[0].matches[0].attrs == (("srcipaddr", "fe80::1"), ("srcipmask", "32"))


def test_bad_variable_value_names_filter_and_variable():
    graph = filters(Filter("f", chain="ipv4", entries=(rule(proto="ip", srcipaddr="$IP"),)))
    with pytest.raises(VariableError) as err:
        _resolve.instantiate(binding("f", IP="10.0.0.300"), graph)
    assert "filter 'f'" in str(err.value) and "$IP" in str(err.value)
    assert err.value.context["variable"] == "IP"


# ---------------------------------------------------------------------------------- errors


def test_unknown_filter_with_suggestion():
    graph = filters(Filter("clean", entries=(ref("no-ip-spofing"),)), Filter("no-ip-spoofing"))
    with pytest.raises(ResolveError) as err:
        _resolve.instantiate(binding("clean"), graph)
    assert ("filter 'clean' references unknown filter 'no-ip-spofing' (did you mean 'no-ip-spoofing'?)"
            in str(err.value))


def test_unknown_binding_filter():
    with pytest.raises(ResolveError, match="the binding of 'vnet0' references unknown filter 'nope'"):
        _resolve.instantiate(binding("nope"), filters(Filter("other")))


def test_missing_ip_explains_there_is_no_learning():
    graph = filters(Filter("top", entries=(ref("spoof"),)),
                    Filter("spoof", chain="ipv4", entries=(rule(proto="ip", srcipaddr="$IP"),)))
    with pytest.raises(VariableError) as err:
        _resolve.instantiate(binding("top"), graph)
    text = str(err.value)
    assert "filter 'spoof': variable IP has no value" in text
    assert "does not learn IP addresses" in text and "binding parameters" in text
    assert err.value.context["variables"] == ["IP"]


def test_missing_other_variable_names_it():
    graph = filters(Filter("f", entries=(rule(proto="mac", dstmacaddr="$GATEWAY_MAC"),)))
    with pytest.raises(VariableError, match="filter 'f': variable GATEWAY_MAC has no value.*pass GATEWAY_MAC"):
        _resolve.instantiate(binding("f"), graph)


def test_index_out_of_range():
    graph = _two_list_filter("$A[2]", "$A[0]")
    with pytest.raises(VariableError, match=r"\$A\[2\] is out of range: A has 2 value"):
        _resolve.instantiate(binding("f", A=["10.0.0.1", "10.0.0.2"]), graph)


def test_empty_list():
    graph = filters(Filter("f", chain="ipv4", entries=(rule(proto="ip", srcipaddr="$IP"),)))
    with pytest.raises(VariableError, match="variable IP is an empty list"):
        _resolve.instantiate(Binding("vnet0", MAC, "f", (("IP", ()),)), graph)


# ---------------------------------------------------------------------------------- ordering


def test_root_first_then_priority_ties_in_document_order():
    graph = filters(
        Filter("top", entries=(
            rule(priority=300, proto="mac", comment="t1"),
            ref("sub"),
            rule(priority=100, proto="mac", comment="t2"),
            rule(priority=300, proto="mac", comment="t3"),
            ref("rootchild"),
        )),
        Filter("sub", chain="arp", entries=(
            rule(priority=-900, proto="arp", comment="s1"),
            rule(priority=200, proto="arp", comment="s2"),
        )),
        Filter("rootchild", entries=(rule(priority=300, proto="mac", comment="r1"),)),
    )
    inst = _resolve.instantiate(binding("top"), graph)
    assert values(inst, "comment") == ["t2", "t1", "t3", "r1", "s1", "s2"]
    # after sorting, libvirt raises a sub-chain rule below its chain's priority to that priority
    assert [ri.priority for ri in inst.rules] == [100, 300, 300, 300, -500, 200]
    assert inst.subchains == (("arp", -500),)
    assert inst.filters_used == frozenset(("top", "sub", "rootchild"))


def test_instances_of_one_rule_stay_together():
    graph = filters(Filter("f", chain="ipv4", entries=(
        rule(priority=500, proto="ip", srcipaddr="$IP"),
        rule(priority=500, proto="ip", dstipaddr="10.9.9.9"),
    )))
    inst = _resolve.instantiate(binding("f", IP=["10.0.0.1", "10.0.0.2"]), graph)
    assert [ri.matches[0].attrs for ri in inst.rules] == [
        (("srcipaddr", "10.0.0.1"),), (("srcipaddr", "10.0.0.2"),), (("dstipaddr", "10.9.9.9"),)]


def test_subchains_sorted_by_priority_then_first_appearance_and_only_ebtables_ones():
    graph = filters(
        Filter("top", entries=(ref("v6"), ref("v4b"), ref("v4a"), ref("tcponly"), ref("arp"))),
        Filter("v6", chain="ipv6", entries=(rule(priority=10, proto="ipv6"),)),
        Filter("v4a", chain="ipv4-a", priority=-300, entries=(rule(priority=20, proto="ip"),)),
        Filter("v4b", chain="ipv4-b", priority=-300, entries=(rule(priority=10, proto="ip"),)),
        Filter("tcponly", chain="ipv4-t", entries=(rule(proto="tcp", dstportstart="22"),)),
        Filter("arp", chain="arp", entries=()),
    )
    inst = _resolve.instantiate(binding("top"), graph)
    # ipv6 (-600) first; the two -300 chains by first appearance in rule order (b has the
    # lower rule priority); a chain with only iptables rules or no rules gets no sub-chain
    assert inst.subchains == (("ipv6", -600), ("ipv4-b", -300), ("ipv4-a", -300))
    assert [ri.chain for ri in inst.rules] == ["ipv6", "ipv4-b", "ipv4-a", "ipv4-t"]


def test_fixture_tree_matches_expected_instantiation():
    """A hand-checked tree: XML filters in fixtures/resolve, expected result in expected.json."""
    _filterxml = pytest.importorskip(
        "ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.filter_xml")
    graph = {}
    for fname in sorted(os.listdir(FIXTURES)):
        if fname.endswith(".xml"):
            with open(os.path.join(FIXTURES, fname)) as handle:
                flt, _warnings = _filterxml.parse_filter_xml(handle.read())
            graph[flt.name] = flt
    with open(os.path.join(FIXTURES, "expected.json")) as handle:
        expected = json.load(handle)
    inst = _resolve.instantiate(Binding("vnet7", MAC, "web", tuple(map(tuple, expected["parameters"]))), graph)
    got = [[ri.filter_name, ri.chain, ri.priority, ri.action, ri.direction,
            [[m.protocol, [list(a) for a in m.attrs]] for m in ri.matches]] for ri in inst.rules]
    assert got == expected["rules"]
    assert [list(s) for s in inst.subchains] == expected["subchains"]
