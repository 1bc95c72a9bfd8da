# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Virtual network firewall on nftables: the tables libvirt >= 10.4 builds, pure.

Tables ``ip libvirt_network`` and ``ip6 libvirt_network``: a ``forward`` base chain jumping to
``guest_cross``, ``guest_input`` and ``guest_output`` (libvirt inserts the jumps, so they stand in
that order), and ``guest_nat`` at nat postrouting.  Rules follow libvirt's order (each one is
inserted at the top of its chain, so the last network comes first), from the same
language.network.Network objects as the xtables chains.

Deliberate differences from libvirt:
- interfaces are matched by name (``iifname``), not index (``iif``): we load the whole host's
  state at any time (boot, re-apply), also before libvirt creates a bridge, and an index goes
  stale when the bridge is re-created; ``iif`` of a missing device would fail the transaction.
- no counters (they would make the live tables differ from the desired ones on every read).
Like libvirt >= 10.4 there are no host INPUT/OUTPUT accepts: in nftables an ``accept`` only ends
its own base chain, so an accept here could not open the host's firewall anyway.  Likewise a
guest_output accept does not override another table's forward drop; a reject here is final.

The DHCP checksum fix is not a netfilter rule here (nftables cannot fill checksums): libvirt
uses ``tc ... action csum``; see dhcp_checksum_warning.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

from .tables import NETWORK_FAMILIES, NETWORK_NAME
from .writer import Chain, Hook, Match, Nat, Reject, Table, Verdict, quoted
from ..language import network as _network

_CHAINS = ("guest_output", "guest_input", "guest_cross")
_FORWARD = Hook("forward", "filter")
_NAT = Hook("postrouting", "srcnat", type="nat")


def _ifname(key, dev):
    return Match(key, quoted(dev)) if dev else None


def _rule(*statements):
    return tuple(st for st in statements if st is not None)


def _catch_all(tool, br):
    return [(tool, "guest_output", _rule(_ifname("iifname", br), Reject())),
            (tool, "guest_input", _rule(_ifname("oifname", br), Reject())),
            (tool, "guest_cross", _rule(_ifname("iifname", br), _ifname("oifname", br), Verdict("accept")))]


def _allow_out(tool, fam, net, subnet):
    return (tool, "guest_output", _rule(Match("%s saddr" % fam, subnet), _ifname("iifname", net.bridge),
                                        _ifname("oifname", net.forward_dev), Verdict("accept")))


def _routing(tool, fam, net, subnet):
    return [_allow_out(tool, fam, net, subnet),
            (tool, "guest_input", _rule(_ifname("iifname", net.forward_dev), Match("%s daddr" % fam, subnet),
                                        _ifname("oifname", net.bridge), Verdict("accept")))]


def _snat(tool, net, with_ports):
    ports = ":%d-%d" % net.nat_ports if with_ports else ""
    if net.nat_address is None or tool != "ip4":
        return Nat("masquerade", ports or None)
    start, end = net.nat_address
    return Nat("snat", "%s%s%s" % (start, "" if start == end else "-" + end, ports))


def _masquerading(tool, fam, net, subnet):
    dev = _ifname("oifname", net.forward_dev)
    related = _rule(_ifname("iifname", net.forward_dev), _ifname("oifname", net.bridge),
                    Match("%s daddr" % fam, subnet), Match("ct state", "established,related"), Verdict("accept"))
    out = [_allow_out(tool, fam, net, subnet), (tool, "guest_input", related)]
    away = (Match("%s saddr" % fam, subnet), Match("%s daddr" % fam, subnet, negate=True))
    for proto in (None, "udp", "tcp"):
        out.append((tool, "guest_nat", _rule(Match("meta l4proto", proto) if proto else None, *away, dev,
                                             _snat(tool, net, proto is not None))))
    exempt = (["255.255.255.255"] if tool == "ip4" else []) + [_network.MULTICAST[tool]]
    out += [(tool, "guest_nat", _rule(dev, Match("%s saddr" % fam, subnet), Match("%s daddr" % fam, dest),
                                      Verdict("return")))
            for dest in exempt]
    return out


def _ip_specific(net):
    out = []
    for tool, fam, address in [("ip4", "ip", a) for a in net.ipv4] + [("ip6", "ip6", a) for a in net.ipv6]:
        subnet = str(_network.netaddr.IPNetwork(address).cidr)
        if net.mode == "nat" and (tool == "ip4" or net.nat_ipv6):
            out += _masquerading(tool, fam, net, subnet)
        elif net.mode in ("nat", "route"):
            out += _routing(tool, fam, net, subnet)
    return out


def _network_inserts(net):
    """(tool, chain, rule) in the order libvirt inserts them for one network."""
    if net.mode == "open":
        return []
    general = _catch_all("ip4", net.bridge) + (_catch_all("ip6", net.bridge) if net.ipv6 else [])
    return general + _ip_specific(net)


def compile_networks(networks: Sequence[_network.Network]) -> Dict[Tuple[str, str], Table]:
    """{(family, 'libvirt_network'): Table} for the networks, started in the given order.

    Both tables exist (with empty chains) as soon as one network that is not open is declared, as
    with libvirt; open networks get no rule and need no table."""
    _network.check_unique(networks)
    if all(net.mode == "open" for net in networks):
        return {}
    _network.need_netaddr()
    rules: Dict[Tuple[str, str], List[tuple]] = defaultdict(list)
    for tool, chain, rule in reversed([item for net in networks for item in _network_inserts(net)]):
        rules[(tool, chain)].append(rule)
    tables = {}
    for tool, family in NETWORK_FAMILIES:
        forward = Chain("forward", tuple((Verdict("jump", name),) for name in reversed(_CHAINS)), _FORWARD)
        parts = [forward] + [Chain(name, tuple(rules[(tool, name)])) for name in _CHAINS]
        parts.append(Chain("guest_nat", tuple(rules[(tool, "guest_nat")]), _NAT))
        tables[(family, NETWORK_NAME)] = Table(family, NETWORK_NAME, tuple(parts))
    return tables


def dhcp_checksum_warning(networks, csum_available):
    """The warning for networks serving DHCP on nftables, or None.

    ``csum_available``: whether the kernel has ``tc`` action csum (CONFIG_NET_ACT_CSUM)."""
    bridges = sorted(net.bridge for net in networks if net.dhcp and net.mode != "open")
    if not bridges:
        return None
    if csum_available:
        why = "the nftables backend does not install libvirt's tc checksum filter"
    else:
        why = "this kernel has no 'tc action csum' (CONFIG_NET_ACT_CSUM is not set)"
    return ("DHCP on %s: %s, so DHCP replies the host builds may leave with a partial UDP checksum; "
            "most guests accept them, very old DHCP clients drop them (use backend 'xtables', whose "
            "CHECKSUM rule fixes them, for such guests)" % (", ".join(bridges), why))
