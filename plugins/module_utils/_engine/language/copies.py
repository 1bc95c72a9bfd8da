# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt's semantics of a resolved rule that every backend shares.

- Layer 2 or layer 3/4: protocols ``mac``, ``vlan``, ``stp``, ``arp``, ``rarp``, ``ip``, ``ipv6``
  (and none) are filtered at the bridge; every other protocol (``tcp``, ``udp-ipv6``, ``all``...)
  by IP, per family.
- The copies of a layer 3/4 rule (libvirt's iptablesCreateRuleInstance and its state control):
  up to three, one per chain kind, FI (traffic from the guest), FO (traffic to the guest, seen
  the other way round) and HI (traffic from the guest to the host), each with the connection
  states it matches and what its accept does (FI/HI return to the caller, FO accepts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .model import RuleInstance
from .values import ct_states

L2_PROTOCOLS = ("mac", "vlan", "stp", "arp", "rarp", "ip", "ipv6")
COPY_KINDS = ("FI", "FO", "HI")


class RuleView:
    """A rule instance with its attributes merged into {name: (value, negated)}."""

    def __init__(self, inst: RuleInstance):
        self.inst = inst
        self.attrs: Dict[str, Tuple[str, bool]] = {}
        for match in inst.matches:
            for key, value in match.attrs:
                # repeated elements of one protocol are ANDed; a repeated attribute: last wins
                self.attrs[key] = (value, match.negate)

    def val(self, name) -> Optional[str]:
        item = self.attrs.get(name)
        return item[0] if item else None

    def negated(self, name) -> bool:
        item = self.attrs.get(name)
        return bool(item and item[1])

    def has(self, name) -> bool:
        return name in self.attrs

    @property
    def protocol(self):
        return self.inst.protocol

    @property
    def is_l2(self):
        return is_l2(self.protocol)


def is_l2(protocol) -> bool:
    return protocol is None or protocol in L2_PROTOCOLS


def family_of(protocol) -> str:
    """'ip4' or 'ip6': the IP family a layer 3/4 protocol filters."""
    return "ip6" if protocol.endswith("-ipv6") or protocol == "icmpv6" else "ip4"


@dataclass(frozen=True)
class Copy:
    """One copy of a layer 3/4 rule.

    ``reply``: the copy sees the traffic in the rule's ``in`` sense (its src/dst swap);
    ``states``: canonical connection states to match (``NEW,ESTABLISHED``) or None;
    ``default_match``: the states are libvirt's default ones, not the rule's own;
    ``accept``: what the rule's accept does in this chain (``return`` or ``accept``);
    ``skips_icmp_type``: libvirt leaves out an ICMP rule with a type in this copy.
    """

    kind: str
    reply: bool
    states: Optional[str]
    default_match: bool
    accept: str
    skips_icmp_type: bool


def l3_copies(rule: RuleView) -> List[Copy]:
    """The copies libvirt makes of a layer 3/4 rule, in chain-kind order."""
    direction = rule.inst.direction
    d_in = direction in ("in", "inout")
    inout = direction == "inout"
    state = rule.val("state")
    if rule.inst.statematch and state:
        shown = None if "NONE" in state.upper().split(",") else ct_states(state)
        copies = []
        if not (d_in and not inout):
            copies.append(Copy("FI", d_in, shown, False, "return", d_in or inout))
        if d_in:
            copies.append(Copy("FO", not d_in, shown, False, "accept", not d_in or inout))
        if not (d_in and not inout):
            copies.append(Copy("HI", d_in, shown, False, "return", d_in))
        return copies
    need = rule.inst.statematch and not inout
    mine = ("ESTABLISHED" if d_in else "NEW,ESTABLISHED") if need else None
    theirs = ("NEW,ESTABLISHED" if d_in else "ESTABLISHED") if need else None
    return [
        Copy("FI", d_in, mine, True, "return", d_in or inout),
        Copy("FO", not d_in, theirs, True, "accept", not d_in or inout),
        Copy("HI", d_in, mine, True, "return", d_in),
    ]
