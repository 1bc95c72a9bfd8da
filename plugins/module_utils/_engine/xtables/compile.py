# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compile resolved NIC filters into ebtables / iptables / ip6tables chains.

The chains, rules and their order follow libvirt's ebiptables nwfilter driver
(src/nwfilter/nwfilter_ebiptables_driver.c).  Every rule is emitted in the exact text that
``*-save`` prints back (see _xt_print), because desired and live rules are compared as strings.

Deliberate differences from libvirt, each a fix:
- ``libvirt-in-post`` accepts only *bridged* traffic from the guest
  (``--physdev-in DEV --physdev-is-bridged``).  libvirt's rule (``--physdev-in DEV`` alone) also
  accepts traffic the guest sends to be *routed* by the host, skipping the virtual network's own
  LIBVIRT_FW* chains that sit after it in FORWARD.
- ``--vlan-encap`` is given in hex: ebtables reads that option as hex, and libvirt's decimal
  value (2054 for ARP) matches a different ethertype (0x2054).
- ``continue`` in iptables becomes a rule without a target (iptables has no CONTINUE target;
  libvirt's ``-j CONTINUE`` fails to apply).
- ARP ``arpdstipaddr`` without ``arpdstipmask`` is a host match; libvirt reuses the source mask.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

from . import names as _names
from . import printed as P
from ..language import schema as _schema
from ..language import values as V
from ..language.copies import RuleView, family_of, l3_copies
from ..errors import ResolveError
from ..language.model import Instantiation, RuleInstance
from .ruleset import Chain, Ruleset, TableState

# chain-name prefix -> how the root chain selects the frames for that sub-chain
_SUBCHAIN_PREFIXES = (
    ("ipv4", "-p IPv4"), ("ipv6", "-p IPv6"), ("arp", "-p ARP"), ("rarp", "-p RARP"),
    ("vlan", "-p 802_1Q"), ("stp", "-d BGA"), ("mac", ""),
)
_EB_TARGET = {"accept": "ACCEPT", "drop": "DROP", "reject": "DROP", "return": "RETURN", "continue": "CONTINUE"}
_WS = re.compile(r"\s")


def compile_nics(instantiations: Sequence[Instantiation]) -> Ruleset:
    """The owned ebtables nat and ip(6)tables filter state for every NIC, keyed (tool, table)."""
    nics = sorted(instantiations, key=lambda inst: inst.portdev)
    eb_chains: Dict[str, Chain] = {}
    pre, post = [], []
    per_family = {"ip4": [], "ip6": []}
    cache = _Cache()
    for inst in nics:
        _names.check_device(inst.portdev)
        rules = tuple(cache.rule(rule) for rule in inst.rules)
        chains, hooks = _eb_nic(inst, rules, cache)
        eb_chains.update(chains)
        pre.extend(h for h in hooks if h[0] == "PREROUTING")
        post.extend(h for h in hooks if h[0] == "POSTROUTING")
        for tool in per_family:
            nic = _ipt_nic(inst.portdev, rules, tool, cache)
            if nic is not None:
                per_family[tool].append((inst.portdev, nic))
    ruleset: Ruleset = {}
    if eb_chains or pre or post:
        ruleset[("eb", "nat")] = TableState("eb", "nat", eb_chains, tuple(pre + post))
    for tool, nic_list in per_family.items():
        if nic_list:
            ruleset[(tool, "filter")] = _ipt_table(tool, nic_list)
    return ruleset


class _Rule(RuleView):
    """A rule with iptables' negation token."""

    def neg(self, name) -> List[str]:
        return ["!"] if self.negated(name) else []


class _Cache:
    """Per-call memo: a rule's text depends on the rule instance alone, never on the device.

    NICs bound to the same filters share most rule instances (the resolver hands out the same
    objects), so each is compiled once.  Keys are object ids; the cached _Rule keeps its rule
    instance alive, so no id is reused while the cache exists.
    """

    def __init__(self):
        self.rules: Dict[int, _Rule] = {}
        self.texts: Dict[tuple, Optional[str]] = {}

    def rule(self, inst: RuleInstance) -> _Rule:
        found = self.rules.get(id(inst))
        if found is None:
            found = self.rules[id(inst)] = _Rule(inst)
        return found

    def text(self, build, rule: _Rule, *args):
        key = (build, id(rule)) + args
        if key not in self.texts:
            self.texts[key] = build(rule, *args)
        return self.texts[key]


def _join(tokens: List[str]) -> str:
    for token in tokens:
        if not token or _WS.search(token):
            raise ResolveError(
                "value %r cannot be used in a firewall rule: it is empty or contains whitespace; remove the "
                "whitespace" % token,
                token=token,
            )
    return " ".join(tokens)


# ---------------------------------------------------------------------------- ebtables


def _eb_nic(inst: Instantiation, rules: Tuple[_Rule, ...], cache: _Cache):
    dev = inst.portdev
    l2 = [r for r in rules if r.is_l2]
    chains: Dict[str, Chain] = {}
    hooks = []
    for prefix, wanted, hook, flag in (("I", ("out", "inout"), "PREROUTING", "-i"),
                                       ("O", ("in", "inout"), "POSTROUTING", "-o")):
        mine = [r for r in l2 if r.inst.direction in wanted]
        if not mine:
            continue
        root = _names.eb_root(prefix, dev)
        reverse = prefix == "I"
        body: Dict[str, List[str]] = {root: []}
        subs = _subchains(inst, mine)
        for sub, priority in subs:
            body.setdefault(_names.eb_sub(prefix, dev, sub), [])
        jumps = _jumps(prefix, dev, subs)
        for rule in mine:
            if rule.inst.chain == "root":
                while jumps and jumps[0][0] <= rule.inst.priority:
                    body[root].append(jumps.pop(0)[1])
                chain = root
            else:
                chain = _names.eb_sub(prefix, dev, rule.inst.chain)
            body[chain].append(cache.text(_eb_rule, rule, reverse and rule.inst.direction == "inout"))
        body[root].extend(jump for priority, jump in jumps)
        chains.update({name: Chain(name, tuple(lines), "ACCEPT") for name, lines in body.items()})
        hooks.append((hook, _join([flag, dev, "-j", root])))
    return chains, hooks


def _subchains(inst: Instantiation, rules: List[_Rule]) -> List[Tuple[str, int]]:
    """Sub-chains holding rules of this direction, by chain priority then first appearance."""
    prio = {}
    for suffix, priority in inst.subchains:
        prio.setdefault(suffix, priority)
    order = [s for s, priority in inst.subchains]
    for rule in rules:
        if rule.inst.chain != "root" and rule.inst.chain not in prio:
            prio[rule.inst.chain] = rule.inst.chain_priority
            order.append(rule.inst.chain)
    used = {r.inst.chain for r in rules}
    ordered = [s for s in dict.fromkeys(order) if s in used and _selector(s) is not None]
    return sorted(((s, prio[s]) for s in ordered), key=lambda item: item[1])


def _selector(suffix) -> Optional[str]:
    for prefix, selector in _SUBCHAIN_PREFIXES:
        if suffix.startswith(prefix):
            return selector
    return None


def _jumps(prefix, dev, subs) -> List[Tuple[int, str]]:
    out = []
    for suffix, priority in subs:
        selector = _selector(suffix)
        tokens = (selector.split() if selector else []) + ["-j", _names.eb_sub(prefix, dev, suffix)]
        out.append((priority, _join(tokens)))
    return out


def _eb_rule(rule: _Rule, reverse: bool) -> str:
    proto = rule.protocol
    head, opts = _EB_BUILDERS[proto](rule, reverse) if proto else ([], [])
    macs = _eb_eth(rule, reverse)
    if proto == "stp":
        macs["-d"] = ["BGA"]
    tokens = list(head)
    for flag in ("-s", "-d"):
        if flag in macs:
            tokens += [flag] + macs[flag]
    tokens += opts + ["-j", _EB_TARGET[rule.inst.action]]
    return _join(tokens)


def _eb_eth(rule: _Rule, reverse: bool) -> Dict[str, List[str]]:
    out = {}
    for side, flag, rflag in (("src", "-s", "-d"), ("dst", "-d", "-s")):
        addr = rule.val(side + "macaddr")
        if addr is None:
            continue
        out[rflag if reverse else flag] = rule.neg(side + "macaddr") + [P.eb_mac(addr, rule.val(side + "macmask"))]
    return out


def _opt(rule: _Rule, attr: str, flag: str, text: str) -> List[str]:
    return [flag] + rule.neg(attr) + [text]


def _eb_mac_proto(rule, reverse):
    value = rule.val("protocolid")
    if value is None:
        return [], []
    if rule.negated("protocolid") and P.ethertype(value) == P.LENGTH:
        raise ResolveError(
            "filter '%s': <mac match='no' protocolid='0x600'> cannot be kept: ebtables prints both 0x600 and "
            "not-0x600 as '-p Length', so the rule could never be checked or repaired: match the ethertypes "
            "you mean without match='no'" % rule.inst.filter_name,
            filter=rule.inst.filter_name,
        )
    return _opt(rule, "protocolid", "-p", P.ethertype(value)), []


def _eb_vlan(rule, reverse):
    opts = []
    if rule.has("vlanid"):
        opts += _opt(rule, "vlanid", "--vlan-id", str(V.number(rule.val("vlanid"))))
    if rule.has("encap-protocol"):
        opts += _opt(rule, "encap-protocol", "--vlan-encap", "%04X" % V.number(rule.val("encap-protocol")))
    return ["-p", "802_1Q"], opts


def _eb_range(rule, lo, hi):
    return P.port_range(rule.val(lo), rule.val(hi))


def _eb_stp(rule, reverse):
    if reverse and rule.has("srcmacaddr"):
        raise ResolveError(
            "filter '%s': an stp rule with direction 'inout' cannot set srcmacaddr (libvirt "
            "rejects it too): split it into an 'in' and an 'out' rule" % rule.inst.filter_name,
            filter=rule.inst.filter_name,
        )
    opts = []
    for attr, flag, names in (("type", "--stp-type", P.STP_TYPES), ("flags", "--stp-flags", P.STP_FLAGS)):
        if rule.has(attr):
            num = V.number(rule.val(attr))
            opts += _opt(rule, attr, flag, names.get(num, str(num)))
    for attr, flag, kind in _STP_FIELDS:
        if not rule.has(attr):
            continue
        if kind == "mask":
            text = P.eb_mac(rule.val(attr), rule.val(attr + "-mask"), named=False)
        else:
            text = _eb_range(rule, attr, attr + "-hi")
        opts += _opt(rule, attr, flag, text)
    return [], opts


_STP_FIELDS = (
    ("root-priority", "--stp-root-prio", "range"), ("root-address", "--stp-root-addr", "mask"),
    ("root-cost", "--stp-root-cost", "range"), ("sender-priority", "--stp-sender-prio", "range"),
    ("sender-address", "--stp-sender-addr", "mask"), ("port", "--stp-port", "range"),
    ("age", "--stp-msg-age", "range"), ("max-age", "--stp-max-age", "range"),
    ("hello-time", "--stp-hello-time", "range"), ("forward-delay", "--stp-forward-delay", "range"),
)


def _eb_arp(rule, reverse):
    opts = []
    if rule.has("opcode"):
        num = V.number(rule.val("opcode"))
        opts += _opt(rule, "opcode", "--arp-op", P.ARP_OPCODES.get(num, str(num)))
    if rule.has("hwtype"):
        opts += _opt(rule, "hwtype", "--arp-htype", str(V.number(rule.val("hwtype"))))
    if rule.has("protocoltype"):
        opts += _opt(rule, "protocoltype", "--arp-ptype", "0x%x" % V.number(rule.val("protocoltype")))
    opts += _swapped(rule, reverse, "ip", lambda side: P.eb_ip(rule.val("arp%sipaddr" % side),
                                                               rule.val("arp%sipmask" % side)))
    opts += _swapped(rule, reverse, "mac", lambda side: P.eb_mac(rule.val("arp%smacaddr" % side), named=False))
    if rule.val("gratuitous") == "true":
        opts += rule.neg("gratuitous") + ["--arp-gratuitous"]
    return ["-p", "ARP" if rule.protocol == "arp" else "RARP"], opts


def _swapped(rule, reverse, kind, text_of):
    """``--arp-<kind>-src`` / ``-dst`` options, printed src first, swapped for a reversed copy."""
    found = {}
    for side, other in (("src", "dst"), ("dst", "src")):
        attr = "arp%s%saddr" % (side, kind)
        if rule.has(attr):
            found[other if reverse else side] = rule.neg(attr) + [text_of(side)]
    out = []
    for side in ("src", "dst"):
        if side in found:
            out += ["--arp-%s-%s" % (kind, side)] + found[side]
    return out


def _eb_ip(rule, reverse):
    return ["-p", "IPv4"], _eb_l3(rule, reverse, "ip", 4)


def _check_positive_protocol(rule, attrs, what):
    """ebtables matches ports and ICMPv6 types only under a protocol match that is not negated, and
    match='no' negates every attribute of the element, the protocol too (libvirt's rule fails to apply)."""
    if rule.has("protocol") and rule.neg("protocol") and any(rule.has(a) for a in attrs):
        raise ResolveError(
            "filter '%s': a negated (match='no') <%s> rule with %s negates its protocol as well, and ebtables "
            "cannot match %s under a negated protocol: drop match='no' or split the rule in two"
            % (rule.inst.filter_name, rule.protocol, what, what),
            filter=rule.inst.filter_name,
        )


def _eb_ipv6(rule, reverse):
    opts = _eb_l3(rule, reverse, "ip6", 6)
    _check_positive_protocol(rule, ("type", "typeend", "code", "codeend"), "ICMPv6 types")
    if any(rule.has(a) for a in ("type", "typeend", "code", "codeend")):
        attr = "type" if rule.has("type") else "code"
        values = [V.number(rule.val(name) or default) for name, default in
                  (("type", "0"), ("typeend", rule.val("type") or "255"),
                   ("code", "0"), ("codeend", rule.val("code") or "255"))]
        opts += _opt(rule, attr, "--ip6-icmp-type", P.icmpv6_eb(*values))
    return ["-p", "IPv6"], opts


def _eb_l3(rule, reverse, pfx, version):
    _check_positive_protocol(rule, _schema.PORT_ATTRS, "ports")
    addrs, ports = {}, {}
    for side, other in (("src", "dst"), ("dst", "src")):
        key = other if reverse else side
        if rule.has(side + "ipaddr"):
            text = P.eb_ip(rule.val(side + "ipaddr"), rule.val(side + "ipmask"), version)
            addrs[key] = rule.neg(side + "ipaddr") + [text]
        if rule.has(side + "portstart"):
            text = P.port_range(rule.val(side + "portstart"), rule.val(side + "portend"))
            ports[key] = rule.neg(side + "portstart") + [text]
    opts = []
    for side in ("src", "dst"):
        if side in addrs:
            opts += ["--%s-%s" % (pfx, side)] + addrs[side]
    if version == 4 and rule.has("dscp"):
        opts += _opt(rule, "dscp", "--ip-tos", "0x%02X" % V.number(rule.val("dscp")))
    if rule.has("protocol"):
        opts += _opt(rule, "protocol", "--%s-proto" % pfx, V.ip_protocol(rule.val("protocol")))
    for side in ("src", "dst"):
        if side in ports:
            opts += ["--%s-%sport" % (pfx, side[0])] + ports[side]
    return opts


_EB_BUILDERS = {
    "mac": _eb_mac_proto, "vlan": _eb_vlan, "stp": _eb_stp, "arp": _eb_arp, "rarp": _eb_arp,
    "ip": _eb_ip, "ipv6": _eb_ipv6,
}


# ---------------------------------------------------------------------------- iptables

_IPT_PROTO = {
    "tcp": "tcp", "udp": "udp", "udplite": "udplite", "esp": "esp", "ah": "ah", "sctp": "sctp",
    "icmp": "icmp", "igmp": "igmp", "all": None, "icmpv6": "ipv6-icmp",
}
# protocols whose options load a match module of the same name (printed as ``-m NAME``)
_PROTO_MATCH = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", "icmp": "icmp", "icmpv6": "icmp6"}
_REJECT = {"ip4": "REJECT --reject-with icmp-port-unreachable",
           "ip6": "REJECT --reject-with icmp6-port-unreachable"}


def _ipt_nic(dev, rules, tool, cache):
    """FI/FO/HI chains of one NIC, or None when the NIC has no rule of this family (as libvirt)."""
    mine = [r for r in rules if not r.is_l2 and family_of(r.protocol) == tool]
    if not mine:
        return None
    out = {"FI": [], "FO": [], "HI": []}
    for rule in mine:
        for copy in l3_copies(rule):
            text = cache.text(_ipt_rule, rule, tool, copy.reply, copy.states, copy.default_match,
                              copy.accept.upper(), copy.skips_icmp_type)
            if text is not None:
                out[copy.kind].append(text)
    return {_names.ipt_nic(kind, dev, tool): tuple(lines) for kind, lines in out.items()}


def _ipt_rule(rule: _Rule, tool, d_in, state, def_match, accept_target, may_skip_icmp):
    """One chain's copy of an L3 rule in iptables-save form, or None when libvirt skips it."""
    version = 6 if tool == "ip6" else 4
    base = rule.protocol[:-5] if rule.protocol.endswith("-ipv6") else rule.protocol
    if rule.has("connlimit-above") and d_in:
        return None  # libvirt limits connections only where they are initiated
    if base in ("icmp", "icmpv6") and rule.has("type") and may_skip_icmp:
        return None
    matches = []
    if rule.has("srcmacaddr") and not d_in:
        matches += ["-m", "mac"] + rule.neg("srcmacaddr") + ["--mac-source", P.ipt_mac(rule.val("srcmacaddr"))]
    matches += _ipt_ranges(rule, d_in, version)
    if rule.has("dscp"):
        matches += ["-m", "dscp"] + rule.neg("dscp") + ["--dscp", "0x%02x" % V.number(rule.val("dscp"))]
    proto_opts = _ipt_proto_opts(rule, base, d_in)
    if proto_opts:
        matches += ["-m", _PROTO_MATCH[base]] + proto_opts
    addrs = _ipt_addrs(rule, d_in, version)
    if rule.has("srcmacaddr") and d_in and not (matches or addrs):
        return None  # the source MAC was the rule's only match and cannot be seen this way
    has_icmp_type = base in ("icmp", "icmpv6") and rule.has("type")
    skip_state = rule.has("connlimit-above")
    if rule.inst.action == "accept":
        target = accept_target
    else:
        target = _REJECT[tool] if rule.inst.action == "reject" else rule.inst.action.upper()
        skip_state = def_match
    if state and not skip_state:
        matches += ["-m", "conntrack", "--ctstate", state]
        if def_match and not has_icmp_type and rule.inst.direction != "inout":
            # libvirt assumes the corrected --ctdir sense of Linux >= 2.6.39
            matches += ["-m", "conntrack", "--ctdir", "REPLY" if d_in else "ORIGINAL"]
    matches += _ipt_after_state(rule, d_in, version)
    tokens = addrs
    if _IPT_PROTO[base]:
        tokens += ["-p", _IPT_PROTO[base]]
    tokens += matches
    text = _join(tokens)
    if rule.has("comment"):
        text = (text + " " if text else "") + "-m comment --comment " + _comment(rule.val("comment"))
    if target != "CONTINUE":
        text = (text + " " if text else "") + "-j " + target
    return text


def _ipt_addrs(rule, d_in, version):
    out = {}
    for side, other in (("src", "dst"), ("dst", "src")):
        attr = side + "ipaddr"
        if rule.has(attr):
            text = P.ipt_ip(rule.val(attr), rule.val(side + "ipmask"), version)
            out[other if d_in else side] = rule.neg(attr) + ["-%s" % (other if d_in else side)[0], text]
    return out.get("src", []) + out.get("dst", [])


def _ipt_ranges(rule, d_in, version):
    out = []
    for side, other in (("src", "dst"), ("dst", "src")):
        if rule.has(side + "ipaddr") or not rule.has(side + "ipfrom"):
            continue
        flag = "--%s-range" % (other if d_in else side)
        text = P.ipt_range(rule.val(side + "ipfrom"), rule.val(side + "ipto"), version)
        out += ["-m", "iprange"] + rule.neg(side + "ipfrom") + [flag, text]
    return out


def _ipt_proto_opts(rule, base, d_in):
    """Options of the protocol's own match, in the order iptables-save prints them."""
    if base in ("icmp", "icmpv6"):
        if not rule.has("type"):
            return []
        code = V.number(rule.val("code")) if rule.has("code") else None
        text = P.icmp_type(base, V.number(rule.val("type")), code)
        return rule.neg("type") + ["--icmp-type" if base == "icmp" else "--icmpv6-type", text]
    if base not in ("tcp", "udp", "sctp"):
        return []
    ports = {}
    for side, other in (("src", "dst"), ("dst", "src")):
        if rule.has(side + "portstart"):
            key = other if d_in else side
            text = P.port_range(rule.val(side + "portstart"), rule.val(side + "portend"))
            ports[key] = rule.neg(side + "portstart") + ["--%sport" % key[0], text]
    out = ports.get("src", []) + ports.get("dst", [])
    if base == "tcp" and rule.has("option"):
        if V.number(rule.val("option")) == 0:
            raise ResolveError(
                "filter '%s': tcp option='0' (end of the option list) cannot be matched, iptables refuses it "
                "(libvirt's rule fails to apply): use an option kind from 1 to 255" % rule.inst.filter_name,
                filter=rule.inst.filter_name,
            )
        out += rule.neg("option") + ["--tcp-option", str(V.number(rule.val("option")))]
    if base == "tcp" and rule.has("flags"):
        if rule.val("flags").upper().startswith("NONE/"):
            raise ResolveError(
                "filter '%s': tcp flags='%s' test no flag (mask NONE), and iptables drops such a test from "
                "what it shows, so the rule could never be checked: give the flags to test before the '/' "
                "(e.g. SYN,ACK/SYN) or drop the attribute" % (rule.inst.filter_name, rule.val("flags")),
                filter=rule.inst.filter_name,
            )
        out += rule.neg("flags") + ["--tcp-flags"] + P.tcp_flags(rule.val("flags")).split()
    return out


def _ipt_after_state(rule, d_in, version):
    out = []
    if rule.has("ipset"):
        flags = (rule.val("ipsetflags") or "src").split(",")
        if d_in:
            flags = ["dst" if f == "src" else "src" for f in flags]
        out += ["-m", "set", "--match-set", rule.val("ipset"), ",".join(flags)]
    if rule.has("connlimit-above"):
        word = "--connlimit-upto" if rule.neg("connlimit-above") else "--connlimit-above"
        out += ["-m", "connlimit", word, str(V.number(rule.val("connlimit-above"))),
                "--connlimit-mask", "32" if version == 4 else "128", "--connlimit-saddr"]
    return out


def _comment(text):
    if "\n" in text or "\r" in text or len(text.encode("utf-8", "surrogateescape")) > 255:
        raise ResolveError(
            "comment %r cannot be used: it must be one line of at most 255 bytes in UTF-8" % text,
            comment=text,
        )
    return P.quote(text)


def _ipt_table(tool, nic_list) -> TableState:
    chains: Dict[str, Chain] = {}
    glob = {name: [] for name in _names.NWF_GLOBAL}
    for dev, nic in nic_list:
        for name, lines in nic.items():
            chains[name] = Chain(name, lines)
        fi, fo, hi = (_names.ipt_nic(kind, dev, tool) for kind in ("FI", "FO", "HI"))
        glob[_names.NWF_IN].append("-m physdev --physdev-in %s -g %s" % (dev, fi))
        glob[_names.NWF_OUT].append("-m physdev --physdev-out %s --physdev-is-bridged -g %s" % (dev, fo))
        glob[_names.NWF_HOST_IN].append("-m physdev --physdev-in %s -g %s" % (dev, hi))
        # DELIBERATE DIFFERENCE from libvirt (security fix): accept only bridged traffic here, so
        # traffic a guest sends to be routed by the host still meets the network's own chains.
        glob[_names.NWF_IN_POST].append("-m physdev --physdev-in %s --physdev-is-bridged -j ACCEPT" % dev)
    for name, lines in glob.items():
        chains[name] = Chain(name, tuple(lines))
    hooks = (("FORWARD", "-j " + _names.NWF_IN), ("FORWARD", "-j " + _names.NWF_OUT),
             ("FORWARD", "-j " + _names.NWF_IN_POST), ("INPUT", "-j " + _names.NWF_HOST_IN))
    return TableState(tool, "filter", chains, hooks)


# ---------------------------------------------------------------- drop_unbound_taps

def add_unbound_drop(ruleset, taps):
    """Ruleset plus the fail-closed rule: frames from any vnet* tap without a binding are dropped.

    Every bound tap must jump away before the DROP.  A tap whose filter has no from-guest
    ebtables rules (an iptables-only filter) gets an empty root chain: its ACCEPT policy lets the
    frame on to the filter's other layers.
    """
    state = ruleset.get(("eb", "nat")) or TableState("eb", "nat")
    chains = dict(state.chains)
    pre = [rule for chain, rule in state.hooks if chain == "PREROUTING"]
    post = [(chain, rule) for chain, rule in state.hooks if chain != "PREROUTING"]
    jumped = {rule.split()[1] for rule in pre}
    for tap in sorted(set(taps) - jumped):
        root = _names.eb_root("I", tap)
        chains[root] = Chain(root, (), "ACCEPT")
        pre.append("-i %s -j %s" % (tap, root))
    pre.append(_names.UNBOUND_TAP_DROP)  # the parser knows it as ours by this exact text (see _names)
    result = dict(ruleset)
    result[("eb", "nat")] = TableState("eb", "nat", chains, tuple(("PREROUTING", r) for r in pre) + tuple(post))
    return result
