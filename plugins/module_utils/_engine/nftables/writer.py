# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one writer of nft text: tables, sets, maps, chains and rules as typed objects.

The compilers (compile_l2, compile_l3, networks) build these objects; only ``render_table`` and
``render_rule`` turn them into text, in the form ``nft list`` prints back (one object per block,
sets and maps before chains, elements in the order given: the compilers sort them).
A rule is a tuple of statements; every statement class renders itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union


def quoted(name):
    """An interface name as a set element or a match value: nft prints it in double quotes."""
    return '"%s"' % name


@dataclass(frozen=True)
class Match:
    """``EXPR VALUE`` or ``EXPR != VALUE`` (``ether type ip``, ``tcp dport 22-25``)."""

    expr: str
    value: str
    negate: bool = False

    def render(self):
        return "%s %s%s" % (self.expr, "!= " if self.negate else "", self.value)


@dataclass(frozen=True)
class Lookup:
    """``KEY . KEY @SET`` (or ``!= @SET``): a lookup in a named set."""

    keys: Tuple[str, ...]
    set_name: str
    negate: bool = False

    def render(self):
        return "%s %s@%s" % (" . ".join(self.keys), "!= " if self.negate else "", self.set_name)


@dataclass(frozen=True)
class VerdictMap:
    """``KEY vmap @MAP``: one lookup that decides where the packet goes."""

    key: str
    map_name: str

    def render(self):
        return "%s vmap @%s" % (self.key, self.map_name)


@dataclass(frozen=True)
class SetMark:
    """``meta mark set KEY map @MAP``."""

    key: str
    map_name: str

    def render(self):
        return "meta mark set %s map @%s" % (self.key, self.map_name)


@dataclass(frozen=True)
class Verdict:
    """``accept``, ``drop``, ``return``, ``continue``, or ``jump``/``goto`` a chain."""

    kind: str
    target: Optional[str] = None

    def render(self):
        return self.kind if self.target is None else "%s %s" % (self.kind, self.target)


@dataclass(frozen=True)
class Reject:
    """``reject`` (the default type) or ``reject with TYPE CODE``."""

    with_type: Optional[str] = None
    code: Optional[str] = None

    def render(self):
        return "reject" if self.with_type is None else "reject with %s %s" % (self.with_type, self.code)


@dataclass(frozen=True)
class Nat:
    """``masquerade [to :PORTS]`` or ``snat to ADDRESS[-ADDRESS][:PORTS]``."""

    kind: str
    to: Optional[str] = None

    def render(self):
        return self.kind if self.to is None else "%s to %s" % (self.kind, self.to)


@dataclass(frozen=True)
class Masked:
    """``EXPR & MASK == VALUE`` (or ``!=``): a field compared under a mask."""

    expr: str
    mask: str
    value: str
    negate: bool = False

    def render(self):
        return "%s & %s %s %s" % (self.expr, self.mask, "!=" if self.negate else "==", self.value)


@dataclass(frozen=True)
class TcpFlags:
    """``tcp flags FLAGS / MASK`` in the forms nft 1.0.6 prints: a zero FLAGS as ``! MASK`` (its
    negation as ``MASK``), a one-flag MASK equal to FLAGS as ``& F == F``."""

    flags: Tuple[str, ...]
    mask: Tuple[str, ...]
    negate: bool = False

    def render(self):
        mask = ",".join(self.mask)
        if not self.flags:
            return "tcp flags %s%s" % ("" if self.negate else "! ", mask)
        if self.flags == self.mask and len(self.mask) == 1:
            return "tcp flags & %s %s %s" % (mask, "!=" if self.negate else "==", mask)
        return "tcp flags %s%s / %s" % ("!= " if self.negate else "", ",".join(self.flags), mask)


@dataclass(frozen=True)
class Exists:
    """``EXPR exists`` or ``EXPR missing`` (``tcp option maxseg exists``)."""

    expr: str
    negate: bool = False

    def render(self):
        return "%s %s" % (self.expr, "missing" if self.negate else "exists")


@dataclass(frozen=True)
class CountUpdate:
    """``add @SET { KEY ct count over N }``: counts connections per key in a dynamic set; true
    above N (``over``), or up to N."""

    set_name: str
    key: Tuple[str, ...]
    limit: int
    over: bool = True

    def render(self):
        return "add @%s { %s ct count %s%d }" % (self.set_name, " . ".join(self.key), "over " if self.over else "",
                                                 self.limit)


Statement = Union[Match, Lookup, VerdictMap, SetMark, Verdict, Reject, Nat, Masked, TcpFlags, Exists, CountUpdate]
Rule = Tuple[Statement, ...]


@dataclass(frozen=True)
class Hook:
    """What makes a chain a base chain: ``type filter hook forward priority filter; policy accept;``."""

    hook: str
    priority: str
    type: str = "filter"
    policy: str = "accept"

    def render(self):
        return "type %s hook %s priority %s; policy %s;" % (self.type, self.hook, self.priority, self.policy)


@dataclass(frozen=True)
class Chain:
    name: str
    rules: Tuple[Rule, ...] = ()
    hook: Optional[Hook] = None


@dataclass(frozen=True)
class Set:
    """A named set; ``key`` is a type (``ether_addr . ifname``) or, with ``typeof``, expressions."""

    name: str
    key: Tuple[str, ...]
    elements: Tuple[Tuple[str, ...], ...] = ()
    typeof: bool = False
    size: Optional[int] = None
    flags: Tuple[str, ...] = ()  # ("dynamic",): filled by the packet path (CountUpdate)


@dataclass(frozen=True)
class Map:
    """A named map from ``key`` (types) to ``value`` (``verdict``, ``mark``)."""

    name: str
    key: Tuple[str, ...]
    value: str
    elements: Tuple[Tuple[Tuple[str, ...], str], ...] = ()


@dataclass(frozen=True)
class Table:
    family: str
    name: str
    objects: Tuple[Union[Set, Map, Chain], ...] = ()

    @property
    def key(self):
        return (self.family, self.name)


def render_rule(rule: Rule) -> str:
    return " ".join(statement.render() for statement in rule)


def _elements(items):
    return ["elements = { " + ",\n\t\t\t     ".join(items) + " }"] if items else []


def _block(kind, name, lines):
    return "\n".join(["\t%s %s {" % (kind, name)] + ["\t\t" + line for line in lines] + ["\t}"])


def render_object(obj) -> str:
    if isinstance(obj, Chain):
        head = [obj.hook.render()] if obj.hook else []
        return _block("chain", obj.name, head + [render_rule(rule) for rule in obj.rules])
    if isinstance(obj, Set):
        head = ["%s %s" % ("typeof" if obj.typeof else "type", " . ".join(obj.key))]
        head += (["size %d" % obj.size] if obj.size else []) + (["flags " + ",".join(obj.flags)] if obj.flags else [])
        return _block("set", obj.name, head + _elements([" . ".join(e) for e in obj.elements]))
    type_line = "type %s : %s" % (" . ".join(obj.key), obj.value)
    return _block("map", obj.name, [type_line] + _elements(["%s : %s" % (" . ".join(k), v) for k, v in obj.elements]))


def render_table(table: Table) -> str:
    """The table as ``nft -f`` takes it and ``nft list table`` prints it."""
    return "table %s %s {\n%s\n}\n" % (table.family, table.name, "\n\n".join(render_object(o) for o in table.objects))
