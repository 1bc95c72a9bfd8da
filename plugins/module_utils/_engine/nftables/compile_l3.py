# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Layer 3/4 nwfilter rules (tcp, udp, icmp, all, ... and their -ipv6 forms) on nftables.

The bridge family has no conntrack on many kernels (this one included) and an ``inet`` table
sees the bridge, not the port.  So the port travels in the packet mark: table ``bridge
hfw_nwfilter_mark`` sets ``meta mark`` from the input port at bridge prerouting (IN_MARK + n)
and from the output port at bridge forward (OUT_MARK + n), both before br_netfilter hands the
packet to the IP hooks, where table ``inet hfw_nwfilter`` dispatches on the mark through
verdict maps to the chains libvirt calls FI, FO and HI (same copies, directions, default state
matches and verdicts as _compile_xt):

- FI (from the guest) at inet prerouting, where the mark still names the input port; packets
  for the host itself (``fib daddr type local``) skip it and meet HI at input, as in xtables.
  Broadcast/multicast from the guest meets FI here once (xtables: once per bridged copy).
- FO (to the guest, bridged only) at inet forward, where the mark names the output port.
- HI (to the host) at inet input.
FI's accept is ``return`` and FO's is ``accept``, as in xtables.  An accept in nftables ends only
its own base chain: another table's drop still drops (unlike libvirt-in-post's ACCEPT).
Marks of packets from filtered ports are overwritten (values 0x4846xxxx / 0x4847xxxx).

Sharing: a positive host address in a rule (typically a NIC's ``$IP``) is matched through a set
keyed by ``mark . address`` (``meta mark . ip saddr @set``), so NICs whose rules differ only in
such addresses share one chain and add set elements; consecutive copies of one rule for several
values (an IP list) become one lookup.  An address every NIC of the chain has in common is written
literally.  NICs whose rules differ otherwise (a port, a network, a negated address) get a chain
per variant, and ``notes`` says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from . import matches as M
from .tables import L3, MARK
from .writer import Chain, CountUpdate, Hook, Lookup, Map, Match, Reject, SetMark, Set, Table, Verdict, VerdictMap, \
    quoted, render_rule
from ..errors import ResolveError
from ..language import values as V
from ..language.copies import RuleView, family_of, l3_copies
from ..language.model import Instantiation

IN_MARK, OUT_MARK = 0x48460000, 0x48470000
# kind -> (dispatch map, mark base, base chain, hook, priority, extra base-chain rule)
KINDS = (("FI", "from_guest", IN_MARK, "prerouting", "prerouting", "mangle",
          (Match("fib daddr type", "local"), Verdict("return"))),
         ("FO", "to_guest", OUT_MARK, "forward", "forward", "filter", None),
         ("HI", "to_host", IN_MARK, "input", "input", "filter", None))
_PROTO = {"tcp": "tcp", "udp": "udp", "udplite": "udplite", "sctp": "sctp", "esp": "esp", "ah": "ah",
          "icmp": "icmp", "icmpv6": "ipv6-icmp", "igmp": "igmp", "all": None}
# ipset names a set of the separate ipset facility, which nftables cannot look into
_NO_NFT_FORM = {"ipset": "the 'ipset' attribute (it names a set of the kernel's ipset facility, which nftables "
                         "rules cannot use; define the addresses in the filter instead)"}
_COUNT = "{COUNT}"
_REJECT = {"ip4": Reject("icmp", "port-unreachable"), "ip6": Reject("icmpv6", "port-unreachable")}
_CT_ORDER = ("INVALID", "ESTABLISHED", "RELATED", "NEW", "UNTRACKED")


def _unsupported(rule, what):
    return ResolveError(
        "filter '%s': there is no nftables form for %s: use backend 'xtables' for NICs whose filters use it (or "
        "backend_fallback: true)" % (rule.inst.filter_name, what), filter=rule.inst.filter_name, backend="nftables")


def _match(rule, attr, expr, value):
    return Match(expr, value, rule.negated(attr))


@dataclass(frozen=True)
class _Addr:
    """A positive host address, matched through a set keyed by ``mark . address``."""

    expr: str  # ip saddr, ip6 daddr, ...
    kind: str  # the set's element type
    value: str


def _addrs(rule, d_in, fam, version):
    out = {}
    for side, other in (("src", "dst"), ("dst", "src")):
        attr = side + "ipaddr"
        if rule.has(attr):
            net = V.ip_network(rule.val(attr), rule.val(side + "ipmask"), version)
            key = other if d_in else side
            expr = "%s %saddr" % (fam, key[0])
            host = net.prefixlen == net.max_prefixlen
            if host and not rule.negated(attr):
                out[key] = _Addr(expr, "ipv%d_addr" % version, str(net.network_address))
                continue
            text = V.address_text(net.network_address) + ("" if host else "/%d" % net.prefixlen)
            out[key] = _match(rule, attr, expr, text)
    return [out[k] for k in ("src", "dst") if k in out]


def _proto_opts(rule, base, d_in):
    if base in ("icmp", "icmpv6"):
        if not rule.has("type"):
            return [Match("meta l4proto", _PROTO[base])]
        return M.icmp(4 if base == "icmp" else 6, rule.val("type"), rule.val("code"), rule.negated("type"),
                      rule.negated("code"))
    ports = {}
    for side, other in (("src", "dst"), ("dst", "src")):
        if rule.has(side + "portstart"):
            key = other if d_in else side
            first, last = V.port_bounds(rule.val(side + "portstart"), rule.val(side + "portend"))
            text = str(first) if first == last else "%d-%d" % (first, last)
            ports[key] = _match(rule, side + "portstart", "%s %sport" % (base, key[0]), text)
    out = [ports[k] for k in ("src", "dst") if k in ports]
    if base == "tcp" and rule.has("flags"):
        try:
            out.append(M.tcp_flags(rule.val("flags"), rule.negated("flags")))
        except M.NoNftForm as exc:
            raise _unsupported(rule, str(exc)) from None
    if base == "tcp" and rule.has("option"):
        out.append(M.tcp_option(rule.val("option"), rule.negated("option")))
    if out:
        return out
    return [Match("meta l4proto", _PROTO[base])] if _PROTO[base] else []


def _ranges(rule, d_in, fam):
    """xtables ``-m iprange``: only where the rule has no address on that side (as libvirt)."""
    out = {}
    for side, other in (("src", "dst"), ("dst", "src")):
        if rule.has(side + "ipaddr") or not rule.has(side + "ipfrom"):
            continue
        key = other if d_in else side
        end = rule.val(side + "ipto") or rule.val(side + "ipfrom")
        out[key] = M.ip_range("%s %saddr" % (fam, key[0]), rule.val(side + "ipfrom"), end,
                              rule.negated(side + "ipfrom"))
    return [out[k] for k in ("src", "dst") if k in out]


def _state(state, def_match, rule, d_in, has_icmp_type):
    out = [Match("ct state", ",".join(s.lower() for s in _CT_ORDER if s in state.split(",")))]
    if def_match and not has_icmp_type and rule.inst.direction != "inout":
        out.append(Match("ct direction", "reply" if d_in else "original"))
    return out


def _rule_items(rule, tool, d_in, state, def_match, accept, may_skip_icmp):
    """One chain's copy of a rule (statements and _Addr slots), or None when libvirt skips it."""
    base = rule.protocol[:-5] if rule.protocol.endswith("-ipv6") else rule.protocol
    if rule.has("connlimit-above") and d_in:
        return None  # libvirt limits connections only where they are initiated
    if base in ("icmp", "icmpv6") and rule.has("type") and may_skip_icmp:
        return None
    for attr, what in _NO_NFT_FORM.items():
        if rule.has(attr):
            raise _unsupported(rule, what)
    version, fam = (6, "ip6") if tool == "ip6" else (4, "ip")
    addrs = _addrs(rule, d_in, fam, version)
    extra = _ranges(rule, d_in, fam)
    if rule.has("dscp"):
        extra.append(M.dscp(fam, rule.val("dscp"), rule.negated("dscp")))
    proto = _proto_opts(rule, base, d_in)
    mac = []
    if rule.has("srcmacaddr"):
        if d_in and not (addrs or extra or _PROTO[base] or proto):
            return None  # the source MAC was the rule's only match and cannot be seen this way (as xtables)
        if not d_in:
            mac = [_match(rule, "srcmacaddr", "ether saddr", rule.val("srcmacaddr").lower())]
    nfproto = Match("meta nfproto", "ipv6" if version == 6 else "ipv4")
    family = addrs + extra
    # an icmp type and a connlimit's address key imply the family: nft prints no meta nfproto then
    implied = rule.has("connlimit-above") or (proto and getattr(proto[0], "expr", "") in ("icmp type", "icmpv6 type"))
    if not family and not implied:
        family = [nfproto]
    # where nft prints the source MAC: first, except before a connlimit's count (after the protocol)
    tokens = family + proto + mac if rule.has("connlimit-above") else mac + family + proto
    action = rule.inst.action
    if rule.has("connlimit-above"):
        # counted in a dynamic set of the chain, named with the chain (see _emit)
        tokens.append(M.connlimit(_COUNT, version, rule.val("connlimit-above"), rule.negated("connlimit-above")))
    elif state and not (def_match and action != "accept"):
        tokens += _state(state, def_match, rule, d_in, base in ("icmp", "icmpv6") and rule.has("type"))
    verdict = {"accept": Verdict(accept), "drop": Verdict("drop"), "reject": _REJECT[tool],
               "return": Verdict("return"), "continue": None}[action]
    if action == "reject" and tokens == [nfproto]:
        tokens = []  # the reject type implies the family; nft prints it without the dependency
    return tuple(t for t in tokens + [verdict] if t is not None)


def _nic_chains(rules):
    """{kind: [rule items: text and _Addr]} of one NIC (kinds without rules are left out)."""
    out: Dict[str, List[tuple]] = {}
    for rule in rules:
        if rule.is_l2:
            continue
        tool = family_of(rule.protocol)
        for copy in l3_copies(rule):
            items = _rule_items(rule, tool, copy.reply, copy.states, copy.default_match, copy.accept,
                                copy.skips_icmp_type)
            if items is not None:
                out.setdefault(copy.kind, []).append(items)
    return out


def _digest(lines):
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:10]


def _template(items):
    return tuple((i.expr, i.kind) if isinstance(i, _Addr) else i for i in items)


def _merge(lines):
    """[(template, [address tuples])]: consecutive copies of one rule that differ only in their
    addresses (one per value of an IP list) become one set lookup with several elements."""
    out: List[Tuple[tuple, list]] = []
    for items in lines:
        template, values = _template(items), tuple(i.value for i in items if isinstance(i, _Addr))
        if values and out and out[-1][0] == template:
            out[-1][1].append(values)
        else:
            out.append((template, [values]))
    return out


def _literals(devs, values):
    """Per address slot: the value every NIC has there (written literally), else None.

    A single NIC keeps its addresses in sets, so the next one joins without a rewrite."""
    seen = {tuple(values[dev]) for dev in devs}
    if len(devs) < 2 or any(len(tuples) != 1 for tuples in seen):
        return None
    return tuple(here.pop() if len(here) == 1 else None for here in map(set, zip(*[t[0] for t in seen])))


def _render(template, literal, set_name):
    """(rule, key types of its set or None): literal addresses written out, the others looked up
    together as one ``meta mark . ...`` set."""
    slots = [item for item in template if isinstance(item, tuple)]
    literal = literal or (None,) * len(slots)
    free = [slot for slot, value in zip(slots, literal) if value is None]
    tokens = []
    for item in template:
        if not isinstance(item, tuple):
            tokens.append(item)
        elif literal[slots.index(item)] is not None:
            tokens.append(Match(item[0], literal[slots.index(item)]))
        elif item is free[0]:
            tokens.append(Lookup(("meta mark",) + tuple(expr for expr, _kind in free), set_name))
    return tuple(tokens), (("mark",) + tuple(kind for _expr, kind in free)) if free else None


def _emit(kind, mark, devs, merged, number):
    """(chain name, rules, {set name: (key types, elements)}) for NICs sharing one template."""
    rules, sets = [], []
    for index, (template, _values) in enumerate(merged[devs[0]]):
        values = {dev: merged[dev][index][1] for dev in devs}
        literal = _literals(devs, values)
        rule, key = _render(template, literal, "{NAME}-s%d" % index)
        for statement in rule:
            if isinstance(statement, CountUpdate):
                version = 4 if statement.key[1].startswith("ip ") else 6
                sets.append(("{NAME}-c%d" % index, M.connlimit_set("{NAME}-c%d" % index, version), ()))
        rule = tuple(dataclasses.replace(st, set_name="{NAME}-c%d" % index) if isinstance(st, CountUpdate) else st
                     for st in rule)
        rules.append(rule)
        if key:
            keep = [pos for pos, value in enumerate(literal or [None] * len(values[devs[0]][0])) if value is None]
            elements = sorted({("0x%08x" % (mark + number[dev]),) + tuple(tup[pos] for pos in keep)
                               for dev in devs for tup in values[dev]}, key=" . ".join)
            sets.append(("{NAME}-s%d" % index, key, elements))
    # the digest covers the rules' text and the sets' types: NICs with equal chains share a name
    name = "%s-%s" % (kind, _digest([render_rule(r) for r in rules]
                                    + [repr((n, "type " + " . ".join(k.key if isinstance(k, Set) else k)))
                                       for n, k, _e in sets]))
    return (name, [_named(r, name) for r in rules], {n.replace("{NAME}", name): (k, e) for n, k, e in sets})


def _named(rule, name):
    return tuple(dataclasses.replace(st, set_name=st.set_name.replace("{NAME}", name))
                 if isinstance(st, (Lookup, CountUpdate)) else st for st in rule)


def _kind_chains(kind, mark, ports, per_nic, number):
    """Chains of one kind, the dispatch elements and a note when NICs need several variants."""
    merged = {dev: _merge(per_nic[dev][kind]) for dev in ports if per_nic[dev].get(kind)}
    groups: Dict[tuple, List[str]] = {}
    for dev in sorted(merged):
        groups.setdefault(tuple(t for t, _v in merged[dev]), []).append(dev)
    chains, dispatch = [], []
    for devs in sorted(groups.values()):
        name, rules, sets = _emit(kind, mark, devs, merged, number)
        chains.append((name, rules, sets))
        dispatch += [(("0x%08x" % (mark + number[dev]),), "jump " + name) for dev in devs]
    notes = []
    if len(groups) > 1:
        notes.append("%s chain: %d variants for %d NICs (NICs whose layer 3/4 rules differ in more than "
                     "host addresses get their own chain): %s" % (
                         kind, len(groups), len(merged), "; ".join(", ".join(d) for d in sorted(groups.values()))))
    return chains, sorted(dispatch, key=lambda e: int(e[0][0], 16)), notes


def compile_nics(instantiations: Sequence[Instantiation]) -> Tuple[Dict[Tuple[str, str], Table], List[str], int]:
    """({(family, table): Table}, notes, rule count) for the NICs' layer 3/4 rules."""
    nics = sorted(instantiations, key=lambda inst: inst.portdev)
    per_nic = {inst.portdev: _nic_chains([RuleView(r) for r in inst.rules]) for inst in nics}
    ports = [dev for dev in sorted(per_nic) if per_nic[dev]]
    if not ports:
        return {}, [], 0
    number = {dev: index + 1 for index, dev in enumerate(ports)}
    maps, chains, sets, bases, notes = [], {}, {}, [], []
    for kind, map_name, mark, base, hook, priority, extra in KINDS:
        kind_chains, elements, kind_notes = _kind_chains(kind, mark, ports, per_nic, number)
        notes += kind_notes
        for name, rules, chain_sets in kind_chains:
            chains[name] = rules
            sets.update(chain_sets)
        maps.append(Map(map_name, ("mark",), "verdict", tuple(elements)))
        bases.append(Chain(base, ((extra,) if extra else ()) + ((VerdictMap("meta mark", map_name),),),
                           Hook(hook, priority)))
    count = sum(len(lines) for lines in chains.values()) + 4
    # a connlimit's counting set comes declared (dynamic, no elements); address sets by key types
    declared = [dataclasses.replace(key, name=name) if isinstance(key, Set) else Set(name, key, tuple(elements))
                for name, (key, elements) in sorted(sets.items())]
    inet = [Chain(name, tuple(rules)) for name, rules in sorted(chains.items())]
    tables = {L3: Table(L3[0], L3[1], tuple(maps + declared + inet + bases)),
              MARK: _mark_table(ports, number)}
    notes.insert(0, "nftables: %d NICs with layer 3/4 rules share %d chains in table inet hfw_nwfilter (ports "
                    "are told apart by the packet mark set in table bridge hfw_nwfilter_mark; their host "
                    "addresses live in sets keyed by mark)" % (len(ports), len(chains)))
    return tables, notes, count


def _mark_table(ports, number):
    ins = tuple(((quoted(dev),), "0x%08x" % (IN_MARK + number[dev])) for dev in ports)
    outs = tuple(((quoted(dev),), "0x%08x" % (OUT_MARK + number[dev])) for dev in ports)
    return Table(MARK[0], MARK[1], (
        Map("in_port", ("ifname",), "mark", ins), Map("out_port", ("ifname",), "mark", outs),
        Chain("prerouting", ((SetMark("iifname", "in_port"),),), Hook("prerouting", "filter")),
        Chain("forward", ((SetMark("oifname", "out_port"),),), Hook("forward", "filter"))))
