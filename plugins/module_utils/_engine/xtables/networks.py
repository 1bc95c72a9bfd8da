# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Virtual network firewall: libvirt's network driver rules (>= 5.1 private chains), pure.

compile_networks() gives, for language.network.Network objects, the
LIBVIRT_* chains the iptables backend of libvirt's network driver ends up with after starting the
networks in the given order: libvirt ``--insert``s every rule at the top of its chain, so each
chain holds the rules in the reverse of the order libvirt adds them, the last network first.
Rules are written in the form ``iptables-save`` prints them, because live rules compare as text.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from ..language import network as _network
from ..language.network import Network
from .names import NET_FILTER_CHAINS, NET_PRT
from .ruleset import Chain, Ruleset, TableState

_INP, _OUT, _FWX, _FWI, _FWO = "LIBVIRT_INP", "LIBVIRT_OUT", "LIBVIRT_FWX", "LIBVIRT_FWI", "LIBVIRT_FWO"
# (built-in chain, our chain) per table, in the order the jumps stand at the top of the built-in
_HOOKS = {
    "filter": (("INPUT", _INP), ("OUTPUT", _OUT), ("FORWARD", _FWX), ("FORWARD", _FWI), ("FORWARD", _FWO)),
    "nat": (("POSTROUTING", NET_PRT),),
    "mangle": (("POSTROUTING", NET_PRT),),
}
TABLE_KEYS = (("ip4", "filter"), ("ip6", "filter"), ("ip4", "nat"), ("ip6", "nat"),
              ("ip4", "mangle"), ("ip6", "mangle"))
_REJECT = {"ip4": "REJECT --reject-with icmp-port-unreachable", "ip6": "REJECT --reject-with icmp6-port-unreachable"}


# --------------------------------------------------------------------------- compile

def _rule(jump, src=None, dst=None, not_dst=None, iif=None, oif=None, proto=None, dport=None, match=None):
    """Rule text in iptables-save's order: -s, -d, -i, -o, -p, matches, -j."""
    parts = []
    for flag, value in (("-s", src), ("-d", dst), ("! -d", not_dst), ("-i", iif), ("-o", oif), ("-p", proto)):
        if value:
            parts.append("%s %s" % (flag, value))
    if dport:
        parts.append("-m %s --dport %d" % (proto, dport))
    if match:
        parts.append(match)
    parts.append("-j " + jump)
    return " ".join(parts)


def _service(tool, chain, bridge, proto, port):
    side = {"iif": bridge} if chain == _INP else {"oif": bridge}
    return (tool, "filter", chain, _rule("ACCEPT", proto=proto, dport=port, **side))


def _general_ipv4(net):
    """Added for every network with rules, even one without IPv4 (libvirt does the same)."""
    br = net.bridge
    ports = [(_INP, "tcp", 67), (_INP, "udp", 67), (_OUT, "tcp", 68), (_OUT, "udp", 68),
             (_INP, "tcp", 53), (_INP, "udp", 53), (_OUT, "tcp", 53), (_OUT, "udp", 53)]
    if net.tftp:
        ports += [(_INP, "udp", 69), (_OUT, "udp", 69)]
    out = [_service("ip4", chain, br, proto, port) for chain, proto, port in ports]
    return out + _catch_all("ip4", br)


def _catch_all(tool, br):
    return [(tool, "filter", _FWO, _rule(_REJECT[tool], iif=br)),
            (tool, "filter", _FWI, _rule(_REJECT[tool], oif=br)),
            (tool, "filter", _FWX, _rule("ACCEPT", iif=br, oif=br))]


def _general_ipv6(net):
    if not net.ipv6:
        return []
    ports = [(_INP, "tcp", 53), (_INP, "udp", 53), (_OUT, "tcp", 53), (_OUT, "udp", 53),
             (_INP, "udp", 547), (_OUT, "udp", 546)]
    return _catch_all("ip6", net.bridge) + [_service("ip6", c, net.bridge, p, n) for c, p, n in ports]


def _allow_out(tool, net, subnet):
    return (tool, "filter", _FWO, _rule("ACCEPT", src=subnet, iif=net.bridge, oif=net.forward_dev))


def _routing(tool, net, subnet):
    return [_allow_out(tool, net, subnet),
            (tool, "filter", _FWI, _rule("ACCEPT", dst=subnet, iif=net.forward_dev, oif=net.bridge))]


def _snat_target(tool, net, proto):
    ports = "%d-%d" % net.nat_ports if proto else ""
    if net.nat_address is None or tool != "ip4":
        return "MASQUERADE --to-ports %s" % ports if ports else "MASQUERADE"
    start, end = net.nat_address
    return "SNAT --to-source %s%s%s" % (start, "" if start == end else "-" + end, ":" + ports if ports else "")


def _masquerading(tool, net, subnet):
    dev = net.forward_dev
    related = _rule("ACCEPT", dst=subnet, iif=dev, oif=net.bridge, match="-m conntrack --ctstate RELATED,ESTABLISHED")
    out = [_allow_out(tool, net, subnet), (tool, "filter", _FWI, related)]
    for proto in (None, "udp", "tcp"):
        out.append((tool, "nat", NET_PRT, _rule(_snat_target(tool, net, proto), src=subnet, not_dst=subnet,
                                                oif=dev, proto=proto)))
    exempt = ([_network.BROADCAST] if tool == "ip4" else []) + [_network.MULTICAST[tool]]
    out += [(tool, "nat", NET_PRT, _rule("RETURN", src=subnet, dst=dest, oif=dev)) for dest in exempt]
    return out


def _ip_specific(net):
    out = []
    for tool, address in [("ip4", a) for a in net.ipv4] + [("ip6", a) for a in net.ipv6]:
        subnet = str(_network.netaddr.IPNetwork(address).cidr)
        if net.mode == "nat" and (tool == "ip4" or net.nat_ipv6):
            out += _masquerading(tool, net, subnet)
        elif net.mode in ("nat", "route"):
            # IPv6 of a NAT network is routed: there is nothing to masquerade behind
            out += _routing(tool, net, subnet)
    return out


def _network_inserts(net):
    """(tool, table, chain, rule) in the order libvirt inserts them for one network."""
    if net.mode == "open":
        return []
    # several addresses of a family each get their forwarding and NAT rules; the general ones
    # (host services, the bridge's catch-all) and the DHCP checksum fix are added once
    out = _general_ipv4(net) + _general_ipv6(net) + _ip_specific(net)
    if net.dhcp:
        # DHCP replies built on the host may carry a partial checksum some clients reject
        out.append(("ip4", "mangle", NET_PRT, _rule("CHECKSUM --checksum-fill", oif=net.bridge, proto="udp", dport=68)))
    return out


def compile_networks(networks: Sequence[Network]) -> Ruleset:
    """Desired LIBVIRT_* chains (six tables) for the networks, started in the given order.

    Open networks get no rule, and like libvirt we create no chain for them: without another
    network the result is empty."""
    _network.check_unique(networks)
    if all(net.mode == "open" for net in networks):
        return {}
    _network.need_netaddr()
    inserts = [item for net in networks for item in _network_inserts(net)]
    rules = defaultdict(list)
    for tool, table, chain, rule in reversed(inserts):
        rules[(tool, table, chain)].append(rule)
    ruleset = {}
    for tool, table in TABLE_KEYS:
        names = NET_FILTER_CHAINS if table == "filter" else (NET_PRT,)
        chains = {name: Chain(name, tuple(rules[(tool, table, name)])) for name in names}
        hooks = tuple((builtin, "-j " + chain) for builtin, chain in _HOOKS[table])
        ruleset[(tool, table)] = TableState(tool, table, chains, hooks)
    return ruleset
