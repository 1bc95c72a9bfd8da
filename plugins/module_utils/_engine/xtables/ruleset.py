# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backend state for the xtables tools: the chains we own, table by table.

A rule is kept as the text that follows ``-A CHAIN `` in ``*-save`` output, in exactly the form
the tool prints it back, so desired and live rules compare as strings.  Compilers produce
TableState objects; the save parser produces them from live output; the planner diffs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, Tuple

from .printed import written_rule

TOOL_ORDER = ("eb", "ip4", "ip6")

BUILTIN_CHAINS = {
    ("eb", "filter"): ("INPUT", "FORWARD", "OUTPUT"),
    ("eb", "nat"): ("PREROUTING", "OUTPUT", "POSTROUTING"),
    ("eb", "broute"): ("BROUTING",),
    ("ip4", "filter"): ("INPUT", "FORWARD", "OUTPUT"),
    ("ip4", "nat"): ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    ("ip4", "mangle"): ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    ("ip4", "raw"): ("PREROUTING", "OUTPUT"),
}
for _key in list(BUILTIN_CHAINS):
    if _key[0] == "ip4":
        BUILTIN_CHAINS[("ip6", _key[1])] = BUILTIN_CHAINS[_key]


def is_builtin_chain(tool: str, table: str, chain: str) -> bool:
    return chain in BUILTIN_CHAINS.get((tool, table), ())


@dataclass(frozen=True)
class Chain:
    """A user chain we own and write whole."""

    name: str
    rules: Tuple[str, ...] = ()
    # ebtables user chains carry a policy (libvirt's are ACCEPT); iptables user chains print '-'
    policy: str = "-"


@dataclass(frozen=True)
class TableState:
    """What we own in one table of one tool.

    ``chains``: our user chains by name.  ``hooks``: our rules inside built-in chains, as
    (built-in chain, rule text) in the order they must stand at the top of that chain.
    """

    tool: str
    table: str
    chains: Dict[str, Chain] = field(default_factory=dict)
    hooks: Tuple[Tuple[str, str], ...] = ()

    def is_empty(self) -> bool:
        return not self.chains and not self.hooks

    def hooks_of(self, builtin: str) -> Tuple[str, ...]:
        return tuple(rule for chain, rule in self.hooks if chain == builtin)


# (tool, table) -> TableState
Ruleset = Dict[Tuple[str, str], TableState]


def merge_rulesets(parts: Iterable[Ruleset]) -> Ruleset:
    """Combine rulesets of independent owners (NIC filters, networks) into one.

    Chains must not collide; hooks are concatenated in the order the parts are given, which is
    how callers fix the relative position of, e.g., nwfilter's and the networks' FORWARD jumps.
    """
    merged: Ruleset = {}
    for part in parts:
        for key, state in part.items():
            have = merged.get(key)
            if have is None:
                merged[key] = TableState(state.tool, state.table, dict(state.chains), tuple(state.hooks))
                continue
            clash = set(have.chains) & set(state.chains)
            if clash:
                raise ValueError("chains %s generated twice in %s/%s" % (sorted(clash), key[0], key[1]))
            chains = dict(have.chains)
            chains.update(state.chains)
            merged[key] = TableState(key[0], key[1], chains, have.hooks + tuple(state.hooks))
    return merged


def render_table(state: TableState, written=False) -> str:
    """Save-format text of the chains we own (sorted by name), for diffs and ``rendered``;
    ``written``: each rule as the restore payload must say it (printed.written_rule)."""
    lines = ["*%s" % state.table]
    for name in sorted(state.chains):
        lines.append(":%s %s" % (name, state.chains[name].policy if state.tool == "eb" else "- [0:0]"))
    for builtin, rule in state.hooks:
        lines.append("-A %s %s" % (builtin, rule))
    for name in sorted(state.chains):
        for rule in state.chains[name].rules:
            lines.append("-A %s %s" % (name, written_rule(state.tool, rule) if written else rule))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"
