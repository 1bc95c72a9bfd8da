# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn ``ebtables-save`` / ``iptables-save`` / ``ip6tables-save`` text into the part we own.

Everything else in the dump (foreign chains, the admin's rules, built-in policies) stays opaque:
it is read only to find where our jump rules ("hooks") stand inside the built-in chains.
Rule text is normalised (counters dropped, whitespace outside quotes collapsed) so that the
compiler's output, written in the tool's printed form, compares equal to what the tool prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..errors import OwnershipError, SaveParseError
from ..shapes import Scope
from .names import device_of_chain, is_fixed_hook, is_owned_chain
from .ruleset import Chain, Ruleset, TableState, is_builtin_chain
from ..host.runner import TOOLS

_COUNTERS = re.compile(r"^\[\d+:\d+\]$")
_DECL = re.compile(r"^:(\S+)\s+(\S+)(?:\s+\[\d+:\d+\])?\s*$")
_TABLE = re.compile(r"^\*([a-z]+)\s*$")
# counters written inside a rule: iptables-restore's `-c P B`, old ebtables-save's trailing `-c P B`
_INLINE_COUNTER_OPTS = ("-c", "--set-counters")
_JUMP_OPTS = ("-j", "--jump", "-g", "--goto")

# (tool, table, built-in chain) -> absolute 1-based positions of our hooks, parallel to
# TableState.hooks_of(built-in chain)
HookPositions = Dict[Tuple[str, str, str], Tuple[int, ...]]


@dataclass
class _Table:
    name: str
    policies: Dict[str, str] = field(default_factory=dict)  # declaration order kept
    rules: List[Tuple[str, str]] = field(default_factory=list)  # (chain, normalised rule text)
    counters: List[Optional[Tuple[int, int]]] = field(default_factory=list)  # parallel to rules
    closed: bool = False


@dataclass(frozen=True)
class CountedRule:
    """One rule of an owned chain with its counters (from a ``*-save -c`` dump)."""

    rule: str
    packets: int
    bytes: int


def printable(text):
    """``text`` with every byte that was not UTF-8 (decoded by the runner as a surrogate) shown as
    ``\\xNN``: what a diff or a message may carry to Ansible, whose JSON needs valid Unicode."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def tokenize(text, lineno=0):
    """Split a rule on whitespace outside double quotes; quoted tokens keep their raw form."""
    if '"' not in text:
        # outside quotes a backslash is an ordinary character: plain split is the same result,
        # and a dump of thousands of NICs is almost all such lines
        return text.split()
    tokens, cur, in_quote, escaped, started = [], [], False, False, False
    for char in text:
        if escaped:
            cur.append(char)
            escaped = False
        elif char == "\\":
            cur.append(char)
            escaped = in_quote
        elif char == '"':
            cur.append(char)
            in_quote = not in_quote
            started = True
        elif char.isspace() and not in_quote:
            if started:
                tokens.append("".join(cur))
                cur, started = [], False
        else:
            cur.append(char)
            started = True
    if in_quote:
        raise SaveParseError("line %d: unterminated quote in %r" % (lineno, text), line=lineno)
    if started:
        tokens.append("".join(cur))
    return tokens


def _strip_inline_counters(tokens):
    """(tokens without ``-c P B``, (P, B) or None)."""
    if "-c" not in tokens and "--set-counters" not in tokens:
        return tokens, None  # the common case: a dump taken without -c
    out, pair, i = [], None, 0
    while i < len(tokens):
        if tokens[i] in _INLINE_COUNTER_OPTS and _is_counter_pair(tokens[i + 1:i + 3]):
            pair = (int(tokens[i + 1]), int(tokens[i + 2]))
            i += 3
            continue
        out.append(tokens[i])
        i += 1
    return out, pair


def _is_counter_pair(pair):
    return len(pair) == 2 and all(p.isdigit() for p in pair)


def jump_target(rule):
    """The chain a rule jumps or goes to (``-j``/``-g``), or None."""
    tokens = tokenize(rule)
    for opt, value in zip(tokens, tokens[1:]):
        if opt in _JUMP_OPTS:
            return value
    return None


def _parse_rule(line, lineno):
    """(chain, normalised rule, (packets, bytes) or None): ``-c`` dumps put ``[P:B]`` first."""
    tokens = tokenize(line, lineno)
    counters = None
    if tokens and tokens[0].startswith("[") and _COUNTERS.match(tokens[0]):
        counters = tuple(int(n) for n in tokens[0][1:-1].split(":"))
        tokens = tokens[1:]
    if len(tokens) < 2 or tokens[0] not in ("-A", "--append"):
        raise SaveParseError("line %d: expected '-A CHAIN ...', got %r" % (lineno, line), line=lineno)
    rest, inline = _strip_inline_counters(tokens[2:])
    return tokens[1], " ".join(rest), counters or inline


def _garbage(tool, lineno, line, why):
    return SaveParseError(
        "%s output, line %d: %s: %r (is this the output of the right *-save tool?)" % (TOOLS[tool][0], lineno, why, line),
        line=lineno,
        text=line,
    )


def _parse_tables(tool, text):
    """Every table of a dump, in order.  ebtables-save writes no COMMIT; iptables-save does."""
    tables: List[_Table] = []
    cur = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _TABLE.match(line) if line.startswith("*") else None
        if match:
            if cur is not None and not cur.closed and tool != "eb":
                raise _garbage(tool, lineno, line, "table %r has no COMMIT" % cur.name)
            if any(t.name == match.group(1) for t in tables):
                raise _garbage(tool, lineno, line, "table printed twice")
            cur = _Table(match.group(1))
            tables.append(cur)
            continue
        if cur is None or cur.closed:
            raise _garbage(tool, lineno, line, "content outside a '*table' section")
        if line == "COMMIT":
            cur.closed = True
        elif line.startswith(":"):
            decl = _DECL.match(line)
            if not decl:
                raise _garbage(tool, lineno, line, "bad chain declaration")
            cur.policies[decl.group(1)] = decl.group(2)
        else:
            chain, rule, counters = _parse_rule(line, lineno)
            # built-in chains always exist; render_table() leaves their declarations out
            if chain not in cur.policies and not is_builtin_chain(tool, cur.name, chain):
                raise _garbage(tool, lineno, line, "rule in undeclared chain %r" % chain)
            cur.rules.append((chain, rule))
            cur.counters.append(counters)
    if cur is not None and not cur.closed and tool != "eb":
        raise SaveParseError("%s output ends inside table %r (truncated?)" % (TOOLS[tool][0], cur.name), table=cur.name)
    return tables


def _ours(tool, table, chain, scope):
    if is_builtin_chain(tool, table, chain) or not is_owned_chain(tool, table, chain, scope.manage_networks):
        return False
    device = device_of_chain(chain)
    if device in scope.foreign_devices:
        return False
    if (tool, table, chain) in scope.claims:
        if scope.claims_checked:
            return True
        raise OwnershipError(
            "%s chain %s (table %s) already exists, but this collection did not write it (it is not in the "
            "store's ledger), and the binding of %s needs that name: rename or remove that chain and the rules "
            "that jump to it, or bind a device with another name" % (TOOLS[tool][0].split("-")[0], chain, table,
                                                                     device),
            chain=chain, table=table, tool=tool, device=device)
    if device is not None and device in scope.adopted_devices:
        return True
    if scope.ledger is not None:
        return scope.ledger.has_chain(tool, table, chain)
    if scope.implied_devices is not None and device is not None:
        return device in scope.implied_devices
    return True


def _our_fixed_hook(tool, table, chain, rule, scope):
    if not is_fixed_hook(tool, table, chain, rule):
        return False
    return scope.ledger is None or scope.ledger.has_hook(tool, table, chain, rule)


def _handed_over(tool, parsed, owned, scope):
    """Stale owned chains a foreign chain jumps to, and the stale chains they jump to in turn."""
    if scope.wanted is None:
        return set()
    stale = {c for c in owned if (tool, parsed.name, c) not in scope.wanted}
    if not stale:
        return set()
    owned_set, targets = set(owned), {}
    for chain, rule in parsed.rules:
        target = jump_target(rule)
        if target in stale:
            targets.setdefault(chain, set()).add(target)
    handed = set()
    for chain, jumped in targets.items():
        if chain not in owned_set and not is_builtin_chain(tool, parsed.name, chain):
            handed |= jumped
    frontier = set(handed)
    while frontier:
        frontier = {t for c in frontier for t in targets.get(c, ())} - handed
        handed |= frontier
    return handed


def _owned_state(tool, parsed, scope, positions):
    owned = [c for c in parsed.policies if _ours(tool, parsed.name, c, scope)]
    handed = _handed_over(tool, parsed, owned, scope)
    owned = [c for c in owned if c not in handed]
    rules = {c: [] for c in owned}
    hooks, seen = [], {}
    for chain, rule in parsed.rules:
        if chain in rules:
            rules[chain].append(rule)
        elif is_builtin_chain(tool, parsed.name, chain):
            seen[chain] = seen.get(chain, 0) + 1
            if jump_target(rule) in rules or _our_fixed_hook(tool, parsed.name, chain, rule, scope):
                hooks.append((chain, rule))
                key = (tool, parsed.name, chain)
                positions[key] = positions.get(key, ()) + (seen[chain],)
    chains = {
        c: Chain(c, tuple(rules[c]), parsed.policies[c] if tool == "eb" else "-") for c in owned
    }
    return TableState(tool, parsed.name, chains, tuple(hooks))


def parse_live(tool, text, scope=Scope()):
    """(owned Ruleset, HookPositions) of one tool's dump.  Tables without owned content are left out."""
    if tool not in ("eb", "ip4", "ip6"):
        raise ValueError("unknown tool %r" % tool)
    ruleset: Ruleset = {}
    positions: HookPositions = {}
    for parsed in _parse_tables(tool, text):
        state = _owned_state(tool, parsed, scope, positions)
        if not state.is_empty():
            ruleset[(tool, parsed.name)] = state
    return ruleset, positions


def parse_save(tool, text, scope=Scope()):
    """The owned part of one tool's dump as a Ruleset keyed by (tool, table)."""
    return parse_live(tool, text, scope)[0]


def builtin_policies(tool, text):
    """{(table, chain): policy} of every built-in chain in the dump."""
    return {
        (t.name, chain): policy
        for t in _parse_tables(tool, text)
        for chain, policy in t.policies.items()
        if is_builtin_chain(tool, t.name, chain)
    }


def parse_counters(tool, text, scope=Scope()):
    """{(table, chain): (CountedRule, ...)} of every owned chain in a ``*-save -c`` dump.

    Same ownership as parse_save; a dump taken without ``-c`` is refused, since zeros made up
    for it would read as "no traffic".
    """
    counted = {}
    for parsed in _parse_tables(tool, text):
        owned = {c: [] for c in parsed.policies if _ours(tool, parsed.name, c, scope)}
        for (chain, rule), pair in zip(parsed.rules, parsed.counters):
            if chain not in owned:
                continue
            if pair is None:
                raise SaveParseError("%s output has no counters for %r in chain %s: read it with %s -c"
                                     % (TOOLS[tool][0], rule, chain, TOOLS[tool][0]), chain=chain)
            owned[chain].append(CountedRule(rule, pair[0], pair[1]))
        counted.update({(parsed.name, c): tuple(rules) for c, rules in owned.items()})
    return counted
