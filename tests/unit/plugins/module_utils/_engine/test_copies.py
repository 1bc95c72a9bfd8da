# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt's copies of a layer 3/4 rule, decided once for both backends (language/copies.py)."""

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import values as V
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.copies import (
    Copy, RuleView, family_of, is_l2, l3_copies)
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import (
    ResolvedMatch, RuleInstance)


def rule(direction, attrs=(), statematch=True, proto="tcp"):
    return RuleView(RuleInstance("f", "root", 0, 500, "accept", direction, statematch,
                                 (ResolvedMatch(proto, tuple(attrs), False),)))


def test_default_state_matches_follow_the_direction():
    assert l3_copies(rule("out")) == [
        Copy("FI", False, "NEW,ESTABLISHED", True, "return", False),
        Copy("FO", True, "ESTABLISHED", True, "accept", True),
        Copy("HI", False, "NEW,ESTABLISHED", True, "return", False)]
    assert [c.states for c in l3_copies(rule("in"))] == ["ESTABLISHED", "NEW,ESTABLISHED", "ESTABLISHED"]
    assert {c.states for c in l3_copies(rule("inout"))} == {None}
    assert {c.states for c in l3_copies(rule("out", statematch=False))} == {None}


def test_an_explicit_state_drops_the_copies_libvirt_leaves_out():
    copies = l3_copies(rule("in", [("state", "established,new")]))
    assert [(c.kind, c.states, c.default_match) for c in copies] == [("FO", "NEW,ESTABLISHED", False)]
    assert [c.kind for c in l3_copies(rule("inout", [("state", "NEW")]))] == ["FI", "FO", "HI"]
    assert {c.states for c in l3_copies(rule("out", [("state", "NONE")]))} == {None}


@pytest.mark.parametrize("proto, family", [("tcp", "ip4"), ("tcp-ipv6", "ip6"), ("icmpv6", "ip6"), ("all", "ip4")])
def test_family_of_a_layer34_protocol(proto, family):
    assert family_of(proto) == family and not is_l2(proto)


def test_canonical_values():
    assert V.port_bounds("0x16") == (22, 22) and V.port_bounds("20", "25") == (20, 25)
    assert V.ip_protocol("tcp") == "tcp" and V.ip_protocol("58") == "ipv6-icmp" and V.ip_protocol("253") == "253"
    assert V.masked_mac("52:54:00:AB:CD:EF") == ("52:54:00:ab:cd:ef", None)
    assert V.masked_mac("52:54:00:ab:cd:ef", "ff:ff:ff:00:00:00") == ("52:54:00:00:00:00", "ff:ff:ff:00:00:00")
    assert str(V.ip_network("10.1.2.3", "16")) == "10.1.0.0/16"
    assert V.address_text(V.ip_network("::ffff:10.1.0.0", None, 6).network_address) == "::ffff:10.1.0.0"
    assert V.ct_states("new,established,NEW") == "NEW,ESTABLISHED"
    with pytest.raises(ValueError):
        V.ip_network("fd00::1", None, 4)
