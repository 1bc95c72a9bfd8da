# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Printed forms (xtables/printed.py) and the rules the tools cannot show back, on fixtures.

tests/integration/test_printed_forms.py checks the whole attribute table against the real tools.
"""

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import resolve as _resolve  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ResolveError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import Binding
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import compile as _compile_xt  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import plan as _plan  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import printed as P  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import render_table


def compiled(body):
    flt, _warnings = _filterxml.parse_filter_xml("<filter name='f' chain='root'>%s</filter>" % body)
    inst = _resolve.instantiate(Binding("vnet0", "52:54:00:00:00:01", "f", ()), {"f": flt})
    return _compile_xt.compile_nics([inst])


def rules(ruleset, tool, table, chain):
    return list(ruleset[(tool, table)].chains[chain].rules)


@pytest.mark.parametrize("body,tool,table,chain,rule", [
    ("<rule action='accept' direction='out'><icmp type='255'/></rule>", "ip4", "filter", "FI-vnet0",
     "-p icmp -m icmp --icmp-type any"),
    ("<rule action='accept' direction='out'><icmp type='255' code='3'/></rule>", "ip4", "filter", "FI-vnet0",
     "-p icmp -m icmp --icmp-type any"),
    ("<rule action='accept' direction='out'><icmpv6 type='255' code='3'/></rule>", "ip6", "filter", "FI-vnet0",
     "-p ipv6-icmp -m icmp6 --icmpv6-type 255/3"),
    ("<rule action='accept' direction='in'><tcp srcmacaddr='12:34:56:78:9A:BC'/></rule>", "ip4", "filter",
     "FO-vnet0", "-p tcp -m mac --mac-source 12:34:56:78:9a:bc"),
    ("<rule action='accept' direction='out'><mac protocolid='0x600'/></rule>", "eb", "nat", "libvirt-I-vnet0",
     "-p Length -j ACCEPT"),
    ("<rule action='accept' direction='out'><mac protocolid='0x601'/></rule>", "eb", "nat", "libvirt-I-vnet0",
     "-p 0x601 -j ACCEPT"),
    ("<rule action='accept' direction='out'><arp arpsrcmacaddr='FF:FF:FF:FF:FF:FF'/></rule>", "eb", "nat",
     "libvirt-I-vnet0", "-p ARP --arp-mac-src ff:ff:ff:ff:ff:ff -j ACCEPT"),
    ("<rule action='accept' direction='out'><mac srcmacaddr='FF:FF:FF:FF:FF:FF'/></rule>", "eb", "nat",
     "libvirt-I-vnet0", "-s Broadcast -j ACCEPT"),
    ("<rule action='accept' direction='out'><stp root-address='01:80:c2:00:00:00'/></rule>", "eb", "nat",
     "libvirt-I-vnet0", "-d BGA --stp-root-addr 01:80:c2:00:00:00 -j ACCEPT"),
])
def test_printed_forms_are_what_the_tools_print(body, tool, table, chain, rule):
    got = rules(compiled(body), tool, table, chain)
    assert any(r.startswith(rule) for r in got), got


def test_the_payload_writes_0x600_where_the_printed_form_says_length():
    ruleset = compiled("<rule action='accept' direction='out'><mac protocolid='0x600'/></rule>")
    state = ruleset[("eb", "nat")]
    assert "-A libvirt-I-vnet0 -p Length -j ACCEPT" in render_table(state)
    assert "-A libvirt-I-vnet0 -p 0x600 -j ACCEPT" in render_table(state, written=True)
    payload = _plan.plan(ruleset, {}, {}).payload("eb")
    assert "-A libvirt-I-vnet0 -p 0x600 -j ACCEPT" in payload and "Length" not in payload
    assert P.written_rule("eb", "-p Length -j ACCEPT") == "-p 0x600 -j ACCEPT"
    assert P.written_rule("eb", "-p 0x601 -j ACCEPT") == "-p 0x601 -j ACCEPT"
    assert P.written_rule("ip4", "-p Length -j ACCEPT") == "-p Length -j ACCEPT"


@pytest.mark.parametrize("body,words", [
    ("<rule action='accept' direction='out'><mac match='no' protocolid='0x600'/></rule>", "'-p Length'"),
    ("<rule action='accept' direction='out'><mac match='no' protocolid='1536'/></rule>", "'-p Length'"),
    ("<rule action='accept' direction='out'><tcp flags='NONE/SYN'/></rule>", "mask NONE"),
    ("<rule action='accept' direction='out'><tcp option='0'/></rule>", "option kind from 1 to 255"),
    ("<rule action='accept' direction='out'><ip match='no' protocol='tcp' dstportstart='22'/></rule>", "ports"),
    ("<rule action='accept' direction='out'><ipv6 match='no' protocol='icmpv6' type='1'/></rule>", "ICMPv6"),
])
def test_rules_the_tools_cannot_show_back_are_refused_with_the_filter_named(body, words):
    with pytest.raises(ResolveError) as caught:
        compiled(body)
    assert "filter 'f'" in caught.value.msg and words in caught.value.msg
    assert caught.value.context["filter"] == "f"
