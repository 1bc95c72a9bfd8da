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

NICs whose chain has the same rules share it; a chain is emitted once per distinct rule list.
"""

from __future__ import annotations

import hashlib
from typing import Dict, List, Sequence, Tuple

from . import _compile_xt as X
from . import _xt_print as P
from ._errors import ResolveError
from ._model import Instantiation

MARK_TABLE = ("bridge", "hfw_nwfilter_mark")
TABLE = ("inet", "hfw_nwfilter")
IN_MARK, OUT_MARK = 0x48460000, 0x48470000
# kind -> (dispatch map, mark base, base chain, hook, priority, extra base-chain rule)
KINDS = (("FI", "from_guest", IN_MARK, "prerouting", "prerouting", "mangle", "fib daddr type local return"),
         ("FO", "to_guest", OUT_MARK, "forward", "forward", "filter", None),
         ("HI", "to_host", IN_MARK, "input", "input", "filter", None))
_PROTO = {"tcp": "tcp", "udp": "udp", "udplite": "udplite", "sctp": "sctp", "esp": "esp", "ah": "ah",
          "icmp": "icmp", "icmpv6": "ipv6-icmp", "igmp": "igmp", "all": None}
_UNSUPPORTED = ("ipset", "connlimit-above", "dscp", "srcipfrom", "dstipfrom", "option", "flags", "srcmacaddr",
                "code")
_REJECT = {"ip4": "reject with icmp port-unreachable", "ip6": "reject with icmpv6 port-unreachable"}
_CT_ORDER = ("INVALID", "ESTABLISHED", "RELATED", "NEW", "UNTRACKED")
_ICMP_TYPES = {0: "echo-reply", 3: "destination-unreachable", 5: "redirect", 8: "echo-request",
               11: "time-exceeded", 12: "parameter-problem", 13: "timestamp-request", 14: "timestamp-reply"}
_ICMPV6_TYPES = {1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem",
                 128: "echo-request", 129: "echo-reply", 133: "nd-router-solicit", 134: "nd-router-advert",
                 135: "nd-neighbor-solicit", 136: "nd-neighbor-advert", 137: "nd-redirect"}


def _unsupported(rule, what):
    return ResolveError(
        "filter '%s': %s is not supported by the nftables backend: use backend 'xtables' for NICs whose "
        "filters use it" % (rule.inst.filter_name, what), filter=rule.inst.filter_name, backend="nftables")


def _neg(rule, attr, text):
    """``expr value`` -> ``expr != value`` when the attribute is negated."""
    if not rule.neg(attr):
        return text
    expr, value = text.rsplit(" ", 1)
    return "%s != %s" % (expr, value)


def _addrs(rule, d_in, fam, version):
    out = {}
    for side, other in (("src", "dst"), ("dst", "src")):
        attr = side + "ipaddr"
        if rule.has(attr):
            text = P.ipt_ip(rule.val(attr), rule.val(side + "ipmask"), version)
            if text.endswith("/32" if version == 4 else "/128"):
                text = text.rsplit("/", 1)[0]
            key = other if d_in else side
            out[key] = _neg(rule, attr, "%s %saddr %s" % (fam, key[0], text))
    return [out[k] for k in ("src", "dst") if k in out]


def _proto_opts(rule, base, d_in):
    if base in ("icmp", "icmpv6"):
        if not rule.has("type"):
            return ["meta l4proto %s" % _PROTO[base]]
        names = _ICMP_TYPES if base == "icmp" else _ICMPV6_TYPES
        number = P.number(rule.val("type"))
        keyword = "icmp" if base == "icmp" else "icmpv6"
        return [_neg(rule, "type", "%s type %s" % (keyword, names.get(number, str(number))))]
    ports = {}
    for side, other in (("src", "dst"), ("dst", "src")):
        if rule.has(side + "portstart"):
            key = other if d_in else side
            text = P.port_range(rule.val(side + "portstart"), rule.val(side + "portend")).replace(":", "-")
            ports[key] = _neg(rule, side + "portstart", "%s %sport %s" % (base, key[0], text))
    if ports:
        return [ports[k] for k in ("src", "dst") if k in ports]
    return ["meta l4proto %s" % _PROTO[base]] if _PROTO[base] else []


def _state(state, def_match, rule, d_in, has_icmp_type):
    out = ["ct state %s" % ",".join(s.lower() for s in _CT_ORDER if s in state.split(","))]
    if def_match and not has_icmp_type and rule.inst.direction != "inout":
        out.append("ct direction %s" % ("reply" if d_in else "original"))
    return out


def _rule_text(rule, tool, d_in, state, def_match, accept_target, may_skip_icmp):
    """One chain's copy of a rule in the form ``nft list`` prints, or None when libvirt skips it."""
    base = rule.protocol[:-5] if rule.protocol.endswith("-ipv6") else rule.protocol
    if base in ("icmp", "icmpv6") and rule.has("type") and may_skip_icmp:
        return None
    for attr in _UNSUPPORTED:
        if rule.has(attr):
            raise _unsupported(rule, "the '%s' attribute of a layer 3/4 rule" % attr)
    version, fam = (6, "ip6") if tool == "ip6" else (4, "ip")
    addrs = _addrs(rule, d_in, fam, version)
    tokens = addrs if addrs else ["meta nfproto %s" % ("ipv6" if version == 6 else "ipv4")]
    tokens += _proto_opts(rule, base, d_in)
    action = rule.inst.action
    if state and not (def_match and action != "accept"):
        tokens += _state(state, def_match, rule, d_in, base in ("icmp", "icmpv6") and rule.has("type"))
    verdict = {"accept": accept_target.lower(), "drop": "drop", "reject": _REJECT[tool], "return": "return",
               "continue": ""}[action]
    if action == "reject" and tokens == ["meta nfproto %s" % ("ipv6" if version == 6 else "ipv4")]:
        tokens = []  # the reject type implies the family; nft prints it without the dependency
    return " ".join(t for t in tokens + [verdict] if t)


def _nic_chains(rules):
    """{kind: [rule text]} of one NIC (kinds without rules are left out)."""
    out: Dict[str, List[str]] = {}
    for rule in rules:
        if rule.is_l2:
            continue
        tool = X._family(rule)
        for kind, spec in X._ipt_instances(rule):
            text = _rule_text(rule, tool, *spec)
            if text is not None:
                out.setdefault(kind, []).append(text)
    return out


def _digest(lines):
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:10]


def _block(head, name, lines):
    return "\n".join(["\t%s %s {" % (head, name)] + ["\t\t" + line for line in lines] + ["\t}"])


def _elements(items):
    return ["elements = { " + ",\n\t\t\t     ".join(items) + " }"] if items else []


def compile_nics(instantiations: Sequence[Instantiation]) -> Tuple[Dict[Tuple[str, str], str], List[str], int]:
    """({(family, table): text}, notes, rule count) for the NICs' layer 3/4 rules."""
    nics = sorted(instantiations, key=lambda inst: inst.portdev)
    per_nic = {inst.portdev: _nic_chains([X._Rule(r) for r in inst.rules]) for inst in nics}
    ports = [dev for dev in sorted(per_nic) if per_nic[dev]]
    if not ports:
        return {}, [], 0
    number = {dev: index + 1 for index, dev in enumerate(ports)}
    maps, chains, bases, count = [], {}, [], 0
    for kind, map_name, mark, base, hook, priority, extra in KINDS:
        elements = []
        for dev in ports:
            lines = per_nic[dev].get(kind)
            if lines:
                name = "%s-%s" % (kind, _digest(lines))
                chains[name] = lines
                elements.append("0x%08x : jump %s" % (mark + number[dev], name))
        maps.append(_block("map", map_name, ["type mark : verdict"] + _elements(elements)))
        head = "type filter hook %s priority %s; policy accept;" % (hook, priority)
        bases.append(_block("chain", base, [head] + ([extra] if extra else []) + ["meta mark vmap @%s" % map_name]))
    count = sum(len(lines) for lines in chains.values()) + 4
    inet = [_block("chain", name, lines) for name, lines in sorted(chains.items())]
    tables = {TABLE: "table inet hfw_nwfilter {\n%s\n}\n" % "\n\n".join(maps + inet + bases),
              MARK_TABLE: _mark_table(ports, number)}
    notes = ["nftables: %d NICs with layer 3/4 rules share %d chains in table inet hfw_nwfilter (ports are "
             "told apart by the packet mark set in table bridge hfw_nwfilter_mark)" % (len(ports), len(chains))]
    return tables, notes, count


def _mark_table(ports, number):
    ins = ['"%s" : 0x%08x' % (dev, IN_MARK + number[dev]) for dev in ports]
    outs = ['"%s" : 0x%08x' % (dev, OUT_MARK + number[dev]) for dev in ports]
    parts = [_block("map", "in_port", ["type ifname : mark"] + _elements(ins)),
             _block("map", "out_port", ["type ifname : mark"] + _elements(outs)),
             _block("chain", "prerouting", ["type filter hook prerouting priority filter; policy accept;",
                                            "meta mark set iifname map @in_port"]),
             _block("chain", "forward", ["type filter hook forward priority filter; policy accept;",
                                         "meta mark set oifname map @out_port"])]
    return "table bridge hfw_nwfilter_mark {\n%s\n}\n" % "\n\n".join(parts)
