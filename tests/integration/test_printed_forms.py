# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WHOLE attribute table through the real tools: every printed form is what the tools print.

Desired and live rules compare as text, so a value the compiler prints differently from
``*-save`` makes every run fail its read-back.  This test walks every (protocol, attribute) of
language/schema.PROTOCOLS with sample values of its datatype (edge values included: ICMP type
255, upper-case MACs, ethertype 0x600, hex numbers, masks written as dotted quads), plain and
negated, in both directions; it compiles them the way a binding is compiled (parse, resolve,
compile), restores the result in a fresh network namespace, saves it and compares every chain.
A datatype or attribute added to the schema without samples here fails the test.

Needs root and the nft-variant tools; about 2,500 rules in one namespace, one restore per tool.
"""

import os
import shutil
import subprocess
import uuid
from xml.sax.saxutils import quoteattr

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import resolve as _resolve  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import schema as S  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import Binding
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import compile as _compile_xt  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.printed import written_rule
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import TOOLS
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import render_table

_BINARIES = ("ip", "ipset", "ebtables-restore", "ebtables-save", "iptables-restore", "iptables-save",
             "ip6tables-restore", "ip6tables-save")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(any(shutil.which(b) is None for b in _BINARIES), reason="netfilter tools missing"),
]

# literal values as a filter's XML may give them, per datatype; edge values on purpose
SAMPLES = {
    S.MAC_ADDR: ["12:34:56:78:9A:BC", "ff:ff:ff:ff:ff:ff", "01:80:C2:00:00:00"],
    S.MAC_MASK: ["ff:ff:ff:00:00:00", "FF:FF:FF:FF:FF:FF", "fe:00:00:00:00:00"],
    S.IP_ADDR: ["10.1.2.3", "255.255.255.255"],
    S.IP_MASK: ["24", "255.255.0.0", "32"],
    S.IPV6_ADDR: ["2001:DB8::1", "::ffff:10.1.0.0", "fe80::1:2:3:4"],
    S.IPV6_MASK: ["64", "ffff:ffff::", "128"],
    S.UINT8: ["1", "255", "0x10"],
    S.UINT16: ["0", "65535", "0x600"],
    S.UINT16_DEC: ["1", "65535"],
    S.UINT32: ["0", "4294967295", "0x10000"],
    S.PORT: ["1", "65535", "0x50"],
    S.DSCP: ["0", "63", "0x2e"],
    S.VLAN_ID: ["0", "4094", "0xa"],
    S.MAC_PROTOCOLID: ["arp", "0x601", "1537", "0x86dd", "0xffff", "ipv6", "vlan", "0x88cc", "0x9000"],
    S.VLAN_ENCAP: ["arp", "0x3c", "0x600", "0x86DD", "ipv4", "0xffff"],
    S.ARP_OPCODE: ["Request", "reply", "9", "0x3"],
    S.IP_PROTOCOL: ["tcp", "17", "33", "0", "255", "icmpv6", "sctp", "47"],
    S.STATE: ["NEW", "established,RELATED", "NONE", "INVALID,NEW"],
    S.TCP_FLAGS: ["SYN/SYN", "ALL/NONE", "SYN,ACK/ACK", "FIN,SYN,RST,PSH,ACK,URG/RST", "ACK/ALL"],
    S.BOOLEAN: ["true", "false"],
    S.IPSET_NAME: ["SET"],
    S.IPSET_FLAGS: ["src", "src,dst", "dst,src,dst"],
    S.COMMENT: ["plain", "with 'quotes' and \"doubles\"", "caf\u00e9 \u00fc"],
}
# attributes that only make sense with another one: (attribute) -> (companion, its value)
COMPANION = {
    "srcmacmask": ("srcmacaddr", "52:54:00:00:00:01"), "dstmacmask": ("dstmacaddr", "52:54:00:00:00:02"),
    "srcipmask": ("srcipaddr", None), "dstipmask": ("dstipaddr", None),
    "arpsrcipmask": ("arpsrcipaddr", "10.9.8.7"), "arpdstipmask": ("arpdstipaddr", "10.9.8.6"),
    "root-address-mask": ("root-address", "52:54:00:00:00:03"),
    "sender-address-mask": ("sender-address", "52:54:00:00:00:04"),
    "srcportend": ("srcportstart", "1"), "dstportend": ("dstportstart", "1"),
    "srcipto": ("srcipfrom", None), "dstipto": ("dstipfrom", None),
    "typeend": ("type", "0"), "codeend": ("code", "0"),
    "ipsetflags": ("ipset", "SET"),
}
# the lowest value of a range's end that is not below its start
_IP_LOW = {4: "0.0.0.1", 6: "::1"}
SETS = {4: "hfwset4", 6: "hfwset6"}


def _version(protocol):
    return 6 if protocol == "ipv6" or protocol.endswith("-ipv6") or protocol == "icmpv6" else 4


def _extra(protocol, attr):
    """What the tools need besides the attribute: ports need a port protocol, ICMP codes a type."""
    if protocol in ("ip", "ipv6") and attr in S.PORT_ATTRS:
        return {"protocol": "tcp"}
    if protocol == "ipv6" and attr in ("type", "typeend", "code", "codeend"):
        return {"protocol": "icmpv6"}
    if protocol in ("icmp", "icmpv6") and attr == "code":
        return {"type": "3"}
    return {}


def _companion(protocol, attr):
    name, value = COMPANION.get(attr, (None, None))
    if name is None:
        return {}
    if value is None:
        value = {4: "10.1.0.0", 6: "2001:db8::"}[_version(protocol)] if name.endswith("ipaddr") \
            else _IP_LOW[_version(protocol)]
    return {name: value}


def _value(protocol, attr, datatype, value):
    if datatype == S.IPSET_NAME:
        return SETS[_version(protocol)]
    return value


def attribute_cases():
    """(protocol, attr, value, negate, direction[, other attributes]) over the whole table."""
    missing = sorted({datatype for attrs in S.PROTOCOLS.values() for _n, datatype in attrs} - set(SAMPLES))
    assert not missing, "no samples for datatype(s) %s: add them to SAMPLES" % missing
    for protocol, attrs in S.PROTOCOLS.items():
        for attr, datatype in attrs:
            for value in SAMPLES[datatype]:
                # a negated element negates its protocol too: refused for ports and ICMPv6 types
                for negate in (False, True) if "protocol" not in _extra(protocol, attr) else (False,):
                    for direction in ("in", "out"):
                        yield protocol, attr, _value(protocol, attr, datatype, value), negate, direction
    # 0x0600 prints as 'Length' (and its negation the same way, so that one is refused)
    for value in ("0x600", "1536"):
        for direction in ("in", "out"):
            yield "mac", "protocolid", value, False, direction
    # ICMP type 255 is iptables' wildcard whatever the code
    for protocol in ("icmp", "icmpv6"):
        for code in ("0", "5", "255"):
            for negate in (False, True):
                yield protocol, "code", code, negate, "out", {"type": "255"}


def _rule_xml(protocol, attr, value, negate, direction, given=None):
    attrs = dict(_extra(protocol, attr), **_companion(protocol, attr))
    attrs.update(given or {})
    if attr == "ipsetflags":
        attrs["ipset"] = SETS[_version(protocol)]
    attrs[attr] = value
    text = " ".join("%s=%s" % (name, quoteattr(val)) for name, val in attrs.items())
    match = " match='no'" if negate else ""
    return "<rule action='accept' direction='%s'><%s%s %s/></rule>" % (direction, protocol, match, text)


def compiled():
    """One NIC per protocol, every case of that protocol in its filter; the compiled ruleset."""
    by_protocol = {}
    for case in attribute_cases():
        by_protocol.setdefault(case[0], []).append(_rule_xml(*case))
    filters, bindings = {}, []
    for number, (protocol, rules) in enumerate(sorted(by_protocol.items())):
        name = "pf-%s" % protocol
        flt, _warnings = _filterxml.parse_filter_xml(
            "<filter name='%s' chain='root'>%s</filter>" % (name, "".join(rules)), strict=True)
        filters[name] = flt
        bindings.append(Binding("pf%02d" % number, "52:54:00:aa:00:%02x" % number, name, ()))
    insts = [_resolve.instantiate(b, filters) for b in bindings]
    return _compile_xt.compile_nics(insts), sum(len(r) for r in by_protocol.values())


@pytest.fixture(scope="module")
def netns():
    name = "hfwhfwpf-%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for version, set_name in SETS.items():
            run_in(name, ["ipset", "create", set_name, "hash:ip,port,ip", "family", "inet" if version == 4 else "inet6"])
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def run_in(ns, argv, stdin=None):
    proc = subprocess.run(["ip", "netns", "exec", ns] + argv, input=stdin, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, "%s failed: %s" % (argv, proc.stderr[:2000])
    return proc.stdout


def saved_rules(save_text, table):
    rules, current = {}, None
    for line in save_text.splitlines():
        if line.startswith("*"):
            current = line[1:]
        elif current == table and line.startswith("-A "):
            chain, _sep, rule = line[3:].partition(" ")
            rules.setdefault(chain, []).append(rule)
    return rules


def test_every_attribute_value_reads_back_in_its_printed_form(netns):
    ruleset, count = compiled()
    assert count > 2000
    assert "-p Length -j ACCEPT" in ruleset[("eb", "nat")].chains["libvirt-I-pf%02d" % sorted(S.PROTOCOLS).index("mac")].rules
    mismatches = []
    for (tool, table), state in sorted(ruleset.items()):
        save_bin, restore_bin = TOOLS[tool]
        run_in(netns, [restore_bin, "--noflush"], render_table(state, written=True))
        live = saved_rules(run_in(netns, [save_bin]), table)
        for name, chain in state.chains.items():
            got = live.get(name, [])
            if got != list(chain.rules):
                pairs = [(w, g) for w, g in zip(chain.rules, got) if w != g]
                mismatches.append("%s %s %s: %d vs %d rules; first differences:\n%s" % (
                    tool, table, name, len(chain.rules), len(got),
                    "\n".join("  want %s\n  got  %s" % pair for pair in pairs[:8])))
    assert not mismatches, "\n".join(mismatches)


def test_the_written_form_restores_to_the_printed_form_and_means_the_same(netns):
    """ebtables-save prints an exact ethertype 0x0600 as 'Length', which it reads back as 'below
    0x0600': the payload must say 0x600, while the comparison expects 'Length'."""
    assert written_rule("eb", "-p Length -j ACCEPT") == "-p 0x600 -j ACCEPT"
    run_in(netns, ["ebtables-restore", "--noflush"],
           "*nat\n:hfw-probe ACCEPT\n-A hfw-probe %s\n" % written_rule("eb", "-p Length -j ACCEPT"))
    assert saved_rules(run_in(netns, ["ebtables-save"]), "nat")["hfw-probe"] == ["-p Length -j ACCEPT"]
    listed = run_in(netns, ["nft", "list", "chain", "bridge", "nat", "hfw-probe"])
    assert "ether type 0x0600" in listed and "<" not in listed
