# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounded work in the filter graph: shared subtrees, deep chains and trees that explode.

Before resolution was memoised and iterative, a tree of filters each referencing the next one
twice was walked path by path (2**depth) while the host lock was held, and a deep chain of
references overflowed the interpreter stack (RecursionError).
"""

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import resolve as _resolve  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ResolveError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import (
    Binding, Filter, FilterRef, Match, Rule)
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import hostile_host as H

MAC = "52:54:00:00:00:31"


def tcp_rule(port):
    return Rule("accept", "in", 500, True, (Match("tcp", (("dstportstart", str(port)),)),))


def doubling(depth, rules_per_filter=1, params=None):
    """f0 -> f1 twice -> f2 twice ...; every filter holds ``rules_per_filter`` rules.

    ``params(level, copy)`` gives the parameters of each reference (none by default)."""
    out = {}
    for level in range(depth):
        rules = tuple(tcp_rule(1000 + level * 10 + n) for n in range(rules_per_filter))
        refs = ()
        if level + 1 < depth:
            refs = tuple(FilterRef("f%d" % (level + 1), params(level, copy) if params else ())
                         for copy in range(2))
        out["f%d" % level] = Filter("f%d" % level, entries=rules + refs)
    return out


def chain_of(depth):
    """c0 -> c1 -> ... -> c(depth-1), the last one with one rule."""
    out = {}
    for level in range(depth):
        last = level == depth - 1
        entries = (tcp_rule(22),) if last else (FilterRef("c%d" % (level + 1)),)
        out["c%d" % level] = Filter("c%d" % level, entries=entries)
    return out


def bind(name):
    return Binding("vnet0", MAC, name, ())


def test_forty_filters_each_referencing_the_next_twice_are_refused_before_expansion():
    graph = doubling(40)
    with pytest.raises(ResolveError) as caught:
        _resolve.instantiate(bind("f0"), graph)
    err = caught.value
    assert "more than the limit of %d" % _resolve.MAX_INSTANCES in err.msg
    assert err.context["filter"].startswith("f") and err.context["limit"] == _resolve.MAX_INSTANCES


def test_a_doubling_tree_without_rules_costs_one_visit_per_filter():
    graph = {name: Filter(name, entries=tuple(e for e in flt.entries if isinstance(e, FilterRef)))
             for name, flt in doubling(60).items()}
    inst = _resolve.instantiate(bind("f0"), graph)
    assert inst.rules == () and inst.filters_used == frozenset(graph)


def test_a_doubling_tree_within_the_limit_keeps_every_copy_in_document_order():
    graph = doubling(4)
    ports = [ri.matches[0].get("dstportstart") for ri in _resolve.instantiate(bind("f0"), graph).rules]
    # f0's rule, then f1 twice, each with f2 twice, each with f3 twice (stable sort keeps the order)
    f2 = ["1020"] + ["1030"] * 2
    f1 = ["1010"] + f2 * 2
    assert ports == ["1000"] + f1 * 2


def test_distinct_parameters_on_every_path_hit_the_tree_limit_with_the_filter_named():
    graph = doubling(40, rules_per_filter=0, params=lambda level, copy: (("V%d" % level, str(copy)),))
    with pytest.raises(ResolveError) as caught:
        _resolve.instantiate(bind("f0"), graph)
    err = caught.value
    assert "filter 'f0'" in err.msg and str(_resolve.MAX_TREE_NODES) in err.msg
    assert err.context == {"filter": "f0", "limit": _resolve.MAX_TREE_NODES}


@pytest.mark.parametrize("depth", [1000, 5000])
def test_a_deep_chain_resolves_without_recursion(depth):
    graph = chain_of(depth)
    inst = _resolve.instantiate(bind("c0"), graph)
    assert [ri.matches[0].get("dstportstart") for ri in inst.rules] == ["22"]
    assert len(inst.filters_used) == depth
    assert _resolve.dependants(graph, "c%d" % (depth - 1)) == sorted("c%d" % n for n in range(depth - 1))
    _resolve.find_cycle(graph, graph["c0"])
    node, levels = _resolve.tree(graph, "c0"), 0
    while node["references"]:
        node, levels = node["references"][0], levels + 1
    assert levels == depth - 1 and node["name"] == "c%d" % (depth - 1)


def test_a_cycle_at_the_end_of_a_deep_chain_is_found_without_recursion():
    graph = chain_of(3000)
    closing = Filter("c2999", entries=(FilterRef("c0"),))
    with pytest.raises(ResolveError) as caught:
        _resolve.find_cycle(graph, closing)
    assert caught.value.context["cycle"][0] == "c2999" and caught.value.context["cycle"][-1] == "c2999"
    graph["c2999"] = closing
    with pytest.raises(ResolveError, match="reference cycle"):
        _resolve.instantiate(bind("c0"), graph)


def test_cycle_check_of_a_doubling_graph_enters_each_filter_once():
    graph = doubling(60)
    _resolve.find_cycle(graph, graph["f0"])
    with pytest.raises(ResolveError, match="reference cycle"):
        _resolve.find_cycle(graph, Filter("f59", entries=(FilterRef("f0"),)))
    assert _resolve.dependants(graph, "f59") == sorted("f%d" % n for n in range(59))


def test_tree_of_a_doubling_graph_shows_each_subtree_once():
    node = _resolve.tree(doubling(60), "f0")
    for level in range(1, 60):
        first, second = node["references"]
        assert first["name"] == second["name"] == "f%d" % level
        assert second == {"name": "f%d" % level, "repeated": True, "references": []}
        node = first
    assert node == {"name": "f59", "references": []}


def test_binding_the_top_of_a_doubling_tree_fails_fast_and_changes_nothing(tmp_path):
    root, host = str(tmp_path), H.FakeHost()
    for name, flt in sorted(doubling(40).items(), reverse=True):
        refs = "".join("<filterref filter='%s'/>" % e.filter for e in flt.entries if isinstance(e, FilterRef))
        xml = ("<filter name='%s' chain='root'><rule action='accept' direction='in'>"
               "<tcp dstportstart='%s'/></rule>%s</filter>" % (name, flt.rules[0].matches[0].get("dstportstart"), refs))
        _actions.nwfilter(H.filter_params(root, xml=xml), False, host)
    before = H.snapshot(root, host)
    with pytest.raises(ResolveError) as caught:
        _actions.guest_nic_filter(H.nic_params(root, portdev="vnet0", mac=MAC, filter="f0"), False, host)
    assert "limit" in caught.value.msg and "filter 'f" in caught.value.msg
    assert H.snapshot(root, host) == before
    # the lock was released: the next writer goes through
    _actions.guest_nic_filter(H.nic_params(root, portdev="vnet0", mac=MAC, filter="f39"), False, host)
