# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filter graph: cycle checks, dependants, and instantiating a binding into rule instances.

Instantiation follows libvirt's nwfilter driver:

* depth-first flattening of the ``<filterref>`` tree in document order; at each reference the
  child sees the reference's own parameters overlaid by the caller's variables (the caller wins);
* a rule is expanded once per combination of the list values it references: accesses sharing an
  iterator id (plain ``$NAME`` is iterator 0) walk their lists in step, different ids combine,
  ``$NAME[n]`` picks one element; a combination whose values were already seen for that iterator
  is skipped;
* rules are sorted root chain first, then by rule priority (stable, so ties keep depth-first
  document order); afterwards a non-root rule whose priority is below its chain's priority is
  raised to it (libvirt does this after sorting, so the order does not change).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import itertools
from typing import Dict, List, Mapping, Tuple

from ..errors import FilterXMLError, ResolveError, VariableError
from .model import Binding, Filter, FilterRef, Instantiation, ResolvedMatch, Rule, RuleInstance
from . import schema as _schema

MAX_INSTANCES = 100000
# distinct (filter, variable values) pairs one binding's filterref tree may visit
MAX_TREE_NODES = 10000

Variables = Dict[str, Tuple[str, ...]]


# ---------------------------------------------------------------------------------------------
# graph queries


def _cycle_error(path):
    text = " -> ".join("'%s'" % name for name in path)
    return ResolveError(
        "filter %s forms a reference cycle: remove one of these references" % text, cycle=list(path)
    )


def find_cycle(filters: Mapping[str, Filter], candidate: Filter) -> None:
    """Raise ResolveError if defining ``candidate`` (replacing its namesake) closes a cycle.

    Like libvirt, follow the existing definitions from the candidate and fail when the candidate's
    own name is reached; references to filters not defined yet are allowed.  Iterative, and each
    filter is entered once, so any depth and any sharing cost time linear in the references.
    """
    target = candidate.name
    done = set()
    path, on_path = [target], {target}
    stack = [iter(candidate.references)]
    while stack:
        ref = next(stack[-1], None)
        if ref is None:
            stack.pop()
            name = path.pop()
            done.add(name)
            on_path.discard(name)
            continue
        if ref == target:
            raise _cycle_error(path + [target])
        child = filters.get(ref)
        if child is None or ref in done or ref in on_path:
            continue
        path.append(ref)
        on_path.add(ref)
        stack.append(iter(child.references))


def dependants(filters: Mapping[str, Filter], name: str) -> List[str]:
    """Sorted names of the filters whose tree (transitively) references ``name``."""
    users: Dict[str, List[str]] = {}
    for other, flt in filters.items():
        for ref in set(flt.references):
            users.setdefault(ref, []).append(other)
    found, todo = set(), [name]
    while todo:
        for user in users.get(todo.pop(), ()):
            if user not in found:
                found.add(user)
                todo.append(user)
    found.discard(name)
    return sorted(found)


def tree(filters: Mapping[str, Filter], name: str) -> dict:
    """``{name, references: [...]}`` for display; unknown filters get ``missing: True``.

    A filter's subtree is shown where it first appears; later uses are marked ``repeated`` so the
    display grows with the references, not with the paths (which double with every shared level).
    """
    root = {"name": name, "references": []}
    shown, on_path = set(), set()
    todo = [(root, False)]  # (node, True when leaving it)
    while todo:
        node, leaving = todo.pop()
        if leaving:
            on_path.discard(node["name"])
            continue
        flt = filters.get(node["name"])
        if flt is None:
            node["missing"] = True
        elif node["name"] in on_path:
            node["cycle"] = True
        elif node["name"] in shown:
            node["repeated"] = True
        else:
            shown.add(node["name"])
            on_path.add(node["name"])
            node["references"] = [{"name": ref, "references": []} for ref in flt.references]
            todo.append((node, True))
            todo.extend((child, False) for child in reversed(node["references"]))
    return root


# ---------------------------------------------------------------------------------------------
# variables


def variables_from(parameters) -> Variables:
    """(name, value) pairs to a variable map; a repeated name makes a list, in order.

    A value may also be a list or tuple (an empty one is kept, and refused when used).
    """
    result: Dict[str, list] = {}
    for name, value in parameters:
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        result.setdefault(name, []).extend(str(v) for v in values)
    return {name: tuple(values) for name, values in result.items()}


# every NIC bound to the same filters parses the same attribute strings again: parse each once
@functools.lru_cache(maxsize=4096)
def _access(value):
    """(name, index, iterator) when ``value`` is a variable reference, else None."""
    ref = _schema.parse_var_ref(value)
    if ref is None:
        return None
    name, index, iterator = ref
    if index is not None:
        return (name, int(index), None)
    return (name, None, int(iterator or 0))


def _rule_accesses(rule: Rule):
    """The rule's distinct variable accesses in document order (libvirt's varAccess order)."""
    seen = []
    for match in rule.matches:
        for _key, raw in match.attrs:
            acc = _access(raw)
            if acc is not None and acc not in seen:
                seen.append(acc)
    return seen


def _show(acc):
    name, index, iterator = acc
    if index is not None:
        return "$%s[%d]" % (name, index)
    return "$%s" % name if iterator == 0 else "$%s[@%d]" % (name, iterator)


def _problem(acc, variables):
    name, index, _iterator = acc
    values = variables.get(name)
    if values is None:
        return "variable %s has no value" % name
    if not values:
        return "variable %s is an empty list" % name
    if index is not None and index >= len(values):
        return "%s is out of range: %s has %d value(s)" % (_show(acc), name, len(values))
    return None


def _check_variables(flat, portdev):
    """Report every unusable variable of the tree at once, as libvirt does before instantiating."""
    problems, names = [], set()
    for flt, rule, variables in flat:
        for acc in _rule_accesses(rule):
            text = _problem(acc, variables)
            if text and "filter '%s': %s" % (flt.name, text) not in problems:
                problems.append("filter '%s': %s" % (flt.name, text))
                names.add(acc[0])
    if not problems:
        return
    if "IP" in names:
        hint = "this collection does not learn IP addresses: pass IP (repeat it for a list)"
    else:
        hint = "pass %s" % ", ".join(sorted(names))
    raise VariableError(
        "cannot instantiate the filters of '%s': %s. Fix: %s in the binding parameters, and give "
        "every indexed list enough values" % (portdev, "; ".join(problems), hint),
        portdev=portdev,
        variables=sorted(names),
        problems=problems,
    )


def variables_used(filters: Mapping[str, Filter], name: str) -> set:
    """Names of the variables that the rules of ``name``'s tree read, or that its references set.

    Unknown references and cycles are left to ``instantiate``, which reports them; this only
    answers "can a binding parameter of this name make any difference?"."""
    used, seen, todo = set(), set(), [name]
    while todo:
        flt = filters.get(todo.pop())
        if flt is None or flt.name in seen:
            continue
        seen.add(flt.name)
        for entry in flt.entries:
            if isinstance(entry, FilterRef):
                used.update(key for key, _value in entry.parameters)
                todo.append(entry.filter)
            else:
                used.update(acc[0] for acc in _rule_accesses(entry))
    return used


# ---------------------------------------------------------------------------------------------
# flattening


def _suggest(name, filters):
    close = difflib.get_close_matches(name, list(filters), n=1)
    return " (did you mean '%s'?)" % close[0] if close else ""


def _unknown(name, referrer, filters):
    return ResolveError(
        "%s references unknown filter '%s'%s: define that filter first or fix the reference"
        % (referrer, name, _suggest(name, filters)),
        filter=name,
        referrer=referrer,
    )


def _tree_too_big(name):
    return ResolveError(
        "filter '%s': its filterref tree holds more than %d distinct (filter, variable values) pairs, the "
        "limit: reference fewer filters or pass fewer distinct parameters down the tree" % (name, MAX_TREE_NODES),
        filter=name,
        limit=MAX_TREE_NODES,
    )


def _child_variables(entry, variables):
    child = variables_from(entry.parameters)
    child.update(variables)  # the caller's variables win
    return child


def _walk(filters, root, variables):
    """Each distinct (filter, variable values) node of the tree once, iteratively.

    Returns ``(nodes, alias, root key)``: nodes[key] = (filter, variables, items), items in
    document order being ``(True, rule)`` or ``(False, child key)``; children without rules are left
    out and a node that only forwards to one child is aliased to it, so a later walk over the items
    touches at most about two nodes per rule.  Counts are checked as they grow, so a tree that
    repeats filters exponentially is refused before anything is expanded.
    """
    counts: Dict[tuple, int] = {}
    nodes: Dict[tuple, tuple] = {}
    alias: Dict[tuple, tuple] = {}
    # a node's variables follow from its parent's and the reference's parameters, so a node is
    # keyed by its filter and a token for that chain of parameters (cheap to hash, unlike the
    # values themselves); equal parameters along two paths share one node
    tokens: Dict[tuple, int] = {}
    top = (root.name, 0)
    # frame: [filter, variables, key, entries iterator, items, rule count]
    stack = [[root, variables, top, iter(root.entries), [], 0]]
    path, on_path = [root.name], {root.name}
    while stack:
        frame = stack[-1]
        flt, flt_vars, key, entries, items, _count = frame
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            on_path.discard(path.pop())
            counts[key] = frame[5]
            nodes[key] = (flt, flt_vars, tuple(items))
            if len(items) == 1 and not items[0][0]:
                alias[key] = alias.get(items[0][1], items[0][1])
            if stack:
                _add(stack[-1], key, counts[key])
            continue
        if not isinstance(entry, FilterRef):
            items.append((True, entry))
            frame[5] += 1
        else:
            if entry.filter in on_path:
                raise _cycle_error(path + [entry.filter])
            child = filters.get(entry.filter)
            if child is None:
                raise _unknown(entry.filter, "filter '%s'" % flt.name, filters)
            token = tokens.setdefault((key[1], entry.parameters), len(tokens) + 1)
            child_key = (child.name, token)
            if child_key in counts:
                _add(frame, child_key, counts[child_key])
            else:
                if len(counts) + len(stack) >= MAX_TREE_NODES:
                    raise _tree_too_big(root.name)
                stack.append([child, _child_variables(entry, flt_vars), child_key, iter(child.entries), [], 0])
                path.append(child.name)
                on_path.add(child.name)
        if frame[5] > MAX_INSTANCES:
            raise _explosion(flt.name, frame[5])
    return nodes, alias, top


def _add(frame, child_key, count):
    if count:
        frame[4].append((False, child_key))
        frame[5] += count


def _flatten(filters, root, variables):
    """(filter, rule, variables) for every rule of ``root``'s tree, depth first in document order,
    and the names of every filter the tree uses."""
    nodes, alias, top = _walk(filters, root, variables)
    out = []
    stack = [alias.get(top, top)]
    positions = [0]
    while stack:
        flt, flt_vars, items = nodes[stack[-1]]
        if positions[-1] == len(items):
            stack.pop()
            positions.pop()
            continue
        is_rule, item = items[positions[-1]]
        positions[-1] += 1
        if is_rule:
            out.append((flt, item, flt_vars))
        else:
            stack.append(alias.get(item, item))
            positions.append(0)
    return out, {key[0] for key in nodes}


# ---------------------------------------------------------------------------------------------
# expanding one rule


def _groups(accesses, variables, filter_name):
    """Iterator groups in libvirt's order: iterator 0 first, then by first use.

    Each group is (accesses, positions): positions are the list indexes it takes, skipping a
    position whose values repeat an earlier position of the same group.
    """
    order: List[Tuple] = [("iter", 0)]
    members: Dict[Tuple, list] = {("iter", 0): []}
    for acc in accesses:
        key = ("elem", acc) if acc[1] is not None else ("iter", acc[2])
        if key not in members:
            order.append(key)
            members[key] = []
        members[key].append(acc)
    return [(members[key], _positions(key, members[key], variables, filter_name)) for key in order]


def _positions(key, accs, variables, filter_name):
    if key[0] == "elem":
        return [key[1][1]]
    if not accs:
        return [0]
    lengths = {acc[0]: len(variables[acc[0]]) for acc in accs}
    if len(set(lengths.values())) > 1:
        sizes = ", ".join("%s=%d" % item for item in sorted(lengths.items()))
        raise VariableError(
            "filter '%s' walks lists %s in step but they differ in length (%s): give them the "
            "same number of values or use different iterators ($NAME[@1], $NAME[@2])"
            % (filter_name, ", ".join(_show(a) for a in accs), sizes),
            filter=filter_name,
        )
    seen, positions = set(), []
    for pos in range(next(iter(lengths.values()))):
        values = tuple(variables[acc[0]][pos] for acc in accs)
        if values not in seen:
            seen.add(values)
            positions.append(pos)
    return positions


def _combinations(groups):
    """Position tuples with the first group varying fastest, as libvirt's iterator does."""
    for combo in itertools.product(*[g[1] for g in reversed(groups)]):
        yield tuple(reversed(combo))


def _count(groups):
    total = 1
    for _accs, positions in groups:
        total *= len(positions)
    return total


# constants (protocolid='ipv4', ...) repeat in every NIC's instantiation: canonicalise once
_canonical = functools.lru_cache(maxsize=4096)(_schema.canonical_value)


class _Canon:
    """canonical_value with a cache and errors that name the filter (and the variable)."""

    def __init__(self):
        self.cache = {}

    def __call__(self, flt, protocol, attr, value, acc):
        key = (protocol, attr, value)
        if key not in self.cache:
            try:
                self.cache[key] = _canonical(protocol, attr, value)
            except FilterXMLError as exc:
                if acc is None:
                    raise ResolveError(
                        "filter '%s': %s" % (flt.name, exc.msg), filter=flt.name, attribute=attr
                    ) from None
                raise VariableError(
                    "filter '%s': %s = %r is not a valid %s %s: %s (set %s to a valid value)"
                    % (flt.name, _show(acc), value, protocol, attr, exc.msg, acc[0]),
                    filter=flt.name,
                    variable=acc[0],
                    value=value,
                ) from None
        return self.cache[key]


def new_memo():
    """An empty memo for instantiate(): valid while the filters it was used with are unchanged."""
    return {"canon": _Canon()}


def _expanded(flt, rule, variables, memo):
    """_expand's instances, computed once per filter, rule and values of the variables it uses.

    Keys hold object ids; the entry keeps the filter and rule alive so no id is reused meanwhile.
    """
    accesses = _rule_accesses(rule)
    key = (id(flt), id(rule)) + tuple(variables[name] for name in sorted({acc[0] for acc in accesses}))
    entry = memo.get(key)
    if entry is None:
        chain_priority = _schema.chain_priority(flt.chain, flt.priority)
        entry = (flt, rule, tuple(_expand(flt, rule, variables, chain_priority, memo["canon"], accesses)))
        memo[key] = entry
    return entry[2]


def _expand(flt, rule, variables, chain_priority, canon, accesses):
    groups = _groups(accesses, variables, flt.name)
    slot = {}
    for number, (accs, _positions) in enumerate(groups):
        for acc in accs:
            slot[acc] = number
    if _count(groups) > MAX_INSTANCES:
        raise _explosion(flt.name, _count(groups))
    for combo in _combinations(groups):
        matches = []
        for match in rule.matches:
            attrs = []
            for key, raw in match.attrs:
                acc = _access(raw)
                value = raw if acc is None else variables[acc[0]][acc[1] if acc[1] is not None else combo[slot[acc]]]
                attrs.append((key, canon(flt, match.protocol, key, value, acc)))
            matches.append(ResolvedMatch(protocol=match.protocol, attrs=tuple(attrs), negate=match.negate))
        yield RuleInstance(
            filter_name=flt.name,
            chain=flt.chain,
            chain_priority=chain_priority,
            priority=rule.priority,
            action=rule.action,
            direction=rule.direction,
            statematch=rule.statematch,
            matches=tuple(matches),
        )


def _explosion(name, count):
    return ResolveError(
        "filter '%s' expands to %d rule instances, more than the limit of %d: shorten the value "
        "lists or walk them in step (same iterator) instead of combining them" % (name, count, MAX_INSTANCES),
        filter=name,
        limit=MAX_INSTANCES,
    )


# ---------------------------------------------------------------------------------------------
# instantiation


def _sorted(instances):
    """libvirt's order: root first, then rule priority (stable); then the chain-priority raise."""
    ordered = sorted(instances, key=lambda ri: (ri.chain != "root", ri.priority))
    return tuple(
        ri if ri.chain == "root" or ri.chain_priority <= ri.priority
        else dataclasses.replace(ri, priority=ri.chain_priority)
        for ri in ordered
    )


def _is_ethernet(ri):
    """A rule ebtables handles (a match-all rule too); only these make libvirt create a chain."""
    return ri.protocol is None or _schema.is_l2(ri.protocol)


def _subchains(rules):
    """Non-root chains holding ebtables rules, by chain priority then first appearance.

    When filters share a suffix with different priorities, the last rule in order decides, as
    libvirt's hash update does.
    """
    first: Dict[str, int] = {}
    prio: Dict[str, int] = {}
    for number, ri in enumerate(rules):
        if ri.chain != "root" and _is_ethernet(ri):
            first.setdefault(ri.chain, number)
            prio[ri.chain] = ri.chain_priority
    return tuple((name, prio[name]) for name in sorted(first, key=lambda n: (prio[n], first[n])))


def instantiate(binding: Binding, filters: Mapping[str, Filter], memo=None) -> Instantiation:
    """Flatten the binding's filter tree into ordered, concrete rule instances.

    ``memo``: a dict shared by the instantiations of one ``filters`` mapping (new_memo()).  A rule
    expands the same way wherever the variables it uses have the same values, so NICs bound to
    the same filters share every instance that does not depend on their MAC or IP.
    """
    root = filters.get(binding.filter)
    if root is None:
        raise _unknown(binding.filter, "the binding of '%s'" % binding.label, filters)
    variables = variables_from(binding.parameters)
    variables.setdefault("MAC", (binding.mac,))
    flat, used = _flatten(filters, root, variables)
    _check_variables(flat, binding.label)
    memo = new_memo() if memo is None else memo
    instances: List[RuleInstance] = []
    for flt, rule, rule_vars in flat:
        instances.extend(_expanded(flt, rule, rule_vars, memo))
        if len(instances) > MAX_INSTANCES:
            raise _explosion(binding.filter, len(instances))
    rules = _sorted(instances)
    return Instantiation(
        portdev=binding.portdev,
        mac=binding.mac,
        rules=rules,
        subchains=_subchains(rules),
        filters_used=frozenset(used),
    )
