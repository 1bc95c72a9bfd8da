# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The typed model shared by every stage of the engine.

Parsed documents (Filter, Binding) hold attribute values as the strings the user wrote, already
validated when they are literals; values that reference variables (``$IP``, ``$IP[1]``,
``$IP[@2]``) are validated once resolved.  RuleInstance is what the resolver hands to a backend:
every value concrete and canonical.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

# (attribute name, value as written) in schema order
Attr = Tuple[str, str]
# characters a store file name may not hold (see _store.OBJECT_NAME_RE)
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Match:
    """One protocol element of a rule, e.g. ``<tcp dstportstart='22'/>``."""

    protocol: str
    attrs: Tuple[Attr, ...] = ()
    negate: bool = False  # match='no'

    def get(self, name, default=None):
        for key, value in self.attrs:
            if key == name:
                return value
        return default


@dataclass(frozen=True)
class Rule:
    action: str  # drop | reject | accept | return | continue
    direction: str  # in | out | inout
    priority: int = 500
    statematch: bool = True
    # all of one protocol (libvirt ANDs repeated elements); empty tuple = match-all rule
    matches: Tuple[Match, ...] = ()

    @property
    def protocol(self) -> Optional[str]:
        return self.matches[0].protocol if self.matches else None


@dataclass(frozen=True)
class FilterRef:
    filter: str
    # repeated names form a value list, in document order
    parameters: Tuple[Tuple[str, str], ...] = ()


Entry = Union[Rule, FilterRef]


@dataclass(frozen=True)
class Filter:
    name: str
    uuid: Optional[str] = None
    chain: str = "root"
    # None when not given: the default for the chain's prefix applies (see chain_priority())
    priority: Optional[int] = None
    entries: Tuple[Entry, ...] = ()

    @property
    def rules(self) -> Tuple[Rule, ...]:
        return tuple(e for e in self.entries if isinstance(e, Rule))

    @property
    def references(self) -> Tuple[str, ...]:
        return tuple(e.filter for e in self.entries if isinstance(e, FilterRef))


def domain_key(domain: str) -> str:
    """A libvirt domain name as a file-name-safe string (libvirt allows almost any character)."""
    safe = _UNSAFE_KEY_CHARS.sub("_", domain)[:80]
    if safe != domain or not safe or safe.startswith("."):
        # a readable prefix plus a digest, so names that differ only in unsafe characters stay apart
        safe = "%s_%s" % (safe.lstrip(".")[:70], hashlib.sha256(domain.encode()).hexdigest()[:8])
    return safe


@dataclass(frozen=True)
class Binding:
    """A filter instantiated on one guest NIC (libvirt's <filterbinding>).

    A binding names either a fixed tap (``portdev``) or, with ``portdev`` None, a guest NIC: the
    domain (``owner_name``) and the NIC's MAC, optionally its alias; its tap is found at apply
    time (see _guests).
    """

    portdev: Optional[str]
    mac: str
    filter: str
    parameters: Tuple[Tuple[str, str], ...] = ()
    owner_name: Optional[str] = None
    owner_uuid: Optional[str] = None
    linkdev: Optional[str] = None
    alias: Optional[str] = None

    @property
    def domain(self) -> Optional[str]:
        """The libvirt domain a guest binding follows; None for a fixed-tap binding."""
        return self.owner_name if self.portdev is None else None

    @property
    def key(self) -> str:
        """Store key (file name stem): the tap, or DOMAIN--MAC for a guest binding."""
        if self.portdev is not None:
            return self.portdev
        return "%s--%s" % (domain_key(self.owner_name or ""), self.mac.replace(":", "-"))

    @property
    def label(self) -> str:
        """How messages name the binding."""
        if self.portdev is not None:
            return self.portdev
        return "guest %s NIC %s" % (self.owner_name, self.mac)


@dataclass(frozen=True)
class ResolvedMatch(Match):
    """A Match after resolution: every value concrete and canonical."""


@dataclass(frozen=True)
class RuleInstance:
    """One concrete rule after variable expansion, ready for a backend to compile."""

    filter_name: str
    chain: str  # chain suffix of the filter that contains the rule: 'root', 'ipv4-ip', ...
    chain_priority: int
    priority: int
    action: str
    direction: str
    statematch: bool
    matches: Tuple[ResolvedMatch, ...] = ()

    @property
    def protocol(self) -> Optional[str]:
        return self.matches[0].protocol if self.matches else None


@dataclass(frozen=True)
class Instantiation:
    """The flattened result of resolving one binding, in libvirt's evaluation order.

    ``rules``: every rule instance of the tree, root-chain rules first, then by rule priority,
    ties broken by depth-first document order (libvirt's sort, made stable).
    ``subchains``: (suffix, chain priority) of each non-root chain that holds rules, sorted by
    priority then first appearance; a backend interleaves the jumps to them among the root
    chain's rules (a jump goes before the first root rule whose priority is >= its own).
    """

    portdev: str
    mac: str
    rules: Tuple[RuleInstance, ...] = ()
    subchains: Tuple[Tuple[str, int], ...] = ()
    filters_used: frozenset = field(default_factory=frozenset)
