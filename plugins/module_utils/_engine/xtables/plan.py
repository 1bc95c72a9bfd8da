# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Diff the chains we own (desired vs live) into ``*-restore --noflush`` payloads.

Rules of the payload, each one a netfilter trap avoided:
- an owned chain that differs is declared (which flushes it in --noflush mode) and refilled whole;
- a built-in chain is never declared (that would reset the admin's policy); our jump rules in it
  ("hooks") are touched only with ``-D`` (by rule text) and ``-I`` (by position);
- a stale owned chain is flushed, and deleted (``-X``) last, after every reference is gone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .printed import written_rule
from .save_parse import printable
from .ruleset import BUILTIN_CHAINS, TOOL_ORDER, TableState, is_builtin_chain, render_table

TOOL_LABEL = {"eb": "ebtables", "ip4": "iptables", "ip6": "ip6tables"}


@dataclass(frozen=True)
class TablePlan:
    """The change of one table: payload lines between ``*table`` and ``COMMIT``, and the diff."""

    tool: str
    table: str
    lines: Tuple[str, ...]
    before: str
    after: str

    def section(self) -> str:
        return "*%s\n%sCOMMIT\n" % (self.table, "".join(line + "\n" for line in self.lines))


@dataclass(frozen=True)
class Plan:
    tables: Tuple[TablePlan, ...] = ()

    def is_empty(self) -> bool:
        return not self.tables

    @property
    def tables_changed(self) -> Tuple[Tuple[str, str], ...]:
        return tuple((t.tool, t.table) for t in self.tables)

    @property
    def tools_changed(self) -> Tuple[str, ...]:
        tools = {t.tool for t in self.tables}
        return tuple(tool for tool in TOOL_ORDER if tool in tools)

    def payload(self, tool) -> str:
        """One restore input for all changed tables of a tool (one transaction on nft)."""
        return "".join(t.section() for t in self.tables if t.tool == tool)

    def diff(self) -> List[dict]:
        """Ansible diff entries, one per changed table."""
        return [
            {
                "before_header": "%s %s (live, owned chains)" % (TOOL_LABEL[t.tool], t.table),
                "after_header": "%s %s (desired)" % (TOOL_LABEL[t.tool], t.table),
                "before": t.before,
                "after": t.after,
            }
            for t in self.tables
        ]


def _sort_key(key):
    return (TOOL_ORDER.index(key[0]), key[1])


def _builtin_order(tool, table, names):
    known = BUILTIN_CHAINS.get((tool, table), ())
    return [n for n in known if n in names] + sorted(n for n in names if n not in known)


def _top_positions(state: TableState):
    """Positions assumed when the caller has none: every hook at the top, in listed order."""
    return {(state.tool, state.table, b): tuple(range(1, len(state.hooks_of(b)) + 1)) for b, rule in state.hooks}


def stale_hooks(want, have):
    """Indexes of live hooks to delete: unknown rules and surplus copies.

    ``-D`` by text removes the first copy in the chain, so surplus copies are the first ones.
    """
    surplus = Counter(have)
    surplus.subtract(Counter(want))
    stale = []
    for index, rule in enumerate(have):
        if surplus[rule] > 0:
            stale.append(index)
            surplus[rule] -= 1
    return stale


def _matched(kept, want):
    """Indexes of ``want`` matched by ``kept`` as an ordered subsequence, or None."""
    matched, j = set(), 0
    for rule in kept:
        while j < len(want) and want[j] != rule:
            j += 1
        if j == len(want):
            return None
        matched.add(j)
        j += 1
    return matched


def _hook_ops(want, have, pos):
    """(rules to delete by text, (position, rule) to insert) for one built-in chain."""
    top = tuple(range(1, len(have) + 1))
    if have == want and pos == top:
        return [], []
    stale = stale_hooks(want, have)
    kept = [i for i in range(len(have)) if i not in stale]
    shifted = [pos[i] - sum(1 for s in stale if pos[s] < pos[i]) for i in kept]
    matched = _matched([have[i] for i in kept], want)
    if matched is not None and shifted == list(range(1, len(kept) + 1)):
        deletes = [have[i] for i in stale]
        inserts = [(i + 1, rule) for i, rule in enumerate(want) if i not in matched]
    else:
        deletes = list(have)
        inserts = [(i + 1, rule) for i, rule in enumerate(want)]
    return deletes, inserts


def _declaration(state: TableState, name, policy):
    if is_builtin_chain(state.tool, state.table, name):
        raise ValueError("refusing to declare built-in chain %s in %s/%s" % (name, state.tool, state.table))
    return ":%s %s" % (name, policy if state.tool == "eb" else "- [0:0]")


def _declaration_order(tool, names):
    """ebtables-restore (1.8.9, nft) spends most of a large restore comparing chain names while
    it adds declared chains; in descending name order a 1000-NIC restore takes about a fifth less
    CPU (bench/README.md).  The order of the rules that fill them makes no difference."""
    return sorted(names, reverse=tool == "eb")


def _table_lines(desired: TableState, live: TableState, positions):
    changed = sorted(n for n, c in desired.chains.items() if live.chains.get(n) != c)
    stale = sorted(n for n in live.chains if n not in desired.chains)
    decls = [_declaration(desired, n, desired.chains[n].policy) for n in _declaration_order(desired.tool, changed)]
    decls += [_declaration(live, n, live.chains[n].policy) for n in _declaration_order(live.tool, stale)]
    deletes, inserts = [], []
    builtins = {b for b, rule in desired.hooks} | {b for b, rule in live.hooks}
    for builtin in _builtin_order(desired.tool, desired.table, builtins):
        have = live.hooks_of(builtin)
        pos = positions.get((live.tool, live.table, builtin), tuple(range(1, len(have) + 1)))
        dels, ins = _hook_ops(desired.hooks_of(builtin), have, pos)
        deletes += ["-D %s %s" % (builtin, rule) for rule in dels]
        inserts += ["-I %s %d %s" % (builtin, at, rule) for at, rule in ins]
    fills = ["-A %s %s" % (n, written_rule(desired.tool, rule)) for n in changed for rule in desired.chains[n].rules]
    removals = ["-X %s" % n for n in stale]
    return decls + deletes + fills + inserts + removals


def _render_live(live: TableState, positions):
    """render_table plus a note when our hooks do not stand at the top (else the diff hides it)."""
    lines = render_table(live).splitlines(True)
    notes = []
    for builtin in _builtin_order(live.tool, live.table, {b for b, rule in live.hooks}):
        pos = positions.get((live.tool, live.table, builtin))
        if pos is not None and pos != tuple(range(1, len(pos) + 1)):
            notes.append("# %s: our rules stand at positions %s, not at the top\n" % (builtin, ", ".join(map(str, pos))))
    return printable("".join(lines[:1] + notes + lines[1:]))


def plan(desired, live, live_positions: Optional[Dict] = None):
    """Plan from ``live`` to ``desired`` (both Rulesets of owned content, keyed by (tool, table)).

    ``live_positions`` comes from ``_saveparse.parse_live``; None means every live hook stands
    at the top of its chain in the listed order.
    """
    tables = []
    for key in sorted(set(desired) | set(live), key=_sort_key):
        want = desired.get(key) or TableState(*key)
        have = live.get(key) or TableState(*key)
        positions = _top_positions(have) if live_positions is None else live_positions
        lines = _table_lines(want, have, positions)
        if lines:
            tables.append(TablePlan(key[0], key[1], tuple(lines), _render_live(have, positions), render_table(want)))
    return Plan(tuple(tables))
