# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compile resolved NIC filters into ONE nftables bridge table whose chains are shared by NICs.

libvirt copies every rule for every NIC.  Here each chain is emitted once per distinct *template*:
a rule whose value differs between NICs (their MAC, their IP list) matches through a set keyed by
``value . interface`` (``ether saddr . iifname @set``), so every NIC whose rules have the same
shape shares one chain and only adds set elements.  Packets reach the chain through verdict maps
keyed by interface (``iifname vmap @from_guest``), one O(1) lookup instead of a list of jumps.

Semantics follow the ebtables chains of _compile_xt (same order, same verdicts): frames from the
guest meet the ``out``/``inout`` rules at bridge prerouting, frames to the guest the ``in``/
``inout`` rules at bridge postrouting, and a user chain that runs out of rules ACCEPTs, as
libvirt's ebtables chains (policy ACCEPT) do.

Sharing decisions, per chain suffix: NICs whose rules differ only in set-able values share a
chain; a value every NIC of that chain has in common is written literally.  A chain whose NICs
differ otherwise (a port, a masked address) is emitted per group of identical NICs, and its
callers dispatch to it by interface; ``notes`` lists every such fallback.

Every rule is written in the form ``nft list`` prints back (dependencies such as ``ether type ip``
before ``ip saddr`` are left out, ether fields are written in header order, because nft merges
adjacent header matches and prints them by offset).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Dict, List, Optional, Sequence, Tuple

from . import compile_l3 as _compile_nft_l3
from . import matches as M
from .tables import L2
from .writer import Chain, Hook, Lookup, Map, Match, Set, Table, Verdict, VerdictMap, quoted, render_rule
from ..errors import ResolveError
from ..language import values as V
from ..language.copies import L2_PROTOCOLS
from ..language.devices import TAP_PREFIX, check_device
from ..language.model import Instantiation

# direction -> (map, interface key, base chain, hook, priority, rule directions)
DIRECTIONS = (
    ("out", "from_guest", "iifname", "pre", "prerouting", "dstnat", ("out", "inout")),
    ("in", "to_guest", "oifname", "post", "postrouting", "srcnat", ("in", "inout")),
)
_SELECTOR = (("ipv4", (Match("ether type", "ip"),)), ("ipv6", (Match("ether type", "ip6"),)),
             ("arp", (Match("ether type", "arp"),)), ("rarp", (Match("ether type", "0x8035"),)),
             ("vlan", (Match("ether type", "8021q"),)), ("stp", (Match("ether daddr", M.STP_GROUP),)), ("mac", ()))
_VERDICT = {"accept": "accept", "drop": "drop", "reject": "drop", "return": "return", "continue": "continue"}
_ETHER_NAMES = {0x0800: "ip", 0x0806: "arp", 0x86DD: "ip6", 0x8100: "8021q", 0x88A8: "8021ad"}
_ARP_OPS = {1: "request", 2: "reply", 3: "rrequest", 4: "rreply", 8: "inrequest", 9: "inreply", 10: "nak"}
# ARP header fields by (kind, side): (bit offset, bits) after the link header, for RARP (see Slot)
_ARP_RAW = {("ip", "src"): (112, 32), ("ip", "dst"): (192, 32), ("mac", "src"): (64, 48),
            ("mac", "dst"): (144, 48)}


@dataclass(frozen=True)
class Slot:
    """A value matched through a set keyed by ``value . interface``.

    ``expr``: the packet expression; ``kind``: the set's element type (``ether_addr`` ...) or
    ``raw`` for a raw header field (RARP: nft's arp expressions always add an ``ether type arp``
    dependency, so RARP fields are raw payloads, declared with ``typeof``).
    """

    expr: str
    kind: str
    value: str
    negate: bool = False

    def shape(self):
        return (self.expr, self.kind, self.negate)


@dataclass
class NftDesired:
    """Desired nft tables by (family, name), plus notes on how rules were shared."""

    tables: Dict[Tuple[str, str], Table] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    rule_count: int = 0


def _unsupported(rule, what):
    return ResolveError(
        "filter '%s': there is no nftables form for %s: use backend 'xtables' for NICs whose filters use it "
        "(or backend_fallback: true)" % (rule.filter_name, what),
        filter=rule.filter_name, backend="nftables",
    )


def _attrs(rule):
    out = {}
    for match in rule.matches:
        for key, value in match.attrs:
            out[key] = (value, match.negate)
    return out


class _Parts:
    """Builds one rule: literal statements and slots, in the order nft prints them."""

    def __init__(self, rule, attrs, reverse):
        self.rule, self.attrs, self.reverse = rule, attrs, reverse
        self.items: List[object] = []

    def has(self, name):
        return name in self.attrs

    def val(self, name):
        return self.attrs[name][0]

    def neg(self, name):
        return self.attrs[name][1]

    def side(self, side):
        """Attribute side -> packet side (an inout rule's reversed copy swaps them)."""
        return {"src": "dst", "dst": "src"}[side] if self.reverse else side

    def add(self, item):
        self.items.append(item)


@lru_cache(maxsize=16384)
def _host_or_net(addr, mask, version):
    """(address or network text, whether it is one host); pure, so memoised: a NIC's address
    reaches it from several of its rules (ARP and IP, both directions)."""
    bits = 32 if version == 4 else 128
    net = ipaddress.ip_network("%s/%s" % (addr, mask if mask is not None else bits), strict=False)
    if net.prefixlen == bits:
        return str(net.network_address), True
    return str(net), False


def _ether(parts, rule):
    """Ethernet addresses, destination first (header order)."""
    found = {}
    for side in ("src", "dst"):
        attr = side + "macaddr"
        if not parts.has(attr):
            continue
        mask = parts.val(side + "macmask") if parts.has(side + "macmask") else None
        if V.masked_mac(parts.val(attr), mask)[1] is None:
            mask = None
        found[parts.side(side)] = (attr, parts.val(attr).lower(), mask)
    for side, field_name in (("dst", "daddr"), ("src", "saddr")):
        if side in found:
            attr, value, mask = found[side]
            if mask is None:
                parts.add(Slot("ether " + field_name, "ether_addr", value, parts.neg(attr)))
            else:  # a masked address is written out: NICs differing in it get their own chain
                parts.add(M.masked_mac("ether " + field_name, value, mask, parts.neg(attr)))


def _build_mac(parts, rule):
    _ether(parts, rule)
    if parts.has("protocolid"):
        num = V.number(parts.val("protocolid"))
        parts.add(Match("ether type", _ETHER_NAMES.get(num, "0x%04x" % num), parts.neg("protocolid")))


def _build_vlan(parts, rule):
    _ether(parts, rule)
    if not (parts.has("vlanid") or parts.has("encap-protocol")):
        parts.add(Match("ether type", "8021q"))
    if parts.has("vlanid"):
        parts.add(Match("vlan id", str(V.number(parts.val("vlanid"))), parts.neg("vlanid")))
    if parts.has("encap-protocol"):
        num = V.number(parts.val("encap-protocol"))
        parts.add(Match("vlan type", _ETHER_NAMES.get(num, "0x%04x" % num), parts.neg("encap-protocol")))


def _build_arp(parts, rule):
    _ether(parts, rule)
    rarp = rule.protocol == "rarp"
    fields = [a for a in ("hwtype", "protocoltype", "opcode", "arpsrcipaddr", "arpdstipaddr", "arpsrcmacaddr",
                          "arpdstmacaddr") if parts.has(a)]
    if rarp or not fields:
        parts.add(Match("ether type", "0x8035" if rarp else "arp"))
    if parts.has("hwtype"):
        parts.add(M.arp_htype(parts.val("hwtype"), parts.neg("hwtype"), rarp))
    if parts.has("protocoltype"):
        parts.add(M.arp_ptype(parts.val("protocoltype"), parts.neg("protocoltype"), rarp))
    if parts.has("opcode"):
        num = V.number(parts.val("opcode"))
        if rarp:
            parts.add(Slot("@nh,48,16", "raw", "0x%x" % num, parts.neg("opcode")))
        else:
            parts.add(Match("arp operation", _ARP_OPS.get(num, str(num)), parts.neg("opcode")))
    for kind in ("ip", "mac"):
        for side in ("src", "dst"):
            attr = "arp%s%saddr" % (side, kind)
            if parts.has(attr):
                _arp_field(parts, rule, rarp, kind, parts.side(side), attr)
    if parts.has("gratuitous") and parts.val("gratuitous") == "true":
        _gratuitous(parts, rule, rarp)


def _gratuitous(parts, rule, rarp):
    """ebtables ``--arp-gratuitous`` compares the sender and the target IP address; nft cannot
    compare two packet fields, but when the rule pins one of them to a host address, matching
    the other against the same address says the same."""
    pinned = [(attr, side) for attr, side in (("arpsrcipaddr", "dst"), ("arpdstipaddr", "src"))
              if parts.has(attr) and not parts.neg(attr)
              and _host_or_net(parts.val(attr), _mask_of(parts, attr), 4)[1]]
    if not pinned or parts.neg("gratuitous") or rarp:
        raise _unsupported(rule, "ARP 'gratuitous' without a positive arpsrcipaddr or arpdstipaddr host address "
                                 "(nft 1.0.6 cannot compare the sender and target address of one packet; add "
                                 "arpsrcipaddr='$IP' or split the rule)")
    if len(pinned) == 2:
        if parts.val("arpsrcipaddr") != parts.val("arpdstipaddr"):
            raise _unsupported(rule, "ARP 'gratuitous' with different arpsrcipaddr and arpdstipaddr (it never matches)")
        return
    attr, other = pinned[0]
    value = _host_or_net(parts.val(attr), None, 4)[0]
    parts.add(Slot("arp %saddr ip" % parts.side(other)[0], "ipv4_addr", value))


def _mask_of(parts, attr):
    name = attr.replace("addr", "mask")
    return parts.val(name) if parts.has(name) else None


def _arp_field(parts, rule, rarp, kind, side, attr):
    value = parts.val(attr)
    if kind == "ip":
        mask = parts.val(attr.replace("addr", "mask")) if parts.has(attr.replace("addr", "mask")) else None
        value, host = _host_or_net(value, mask, 4)
        if not host:
            if rarp:
                raise _unsupported(rule, "a masked RARP address")
            parts.add(Match("arp %saddr ip" % side[0], value, parts.neg(attr)))
            return
    else:
        value = value.lower()
    if rarp:
        offset, bits = _ARP_RAW[(kind, side)]
        raw = int(ipaddress.ip_address(value)) if kind == "ip" else int(value.replace(":", ""), 16)
        parts.add(Slot("@nh,%d,%d" % (offset, bits), "raw", "0x%x" % raw, parts.neg(attr)))
    else:
        parts.add(Slot("arp %saddr %s" % (side[0], "ip" if kind == "ip" else "ether"),
                       "ipv4_addr" if kind == "ip" else "ether_addr", value, parts.neg(attr)))


def _build_ip(parts, rule, version):
    _ether(parts, rule)
    family = "ip" if version == 4 else "ip6"
    addrs = []
    for side in ("src", "dst"):
        attr = side + "ipaddr"
        if parts.has(attr):
            mask = parts.val(side + "ipmask") if parts.has(side + "ipmask") else None
            value, host = _host_or_net(parts.val(attr), mask, version)
            addrs.append((parts.side(side), attr, value, host))
    ports = [(parts.side(side), side) for side in ("src", "dst") if parts.has(side + "portstart")]
    proto = V.ip_protocol(parts.val("protocol")) if parts.has("protocol") else None
    icmp6 = _icmpv6_l2(parts, rule) if version == 6 else []
    # nft leaves out the ether type when another IP match implies it (the TOS match is raw: it does not)
    if not addrs and not (version == 4 and proto) and not icmp6:
        parts.add(Match("ether type", family))
    if version == 4 and parts.has("dscp"):
        parts.add(M.tos(parts.val("dscp"), parts.neg("dscp")))
    # header (offset) order: nft merges adjacent matches and prints them that way
    for side, attr, value, host in sorted(addrs, key=lambda item: item[0] != "src"):
        expr = "%s %saddr" % (family, "s" if side == "src" else "d")
        if host:
            parts.add(Slot(expr, "ipv4_addr" if version == 4 else "ipv6_addr", value, parts.neg(attr)))
        else:
            parts.add(Match(expr, value, parts.neg(attr)))
    if proto and (version == 4 or not ports) and not (icmp6 and not parts.neg("protocol")):
        key = "ip protocol" if version == 4 else "meta l4proto"
        parts.add(Match(key, proto, parts.neg("protocol")))
    for statement in icmp6:  # an icmpv6 type implies the protocol: nft prints no meta l4proto then
        parts.add(statement)
    for side, attr_side in sorted(ports, key=lambda item: item[0] != "src"):
        if proto not in ("tcp", "udp", "sctp", "udplite"):
            raise _unsupported(rule, "ports without protocol tcp/udp/sctp")
        first, last = V.port_bounds(parts.val(attr_side + "portstart"),
                                    parts.val(attr_side + "portend") if parts.has(attr_side + "portend") else None)
        parts.add(Match("%s %s" % (proto, "sport" if side == "src" else "dport"),
                        str(first) if first == last else "%d-%d" % (first, last), parts.neg(attr_side + "portstart")))


def _icmpv6_l2(parts, rule):
    names = ("type", "typeend", "code", "codeend")
    if not any(parts.has(a) for a in names):
        return []
    negate = any(parts.neg(a) for a in names if parts.has(a))
    try:
        return M.icmpv6_l2(*[parts.val(a) if parts.has(a) else None for a in names], negate=negate)
    except M.NoNftForm as exc:
        raise _unsupported(rule, str(exc)) from None


def _build_stp(parts, rule, reverse):
    if reverse and parts.has("srcmacaddr"):
        raise ResolveError(
            "filter '%s': an stp rule with direction 'inout' cannot set srcmacaddr (libvirt rejects it too): split "
            "it into an 'in' and an 'out' rule" % rule.filter_name, filter=rule.filter_name)
    parts.add(Match("ether daddr", M.STP_GROUP))
    _ether(parts, rule)
    parts.items.extend(M.stp(parts.attrs))


def _build(rule, reverse):
    """The rule's items (literal text or Slot) followed by its verdict, or an error."""
    parts = _Parts(rule, _attrs(rule), reverse)
    proto = rule.protocol
    if proto is None:
        pass
    elif proto == "mac":
        _build_mac(parts, rule)
    elif proto == "vlan":
        _build_vlan(parts, rule)
    elif proto in ("arp", "rarp"):
        _build_arp(parts, rule)
    elif proto in ("ip", "ipv6"):
        _build_ip(parts, rule, 4 if proto == "ip" else 6)
    elif proto == "stp":
        _build_stp(parts, rule, reverse)
    else:
        raise _unsupported(rule, "a layer 3/4 (%s) rule" % proto)
    return tuple(parts.items), _VERDICT[rule.action]


# ------------------------------------------------------------------------------ templates


@dataclass(frozen=True)
class _RuleT:
    """A rule with its slot values taken out: ``shape`` is what NICs must share."""

    items: Tuple[object, ...]
    verdict: str

    # computed once per object: _template shares one _RuleT between every NIC that has the rule
    @cached_property
    def slots(self):
        return tuple(i for i in self.items if isinstance(i, Slot))

    @cached_property
    def shape(self):
        return (tuple(i.shape() if isinstance(i, Slot) else i for i in self.items), self.verdict)

    @cached_property
    def values(self):
        return tuple(s.value for s in self.slots)

    @cached_property
    def mergeable(self):
        # several instances ORed into one set lookup: only sound for a single positive lookup
        return not any(s.negate for s in self.slots) and len(_lookups(list(enumerate(self.slots)))) == 1


def _lookups(slots):
    """(position, Slot) pairs grouped into set lookups: typed positive slots share one
    concatenation; raw and negated slots are looked up one by one (nft 1.0.6 mangles sets
    declared ``typeof`` several raw fields)."""
    together = tuple(p for p in slots if not p[1].negate and p[1].kind != "raw")
    alone = [(p,) for p in slots if p[1].negate or p[1].kind == "raw"]
    return ([together] if together else []) + alone


def _template(rule, reverse, built):
    """_build's result as a _RuleT, once per rule instance and direction within one call.

    The resolver hands every NIC whose variables agree the same RuleInstance object (see
    _resolve.instantiate's memo), and _build depends on nothing but the rule and ``reverse``, so
    ``built`` (one dict per compile_nics call) is keyed by the object's id; each entry keeps the
    rule alive so no id is reused while the dict lives.  Errors are not kept: they end the call.
    """
    key = (id(rule), reverse)
    entry = built.get(key)
    if entry is None:
        items, verdict = _build(rule, reverse)
        entry = built[key] = (rule, _RuleT(items, verdict))
    return entry[1]


def _chain_rules(inst, rules, wanted, built=None):
    """{suffix: [_RuleT or ('jump', suffix)]} for one NIC and one direction, libvirt's order.

    ``built``: the call's _template cache (a fresh one when None)."""
    built = {} if built is None else built
    # layer 3/4 rules live in the inet table (_compile_nft_l3)
    mine = [r for r in rules if r.direction in wanted and (r.protocol is None or r.protocol in L2_PROTOCOLS)]
    body: Dict[str, list] = {"root": []}
    subs = []
    for suffix, priority in inst.subchains:
        if any(r.chain == suffix for r in mine) and _selector(suffix) is not None:
            subs.append((priority, suffix))
            body.setdefault(suffix, [])
    jumps = sorted(subs, key=lambda item: item[0])
    for rule in mine:
        if rule.chain == "root":
            while jumps and jumps[0][0] <= rule.priority:
                body["root"].append(("jump", jumps.pop(0)[1]))
        elif rule.chain not in body:
            continue  # libvirt ignores a sub-chain it has no selector for
        reverse = wanted[0] == "out" and rule.direction == "inout"
        body[rule.chain].append(_template(rule, reverse, built))
    body["root"].extend(("jump", suffix) for _priority, suffix in jumps)
    return {suffix: _merge(lines) for suffix, lines in body.items() if suffix == "root" or lines}


def _selector(suffix) -> Optional[tuple]:
    for prefix, selector in _SELECTOR:
        if suffix.startswith(prefix):
            return selector
    return None


def _merge(lines):
    """Consecutive instances of one rule (a value list) become one lookup with several elements.

    Returns [(shape-or-jump, [value tuples])]."""
    out = []
    for line in lines:
        if isinstance(line, tuple):
            out.append((line, ()))
            continue
        if out and isinstance(out[-1][0], _RuleT) and out[-1][0].shape == line.shape and line.mergeable:
            out[-1][1].append(line.values)
            continue
        out.append((line, [line.values]))
    return [(key, tuple(values)) for key, values in out]


def _chain_shape(lines):
    return tuple(line.shape if isinstance(line, _RuleT) else line for line, _values in lines)


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# ------------------------------------------------------------------------------ assembly


class _Chain:
    """One emitted chain: its name, rules, sets (name -> ((typeof, key), elements)) and maps."""

    def __init__(self, name):
        self.name = name
        self.rules: List[tuple] = []
        self.sets: Dict[str, Tuple[tuple, List[tuple]]] = {}
        self.maps: Dict[str, List[tuple]] = {}


def _inlined(lines, nics_values):
    """Per line, per slot: the one value every NIC has there (written literally), else None.

    A single NIC keeps its values in sets, so a second NIC with the same shape joins the
    chain without rewriting it; raw fields always stay in sets (see Slot)."""
    out = []
    for number, (line, _values) in enumerate(lines):
        if not isinstance(line, _RuleT):
            out.append(())
            continue
        keep = []
        seen = {tuple(values[number]) for values in nics_values}
        single = len(nics_values) > 1 and all(len(tuples) == 1 for tuples in seen)
        for pos, slot in enumerate(line.slots):
            here = {tuples[0][pos] for tuples in seen} if single else set()
            keep.append(next(iter(here)) if len(here) == 1 and slot.kind != "raw" else None)
        out.append(tuple(keep))
    return out


def _render_rule(line, inline, ifkey, set_name):
    """The rule (a tuple of statements) and its lookups [(set name, ((position, Slot), ...))];
    ``set_name(n)`` names lookup n; a lookup stands where its first slot stands."""
    free = [(pos, slot) for pos, (slot, value) in enumerate(zip(line.slots, inline)) if value is None]
    lookups = _lookups(free)
    first = {group[0][0]: group for group in lookups}
    tokens, pos, used = [], 0, []
    for item in line.items:
        if not isinstance(item, Slot):
            tokens.append(item)
            continue
        value, group = inline[pos], first.get(pos)
        pos += 1
        if value is not None:
            tokens.append(Match(item.expr, value, item.negate))
        elif group is not None:
            name = set_name(len(used))
            used.append((name, group))
            tokens.append(Lookup(tuple(s.expr for _p, s in group) + (ifkey,), name, group[0][1].negate))
    tokens.append(Verdict(line.verdict))
    return tuple(tokens), used


def _set_type(group, ifkey):
    """(typeof, key): raw fields are declared by expression, typed ones by type."""
    slots = [slot for _pos, slot in group]
    if any(s.kind == "raw" for s in slots):
        return True, tuple(s.expr for s in slots) + (ifkey,)
    return False, tuple(s.kind for s in slots) + ("ifname",)


def _set_type_text(group, ifkey):
    typeof, key = _set_type(group, ifkey)
    return "%s %s" % ("typeof" if typeof else "type", " . ".join(key))


def _named(rule, prefix):
    """The rule with its set names' placeholder replaced by the chain's name."""
    return tuple(dataclasses.replace(st, set_name=st.set_name.replace("{SET}", prefix))
                 if isinstance(st, Lookup) else st for st in rule)


def _digest_entry(entry):
    """The text an emitted line had when chain names were first derived (names stay stable)."""
    if isinstance(entry, _Dispatch):
        return (render_rule(entry.selector) + " " if entry.selector else "", entry.suffix)
    return render_rule(entry)


@dataclass(frozen=True)
class _Dispatch:
    """A jump to a sub-chain that differs per NIC: a verdict map keyed by interface."""

    selector: tuple
    suffix: str


def _emit_group(direction, suffix, ifkey, lines, nics, per_nic, targets):
    """Build the chain a group of NICs shares; per_nic[dev] = its value tuples per line."""
    inline = _inlined(lines, [per_nic[dev] for dev in nics])
    body, sets = [], []
    for number, (line, _values) in enumerate(lines):
        if not isinstance(line, _RuleT):
            sub = line[1]
            chosen = {targets[dev][sub] for dev in nics}
            selector = _selector(sub)
            if len(chosen) == 1:
                body.append(selector + (Verdict("jump", chosen.pop()),))
            else:
                body.append(_Dispatch(selector, sub))
            continue
        text, used = _render_rule(line, inline[number], ifkey, lambda n, k=number: "{SET}s%d-%d" % (k, n))
        body.append(text)
        sets.append((number, used))
    shape_text = repr((direction, suffix, [_digest_entry(e) for e in body],
                       [(k, [(n, _set_type_text(g, ifkey)) for n, g in u]) for k, u in sets]))
    name = "%s-%s-%s" % (direction, suffix, _digest(shape_text))
    chain = _Chain(name)
    for entry in body:
        if isinstance(entry, _Dispatch):
            map_name = "%s-%s" % (name, entry.suffix)
            chain.maps[map_name] = [((quoted(dev),), "jump " + targets[dev][entry.suffix]) for dev in nics]
            chain.rules.append(entry.selector + (VerdictMap(ifkey, map_name),))
        else:
            chain.rules.append(_named(entry, name + "-"))
    if suffix != "root":
        chain.rules.append((Verdict("accept"),))  # libvirt's ebtables user chains end in policy ACCEPT
    for number, used in sets:
        for set_local, group in used:
            elements = []
            for dev in nics:
                for values in per_nic[dev][number]:
                    elements.append(tuple(values[pos] for pos, _slot in group) + (quoted(dev),))
            chain.sets[set_local.replace("{SET}", name + "-")] = (_set_type(group, ifkey), elements)
    return chain


def _direction(direction, ifkey, wanted, nics):
    """Chains of one direction and the dispatch map elements."""
    per_suffix: Dict[str, Dict[str, list]] = {}
    built: Dict[tuple, tuple] = {}
    for inst in nics:
        for suffix, lines in _chain_rules(inst, inst.rules, wanted, built).items():
            per_suffix.setdefault(suffix, {})[inst.portdev] = lines
    targets: Dict[str, Dict[str, str]] = {inst.portdev: {} for inst in nics}
    chains, notes = [], []
    for suffix in sorted(per_suffix, key=lambda s: s == "root"):
        groups: Dict[tuple, List[str]] = {}
        for dev, lines in sorted(per_suffix[suffix].items()):
            groups.setdefault(_chain_shape(lines), []).append(dev)
        for _shape, devs in sorted(groups.items(), key=lambda item: item[1]):
            lines = per_suffix[suffix][devs[0]]
            per_nic = {dev: [values for _line, values in per_suffix[suffix][dev]] for dev in devs}
            chain = _emit_group(direction, suffix, ifkey, lines, devs, per_nic, targets)
            chains.append(chain)
            for dev in devs:
                targets[dev][suffix] = chain.name
        if len(groups) > 1:
            notes.append("%s chain '%s': %d variants for %d NICs (NICs whose rules differ in values a set "
                         "cannot hold get their own chain): %s" % (
                             direction, suffix, len(groups), len(per_suffix[suffix]),
                             "; ".join(", ".join(devs) for devs in sorted(groups.values()))))
    dispatch = [((quoted(dev),), "jump " + targets[dev]["root"]) for dev in sorted(targets)
                if "root" in targets[dev]]
    return chains, dispatch, notes


def compile_nics(instantiations: Sequence[Instantiation]) -> NftDesired:
    """The bridge table for every NIC (empty NftDesired when no NIC has an L2 rule)."""
    nics = sorted(instantiations, key=lambda inst: inst.portdev)
    for inst in nics:
        check_device(inst.portdev)
    result = NftDesired()
    objects: List[object] = []
    bases: List[Chain] = []
    chain_objects: List[Chain] = []
    for direction, map_name, ifkey, base, hook, priority, wanted in DIRECTIONS:
        chains, dispatch, notes = _direction(direction, ifkey, wanted, nics)
        result.notes.extend(notes)
        if not dispatch:
            continue
        objects.append(_map(map_name, dispatch))
        for chain in chains:
            for name, elements in sorted(chain.maps.items()):
                objects.append(_map(name, elements))
            for name, ((typeof, key), elements) in sorted(chain.sets.items()):
                objects.append(Set(name, key, tuple(sorted(elements, key=" . ".join)), typeof))
        # nft lists sets and maps before chains
        chain_objects.extend(Chain(c.name, tuple(c.rules)) for c in chains)
        result.rule_count += sum(len(c.rules) for c in chains) + 1
        bases.append(Chain(base, ((VerdictMap(ifkey, map_name),),), Hook(hook, priority)))
    if objects:
        result.tables[L2] = Table(L2[0], L2[1], tuple(objects + chain_objects + bases))
    l3_tables, l3_notes, l3_count = _compile_nft_l3.compile_nics(nics)
    result.tables.update(l3_tables)
    result.rule_count += l3_count
    shared = sum(1 for n in nics if n.rules)
    result.notes.insert(0, "nftables: %d NICs, %d rules in table %s %s (rules are shared by NICs; "
                           "per-NIC values live in sets)" % ((shared, result.rule_count - l3_count) + L2))
    result.notes.extend(l3_notes)
    return result


BOUND_TAPS = "bound_taps"


def drop_unbound(table: Optional[Table], taps) -> Table:
    """The bridge table plus the fail-closed rule: frames from any vnet* tap without a binding are
    dropped at bridge prerouting, before the dispatch (a bound tap is in set ``bound_taps``)."""
    drop = (Match("iifname", quoted(TAP_PREFIX + "*")), Lookup(("iifname",), BOUND_TAPS, negate=True), Verdict("drop"))
    bound = Set(BOUND_TAPS, ("ifname",), tuple((quoted(tap),) for tap in sorted(taps)))
    objects = list(table.objects) if table is not None else []
    for index, obj in enumerate(objects):
        if isinstance(obj, Chain) and obj.name == DIRECTIONS[0][3]:
            objects[index] = dataclasses.replace(obj, rules=(drop,) + obj.rules)
            break
    else:
        objects.append(Chain(DIRECTIONS[0][3], (drop,), Hook(DIRECTIONS[0][4], DIRECTIONS[0][5])))
    return Table(L2[0], L2[1], tuple([bound] + objects))


def _map(name, elements):
    return Map(name, ("ifname",), "verdict", tuple(sorted(elements)))
