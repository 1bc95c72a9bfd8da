# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every backend takes and returns, in one shape (see backend.py for the seam itself)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple


@dataclass(frozen=True)
class Scope:
    """What this host store owns: network chains or not, and NICs that belong to someone else.

    Ownership is what the store recorded writing (``ledger``, a host/ledger.py Ledger): a chain named
    like ours that is not recorded is someone else's and is neither changed nor removed.  A store
    kept before the ledger existed has none; then the chains of ``implied_devices`` (the devices its
    bindings put chains on) are ours, and the global and network chains as before.  Without either,
    every chain with one of our names is ours (rendering, parsing fixtures).

    ``wanted``: the chains the run writes.  An owned chain it no longer wants that another tool's
    chain jumps to (``DOCKER-USER -j FI-trusted``) is handed over: left as it is, with every stale chain
    it jumps to, since the kernel would refuse to delete it and the other tool relies on it.

    ``adopted_devices``: NICs explicitly taken over from libvirtd (bound here while libvirtd's binding
    files still name them): their chains are ours by name, so libvirtd's leftovers on them go.

    ``claims``: (tool, table, chain) of per-device chains a run writes for the first time; they are
    ours.  One that already exists before the run wrote anything was written by someone else: the
    run's first read raises OwnershipError naming it and the fix (``unclaimed()`` is the scope for
    the reads after that one, when the run's own writes may have created them).
    """

    manage_networks: bool = True
    foreign_devices: frozenset = frozenset()
    ledger: object = None
    implied_devices: Optional[frozenset] = None
    adopted_devices: frozenset = frozenset()
    claims: frozenset = frozenset()
    claims_checked: bool = False
    # (tool, table, chain) the run wants; None: no judgement (an owned chain is ours whatever it is)
    wanted: Optional[frozenset] = None

    def unclaimed(self):
        return replace(self, claims_checked=True)


@dataclass(frozen=True)
class TableChange:
    """One changed table, for people: its label (``iptables filter``, ``nft inet hfw_nwfilter``),
    the owned chains rewritten and removed, and how many rules in built-in chains changed."""

    label: str
    rewritten: Tuple[str, ...] = ()
    removed: Tuple[str, ...] = ()
    hook_changes: int = 0


@dataclass
class Result:
    """What converging one backend did (or, in check mode, would do).

    ``payloads``: what was (or would be) written, by tool key (``eb``, ``ip4``, ``ip6``, ``nft``);
    ``changed_chains``: owned chains rewritten or removed; ``rebuilt_devices``: NICs whose rules
    changed."""

    changed: bool = False
    diff: List[dict] = field(default_factory=list)
    payloads: Dict[str, str] = field(default_factory=dict)
    changed_chains: List[str] = field(default_factory=list)
    rebuilt_devices: List[str] = field(default_factory=list)
    tables: List[TableChange] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def merged(self, other: "Result") -> "Result":
        return Result(self.changed or other.changed, self.diff + other.diff, dict(self.payloads, **other.payloads),
                      sorted(set(self.changed_chains) | set(other.changed_chains)),
                      sorted(set(self.rebuilt_devices) | set(other.rebuilt_devices)),
                      self.tables + other.tables, self.warnings + other.warnings)


@dataclass
class Gathered:
    """Live rules we own: per NIC and per network, each chain (label) a list of {rule, packets,
    bytes}; ``sets``: per NIC, its own elements of the sets its rules look up (nftables)."""

    by_device: Dict[str, Dict[str, list]] = field(default_factory=dict)
    sets: Dict[str, Dict[str, list]] = field(default_factory=dict)
    networks: Dict[str, list] = field(default_factory=dict)

    def merged(self, other: "Gathered") -> "Gathered":
        out = Gathered({dev: dict(chains) for dev, chains in self.by_device.items()},
                       {dev: dict(sets) for dev, sets in self.sets.items()}, dict(self.networks))
        for dev, chains in other.by_device.items():
            out.by_device.setdefault(dev, {}).update(chains)
        for dev, sets in other.sets.items():
            out.sets.setdefault(dev, {}).update(sets)
        out.networks.update(other.networks)
        return out
