# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ledger: what this collection wrote into the kernel, kept in the store document.

Ownership is what we recorded writing, not what a name looks like: a chain named like ours
that the ledger does not hold belongs to someone else and is never changed or removed.

- ``chains``: (tool, table, chain) of every xtables chain we declared;
- ``hooks``: (tool, table, built-in chain, rule) of every rule we put into a built-in chain;
- ``nft_tables``: (family, table) of every nftables table we created.

A run records what it is about to write BEFORE it writes it (the union of the old and the new
objects, see service.reconcile), and shrinks the ledger to the new objects once the kernel holds
them: at every instant the ledger holds everything of ours in the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import FrozenSet, Tuple

Chain = Tuple[str, str, str]
Hook = Tuple[str, str, str, str]
NftTable = Tuple[str, str]


@dataclass(frozen=True)
class Ledger:
    chains: FrozenSet[Chain] = field(default_factory=frozenset)
    hooks: FrozenSet[Hook] = field(default_factory=frozenset)
    nft_tables: FrozenSet[NftTable] = field(default_factory=frozenset)

    def union(self, other):
        return Ledger(self.chains | other.chains, self.hooks | other.hooks, self.nft_tables | other.nft_tables)

    def has_chain(self, tool, table, chain):
        return (tool, table, chain) in self.chains

    def has_hook(self, tool, table, builtin, rule):
        return (tool, table, builtin, rule) in self.hooks

    def has_nft_table(self, family, table):
        """For the nftables backend: True when we created ``table`` of ``family``."""
        return (family, table) in self.nft_tables


def ledger_of(xt_desired, nft_tables=()):
    """What writing ``xt_desired`` (a Ruleset) and the nftables tables keyed (family, table) puts in the kernel."""
    chains, hooks = set(), set()
    for (tool, table), state in xt_desired.items():
        chains.update((tool, table, name) for name in state.chains)
        hooks.update((tool, table, builtin, rule) for builtin, rule in state.hooks)
    return Ledger(frozenset(chains), frozenset(hooks), frozenset((str(f), str(t)) for f, t in nft_tables))


def _strings(item, size):
    if not isinstance(item, list) or len(item) != size or not all(isinstance(v, str) for v in item):
        raise ValueError("expected a list of %d strings, got %r" % (size, item))
    return tuple(item)


def from_json(data):
    """A Ledger from the document's ``ledger`` value; None stays None (no ledger kept yet)."""
    if data is None:
        return None
    if not isinstance(data, dict) or set(data) - {"chains", "hooks", "nft_tables"}:
        raise ValueError("expected an object with chains, hooks and nft_tables")
    return Ledger(frozenset(_strings(i, 3) for i in data.get("chains", [])),
                  frozenset(_strings(i, 4) for i in data.get("hooks", [])),
                  frozenset(_strings(i, 2) for i in data.get("nft_tables", [])))


def to_json(ledger):
    if ledger is None:
        return None
    return {"chains": [list(i) for i in sorted(ledger.chains)], "hooks": [list(i) for i in sorted(ledger.hooks)],
            "nft_tables": [list(i) for i in sorted(ledger.nft_tables)]}
