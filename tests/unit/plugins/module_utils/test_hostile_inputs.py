# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A corpus of hostile inputs for every module action.

Each case must raise one of the engine's typed errors (anything else is a bug), with a message
that names the object and says what to do, and must leave the store directory and the
(simulated) kernel byte-identical.
"""

import json
import os
import re
from dataclasses import dataclass
from typing import Callable, Tuple

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import names as _names  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import (
    DeviceNameError, EngineError, FilterXMLError, ResolveError, StoreError, VariableError,
)
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import hostile_host as H

# Every case id belongs to exactly one class below, and its message must carry that class's concrete
# fix: the instruction, or the exact valid form (range, value list, format) the input must take.
_STRICT = r"not accepted in strict mode: correct it, or set strict to false to accept it with a warning"
_VALID_FORM = (r"is out of range \d+-\d+$|\(expected (decimal|aa:bb:cc:dd:ee:ff|true or false|one of .+ or |8-4-4-4-12)"
               r"|is not an IPv[46] address$|is not a contiguous (MAC mask \(ones, then zeros\)|netmask)$"
               r"|is not a list of NEW, ESTABLISHED|is not a list of FIN, SYN|is not MASK/FLAGS \(e\.g\. 'SYN,ACK/SYN'\)"
               r"|is not an ipset name \(1-31 of |is not 1 to 6 comma-separated src/dst flags$"
               r"|bytes the kernel keeps: shorten it \(a non-ASCII character takes 2 to 4 bytes\)$|is not a string$")
_DEVICE = r"use 1 to 15 characters from A-Z, a-z, 0-9, '_', '\.', '-' \(no '\+', '/', spaces or quotes\)"
FIXES = (
    (r"xml-(empty|blank|text|unclosed|mismatch|two-roots|bad-attr|nul|undefined-entity|bad-utf8|deep|cdata-only"
     r"|lowercase-doctype)|binding-xml-lowercase-doctype", r"\): fix the document$"),
    (r"xml-wrong-root", r"expected <filter>$"),
    (r"xml-(no|slash|empty)-name", r": give a non-empty name without '/'$"),
    (r"(binding-)?xml-(doctype|xxe-file|xxe-net|param-entity|billion-laughs)",
     r"; remove it \(DTDs and entities are not accepted\)$"),
    (r"xml-xinclude|strict-.*|rule-protocol-\d+", _STRICT),
    (r"binding-xml-xinclude", r"<portdev name='\.\.\.'> is required$"),
    (r"xml-huge(-comment)?", r"more than the limit of 1048576: split it$"),
    (r"(attr|type)-.*", _VALID_FORM),
    (r"rule-action-\d+", r"must be one of drop, reject, accept, return, continue$"),
    (r"rule-direction-\d+", r"must be one of in, out, inout$"),
    (r"entries-[0-2]", r"entries must be a list, got \w+$"),
    (r"entries-[34]", r"each entry needs exactly one key, 'rule' or 'filterref'"),
    (r"chain-0", r"is outside \[-1000, 1000\]: use a value in that range$"),
    (r"chain-1|chain-suffix-13", r"is longer than 12 characters$"),
    (r"chain-[23]", r"contains characters other than A-Z a-z 0-9 _ \. : -$"),
    (r"chain-4", r"use 'root' or a name starting with one of mac, vlan, stp, arp, rarp, ipv4, ipv6$"),
    (r"chain-5", r"chain name must be a non-empty string$"),
    (r"uuid-\d+", r"\(expected 8-4-4-4-12 hex digits\)$"),
    (r"uuid-conflict", r": drop the <uuid> element or use the existing uuid$"),
    (r"filterref-param-[03]", r"parameter name '.*' must be letters, digits and _$"),
    (r"filterref-param-\d+|clean-traffic-ip-[1235]|inject-ip-[013-7]|inject-comment-var-\d+",
     r"parameter \w+ value .* must be non-empty letters, digits, _ \. :$"),
    (r"name-mismatch", r": use the same name in both$"),
    (r"filter-name-\d+", r": use up to 128 characters from A-Z a-z 0-9 _ \. : - \(not starting with '\.'\)$"),
    (r"var-[0-3]", r"\. Fix: pass V(, W)? in the binding parameters, and give every indexed list enough values$"),
    (r"var-4", r"\(set V to a valid value\)$"),
    (r"var-iterator-too-big", r"is above 1000: use a smaller one$"),
    (r"clean-traffic-ip-[046]|inject-ip-2", r"\(set IP to a valid value\)$"),
    (r"ipv6-family-\d+", r"\(set IPV6 to a valid value\)$"),
    (r"explosion", r": shorten the value lists or walk them in step \(same iterator\) instead of combining them$"),
    (r"cycle-\d+", r"forms a reference cycle: remove one of these references$"),
    (r"unknown-filter-binding|inject-filter-name-\d+",
     r"which is not defined on this host( \(did you mean '[a-z-]+'\?\))?: define it first \(e\.g\. with the "
     r"default_filters role\)$"),
    (r"unknown-ref-binding", r"\(did you mean 'no-ip-spoofing'\?\): define that filter first or fix the reference$"),
    (r"break-bound-filter", r": define that filter first or fix the reference$"),
    (r"undefine-(used|referenced)", r": remove those references first$"),
    (r"portdev(-list)?-9", r"a binding needs either portdev \(a fixed tap\) or domain"),
    (r"portdev(-list|-absent)?-(\d|1[0-4])|binding-xml-portdev-\d+", _DEVICE),
    (r"bridge-9", r"needs bridge \(or network_xml\): name the bridge device$"),
    (r"bridge-\d+|forward-dev-\d+|network-xml-bridge", _DEVICE + r"\): rename the device$"),
    (r"portdev-twice", r"is bound twice in one call: give each NIC once$"),
    (r"mac-[35]", r"binding of vnet2: mac is missing: give the guest NIC's MAC address \(virsh domiflist GUEST shows it\)$"),
    (r"mac-\d+", r"is not a MAC address \(write it as 52:54:00:12:34:56\)$"),
    (r"network-ipv4-(v6|range|prefix)", r": give an IPv4 address/prefix here$"),
    (r"network-ipv6-v4", r": give an IPv6 address/prefix here$"),
    (r"network-ipv4-text", r": write it like 192\.168\.122\.1/24$"),
    (r"network-mode", r": use one of isolated, nat, route, open$"),
    (r"network-ports-(order|range)", r": use 1 <= start < end <= 65535 \(default 1024-65535\)$"),
    (r"network-(ports-shape|nat-address)", r": give \[start, end\] or \{start: \.\.\., end: \.\.\.\}$"),
    (r"network-dhcp-type", r"not a boolean: use true or false$"),
    (r"network-name-(slash|newline)", r": give 1-255 characters without '/', control characters or surrounding spaces$"),
    (r"network-nat-v6-no-v6", r": set ipv6 or drop nat_ipv6$"),
    (r"network-route-no-ip", r": set ipv4 and/or ipv6$"),
    (r"network-dhcp-no-room", r": use an IPv4 prefix of /30 or shorter$"),
    (r"network-bridge-taken", r": one network per bridge; use another bridge or remove that network$"),
    (r"network-xml-malformed", r"\): fix the document$"),
    (r"network-xml-doctype", r"are not accepted: remove them$"),
    (r"network-xml-root", r": give a <network> document$"),
    (r"store-(format-foreign|format-missing|list)-\w+",
     r"written by another tool or version; move it away or point config_dir elsewhere$"),
    (r"store-unknown-key-\w+", r": remove them \(they were not written by this collection\)$"),
    (r"store-kind-not-map-\w+", r"must map names to XML text; restore it from a backup$"),
    (r"store-ledger-bad-\w+", r"the ledger is damaged \(.*\): restore the document from a backup$"),
    (r"store-(not-json|binary)-\w+", r"is not valid JSON \(.*\): restore it from a backup, or move it away and "
     r"re-run the playbook that defines this host$"),
    (r"store-dir-as-file-\w+", r"\(Is a directory\): fix its permissions, or remove it if it is not a file this "
     r"collection wrote$"),
    (r"store-entry-(bad-xml|doctype|binding-bad|network-bad)-\w+", r"is corrupt \(.*\): redefine or remove it$"),
    (r"store-entry-(wrong-name|binding-name)-\w+", r"describes '\w+': redefine or remove it$"),
    (r"store-entry-(not-text|name-newline)-\w+", r"is not a valid entry; remove it from the document$"),
    (r"config-dir-file", r"is not a directory: point config_dir at a directory$"),
    (r"inject-comment-newline", r"it must be one line of at most 255 bytes in UTF-8$"),
    (r"inject-ipset-space", r"contains whitespace; remove the whitespace$"),
)


def fix_for(case_id):
    """The fix phrase of the first class whose id pattern matches ``case_id`` (None: no class)."""
    for id_pattern, phrase in FIXES:
        if re.fullmatch(id_pattern, case_id):
            return phrase
    return None


MAC = "52:54:00:00:00:20"


@dataclass
class Case:
    id: str
    call: Callable  # (root, host) -> result
    errors: Tuple[type, ...]
    names: str  # the object the message must name
    setup: Tuple[Callable, ...] = ()  # successful calls before the snapshot


CASES = []


def case(*args, **kwargs):
    CASES.append(Case(*args, **kwargs))


def nwfilter(**kw):
    return lambda root, host: _actions.nwfilter(H.filter_params(root, **kw), False, host)


def nic(**kw):
    return lambda root, host: _actions.guest_nic_filter(H.nic_params(root, **kw), False, host)


def network(**kw):
    return lambda root, host: _actions.virt_network_fw(H.net_params(root, **kw), False, host)


def rule_xml(name, match, action="drop", direction="in", extra=""):
    return "<filter name='%s' chain='root'><rule action='%s' direction='%s'%s>%s</rule></filter>" % (
        name, action, direction, extra, match)


# ------------------------------------------------------------------ malformed XML, DTDs, size

MALFORMED = {
    "empty": "", "blank": "   \n", "text": "clean-traffic", "unclosed": "<filter name='x'>",
    "mismatch": "<filter name='x'><rule></filter>", "two-roots": "<filter name='x'/><filter name='y'/>",
    "bad-attr": "<filter name=x/>", "nul": "<filter name='x\x00'/>", "undefined-entity": "<filter name='&foo;'/>",
    "wrong-root": "<network><name>x</name></network>", "bad-utf8": b"<filter name='\xff\xfe'/>",
    "deep": "<filter name='deep'>" + "<rule>" * 3000 + "</rule>" * 3000 + "</filter>",
    "no-name": "<filter chain='root'/>", "slash-name": "<filter name='a/b'/>",
    "empty-name": "<filter name=''/>", "cdata-only": "<![CDATA[<filter name='x'/>]]>",
}
for key, text in MALFORMED.items():
    case("xml-%s" % key, nwfilter(xml=text), (FilterXMLError,), "")

ENTITY_ATTACKS = {
    "doctype": "<!DOCTYPE filter><filter name='x'/>",
    "xxe-file": "<!DOCTYPE f [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><filter name='&x;'/>",
    "xxe-net": "<!DOCTYPE f [<!ENTITY x SYSTEM 'http://192.0.2.1/x'>]><filter name='&x;'/>",
    "param-entity": "<!DOCTYPE f [<!ENTITY % p SYSTEM 'file:///etc/passwd'> %p;]><filter name='x'/>",
    "billion-laughs": "<!DOCTYPE l [<!ENTITY a 'lol'>" + "".join(
        "<!ENTITY %s '%s'>" % (chr(98 + i), ("&%s;" % chr(97 + i)) * 10) for i in range(9)) + "]><filter name='&j;'/>",
    "lowercase-doctype": "<!doctype filter><filter name='x'/>",
    "xinclude": "<filter name='x' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='/etc/passwd'/></filter>",
}
for key, text in ENTITY_ATTACKS.items():
    case("xml-%s" % key, nwfilter(xml=text, strict=True), (FilterXMLError,), "")
    case("binding-xml-%s" % key, nic(binding_xml=text.replace("filter", "filterbinding")), (FilterXMLError,), "")

HUGE = "<filter name='huge' chain='root'>" + "<rule action='drop' direction='in'/>" * 40000 + "</filter>"
case("xml-huge", nwfilter(xml=HUGE), (FilterXMLError,), "")
case("xml-huge-comment", nwfilter(xml="<filter name='x'><!--" + "x" * (2 << 20) + "--></filter>"), (FilterXMLError,), "")

# ------------------------------------------------------------------ strict mode

STRICT = {
    "filter-attr": "<filter name='s' colour='red'/>",
    "filter-element": "<filter name='s'><colour/></filter>",
    "rule-attr": rule_xml("s", "<tcp/>", extra=" colour='red'"),
    "rule-element": rule_xml("s", "<colour/>"),
    "match-attr": rule_xml("s", "<tcp colour='red'/>"),
    "ipv6-tcp-flags": rule_xml("s", "<tcp-ipv6 flags='SYN/SYN'/>"),
    "second-protocol": rule_xml("s", "<tcp/><udp/>"),
    "priority-range": rule_xml("s", "<tcp/>", extra=" priority='5000'"),
    "priority-text": rule_xml("s", "<tcp/>", extra=" priority='high'"),
    "statematch": rule_xml("s", "<tcp/>", extra=" statematch='maybe'"),
    "match-value": rule_xml("s", "<tcp match='maybe'/>"),
    "filterref-attr": "<filter name='s'><filterref filter='allow-arp' colour='red'/></filter>",
    "filterref-element": "<filter name='s'><filterref filter='allow-arp'><colour/></filterref></filter>",
    "second-uuid": "<filter name='s'><uuid>11111111-2222-3333-4444-555555555555</uuid>"
                   "<uuid>11111111-2222-3333-4444-555555555556</uuid></filter>",
    "priority-no-chain": "<filter name='s' priority='-100'/>",
}
for key, text in STRICT.items():
    case("strict-%s" % key, nwfilter(xml=text, strict=True), (FilterXMLError,), "'s'")
case("strict-dict-key", nwfilter(definition={"name": "s", "colour": "red"}, strict=True), (FilterXMLError,), "'s'")

# ------------------------------------------------------------------ every attribute type

BAD_VALUES = {
    ("tcp", "dstportstart"): ("65536", "-1", "port", "0x10000", "1.5", "", " ", "22 -j ACCEPT"),
    ("icmp", "type"): ("256", "-1", "echo", "0x100"),
    ("stp", "root-cost"): ("4294967296", "-5"),
    ("stp", "root-priority"): ("65536",),
    ("ip", "dscp"): ("64", "af11"),
    ("vlan", "vlanid"): ("4096", "-1"),
    ("tcp", "connlimit-above"): ("0x10", "70000"),
    ("mac", "srcmacaddr"): ("52:54:00:12:34", "zz:54:00:12:34:56", "10.0.0.1", "fe80::1", "52:54:00:12:34:56:78"),
    ("mac", "srcmacmask"): ("ff:00:ff:00:00:00", "ff:ff"),
    ("ip", "srcipaddr"): ("256.1.1.1", "fe80::1", "10.1", "52:54:00:12:34:56", "10.0.0.1/24"),
    ("ip", "srcipmask"): ("33", "255.0.255.0", "-1"),
    ("ipv6", "srcipaddr"): ("10.0.0.1", "fe80::zz", "1:2:3:4:5:6:7:8:9"),
    ("ipv6", "srcipmask"): ("129", "ffff::ffff"),
    ("mac", "protocolid"): ("0x5ff", "1500", "ethernet", "0x10000"),
    ("vlan", "encap-protocol"): ("0x3b", "foo"),
    ("arp", "opcode"): ("65536", "Bogus", "Request;"),
    ("arp", "arpsrcipaddr"): ("fe80::1",),
    ("arp", "gratuitous"): ("maybe", "2"),
    ("ip", "protocol"): ("256", "tcpx", "-1"),
    ("tcp", "state"): ("NEW,FOO", "established;drop", ""),
    ("tcp", "flags"): ("SYN", "FOO/SYN", "SYN/SYN/SYN", "SYN/FOO"),
    ("tcp", "ipset"): ("", "a" * 32, "a;b", "a$(reboot)"),
    ("tcp", "ipsetflags"): ("src,dst,src,dst,src,dst,src", "foo", ""),
    ("tcp", "comment"): ("c" * 256, "\u00e9" * 200, "\u20ac" * 100),
    ("ipv6", "type"): ("300",),
    ("tcp-ipv6", "srcipaddr"): ("192.0.2.1",),
}
for (proto, attr), values in BAD_VALUES.items():
    for number, value in enumerate(values):
        case("attr-%s-%s-%d" % (proto, attr, number),
             nwfilter(xml=rule_xml("bad", "<%s %s='%s'/>" % (proto, attr, value.replace("'", "&apos;")))),
             (FilterXMLError,), attr)

WRONG_TYPES = ([22], {"port": 22}, 2.5, None.__class__, b"22")
for number, value in enumerate(WRONG_TYPES):
    for proto, attr in (("tcp", "dstportstart"), ("ip", "srcipaddr"), ("mac", "srcmacaddr")):
        definition = {"name": "typed", "entries": [{"rule": {"action": "drop", "direction": "in", "matches": [
            {"protocol": proto, "attrs": {attr: value}}]}}]}
        case("type-%s-%s-%d" % (proto, attr, number), nwfilter(definition=definition), (FilterXMLError,), attr)

RULE_FIELDS = {"action": ("allow", ["drop"], None, 1), "direction": ("both", "", ["in"], None),
               "protocol": ({"a": 1}, ["tcp"], 6, "TCP")}
for field_name, values in RULE_FIELDS.items():
    for number, value in enumerate(values):
        rule = {"action": "drop", "direction": "in", "matches": [{"protocol": "tcp", "attrs": {}}]}
        if field_name == "protocol":
            rule["matches"][0]["protocol"] = value
        else:
            rule[field_name] = value
        case("rule-%s-%d" % (field_name, number), nwfilter(definition={"name": "typed", "entries": [{"rule": rule}]}, strict=True),
             (FilterXMLError,), "'typed'")
for number, value in enumerate(("x", {"a": 1}, 5, {"rule": {}, "filterref": {}}, {"nope": 1})):
    case("entries-%d" % number, nwfilter(definition={"name": "typed", "entries": value if number < 3 else [value]}),
         (FilterXMLError,), "typed")
for number, value in enumerate(("root", "mac-" + "x" * 9, "ipv4 x", "ipv4;x", "foo", "")):
    case("chain-%d" % number, nwfilter(xml="<filter name='chained' chain='%s'/>" % value) if number else
         nwfilter(xml="<filter name='chained' chain='root' priority='2000'/>"), (FilterXMLError,), "chain")
for number, value in enumerate(("not-a-uuid", "1234", "11111111-2222-3333-4444-55555555555g")):
    case("uuid-%d" % number, nwfilter(xml="<filter name='u'><uuid>%s</uuid></filter>" % value), (FilterXMLError,), "uuid")
case("uuid-conflict", nwfilter(xml="<filter name='allow-arp'><uuid>11111111-2222-3333-4444-555555555555</uuid></filter>"),
     (StoreError,), "allow-arp")
for number, (pname, pvalue) in enumerate((("I P", "1"), ("IP", "1 2"), ("IP", "a\nb"), ("$X", "1"), ("IP", ""),
                                          ("IP", "$(reboot)"), ("IP", "1;2"))):
    case("filterref-param-%d" % number,
         nwfilter(definition={"name": "p", "entries": [{"filterref": {"filter": "clean-traffic", "parameters": [
             {"name": pname, "value": pvalue}]}}]}), (FilterXMLError,), "parameter")
case("name-mismatch", nwfilter(name="other", xml="<filter name='x'/>"), (FilterXMLError,), "other")
for number, name in enumerate(("..x", "a b", "x" * 129, "a\nb", "-j ACCEPT")):
    case("filter-name-%d" % number, nwfilter(xml="<filter name='%s'/>" % name.replace("\n", "&#10;")),
         (StoreError, FilterXMLError), "name")

# ------------------------------------------------------------------ variables

V_FILTER = rule_xml("uses-v", "<ip srcipaddr='$V[2]'/><ip dstipaddr='$W[@1]'/>")
for number, params in enumerate(({}, {"V": []}, {"V": ["10.0.0.1", "10.0.0.2"], "W": "10.0.0.3"},
                                 {"W": "10.0.0.3"}, {"V": ["10.0.0.1"] * 2 + ["fe80::1"], "W": "1.1.1.1"})):
    case("var-%d" % number, nic(portdev="vnet2", mac=MAC, filter="uses-v", parameters=params),
         (VariableError, ResolveError), "vnet2", setup=(nwfilter(xml=V_FILTER),))
case("var-iterator-too-big", nwfilter(xml=rule_xml("it", "<ip srcipaddr='$V[@1001]'/>")), (FilterXMLError,), "it")
for number, params in enumerate(({"IP": "fe80::1"}, {"IP": "10.0.0.1 -j ACCEPT"}, {"IP": "10.0.0.1\nCOMMIT"},
                                 {"IP": ""}, {"IP": [None]}, {"IP": [{"a": 1}]}, {"IP": "0x0a000001"})):
    case("clean-traffic-ip-%d" % number, nic(portdev="vnet2", mac=MAC, filter="clean-traffic", parameters=params),
         (ResolveError, FilterXMLError), "vnet2")
case("explosion", nic(portdev="vnet2", mac=MAC, filter="uses-x",
                      parameters={"V": ["10.0.%d.%d" % (i // 250, i % 250) for i in range(1000)],
                                  "W": ["10.1.%d.%d" % (i // 250, i % 250) for i in range(1000)]}),
     (ResolveError,), "uses-x",
     setup=(nwfilter(xml=rule_xml("uses-x", "<ip srcipaddr='$V[@1]' dstipaddr='$W[@2]'/>")),))

# ------------------------------------------------------------------ references

for length in (1, 2, 5):
    names = ["cyc%d" % i for i in range(length)]
    refs = ["<filter name='%s'><filterref filter='%s'/></filter>" % (names[i], names[(i + 1) % length])
            for i in range(length)]
    case("cycle-%d" % length, nwfilter(xml=refs[-1]), (ResolveError,), names[-1],
         setup=tuple(nwfilter(xml=text) for text in refs[:-1]))
case("unknown-filter-binding", nic(portdev="vnet2", mac=MAC, filter="clean-trafic"), (ResolveError,), "clean-trafic")
case("unknown-ref-binding", nic(portdev="vnet2", mac=MAC, filter="typo"), (ResolveError,), "no-ip-spofing",
     setup=(nwfilter(xml="<filter name='typo'><filterref filter='no-ip-spofing'/></filter>"),))
case("break-bound-filter", nwfilter(xml="<filter name='web-in'><filterref filter='nowhere'/></filter>"),
     (ResolveError,), "vnet1")
case("undefine-used", nwfilter(name="clean-traffic", state="absent"), (ResolveError,), "clean-traffic")
case("undefine-referenced", nwfilter(name="allow-arp", state="absent"), (ResolveError,), "allow-arp",
     setup=(nwfilter(xml="<filter name='ref-arp'><filterref filter='allow-arp'/></filter>"),))

# ------------------------------------------------------------------ device names

BAD_DEVICES = ("abcdefghijklmnop", "vnet/0", "vnet+", "vnet 0", "vnet'0", 'vnet"0', "$(reboot)", "v;rm",
               "v\n0", "", "vnet0\x00", "-j ACCEPT", "*", "vnet0 ", 7)
for number, dev in enumerate(BAD_DEVICES):
    text = str(dev)
    case("portdev-%d" % number, nic(portdev=dev, mac=MAC, filter="clean-traffic"), (DeviceNameError, FilterXMLError),
         "portdev")
    case("portdev-list-%d" % number, nic(bindings=[dict(portdev=dev, mac=MAC, filter="clean-traffic")]),
         (DeviceNameError, FilterXMLError), "portdev")
    case("portdev-absent-%d" % number, nic(portdev=dev, state="absent"), (DeviceNameError,), "portdev")
    if isinstance(dev, str) and dev and "\x00" not in dev:
        portdev_xml = ("<filterbinding><portdev name='%s'/><mac address='%s'/><filterref filter='clean-traffic'/></filterbinding>"
                       % (text.replace("'", "&apos;").replace("\n", "&#10;").replace("\x00", ""), MAC))
        case("binding-xml-portdev-%d" % number, nic(binding_xml=portdev_xml), (DeviceNameError, FilterXMLError), "portdev")
    case("bridge-%d" % number, network(bridge=dev), (FilterXMLError, DeviceNameError), "bridge")
    case("forward-dev-%d" % number, network(name="fw", bridge="virbr9", ipv4="10.9.0.1/24", forward_dev=dev),
         (FilterXMLError, DeviceNameError), "forward_dev")
case("portdev-twice", nic(bindings=[dict(portdev="vnet2", mac=MAC, filter="clean-traffic")] * 2),
     (FilterXMLError,), "vnet2")
case("chain-suffix-13", nwfilter(xml="<filter name='long' chain='ipv4-abcdefgh'/>"), (FilterXMLError,), "ipv4-abcdefgh")

# ------------------------------------------------------------------ wrong families, MACs

for number, mac in enumerate(("10.0.0.1", "fe80::1", "52:54:00:12:34", "", "52-54-00-12-34-56-78", None, 5)):
    case("mac-%d" % number, nic(portdev="vnet2", mac=mac, filter="clean-traffic", parameters={"IP": "10.0.0.9"}),
         (FilterXMLError,), "vnet2" if mac else "mac")
for number, params in enumerate(({"IPV6": "10.0.0.1"}, {"IPV6": "52:54:00:12:34:56"})):
    case("ipv6-family-%d" % number, nic(portdev="vnet2", mac=MAC, filter="no-ipv6-spoofing", parameters=params),
         (ResolveError,), "vnet2")
NET_BAD = {
    "ipv4-v6": dict(ipv4="fd00::1/64"), "ipv6-v4": dict(ipv6="10.0.0.1/24"), "ipv4-range": dict(ipv4="300.1.1.1/24"),
    "ipv4-prefix": dict(ipv4="10.0.0.1/33"), "ipv4-text": dict(ipv4="ten"), "mode": dict(mode="bridge-all"),
    "ports-order": dict(nat_ports=[2000, 1000]), "ports-range": dict(nat_ports=[1, 70000]),
    "ports-shape": dict(nat_ports=[1]), "nat-address": dict(nat_address=["a"]), "dhcp-type": dict(dhcp="yes"),
    "name-slash": dict(name="a/b"), "name-newline": dict(name="a\nb"), "nat-v6-no-v6": dict(nat_ipv6=True),
    "route-no-ip": dict(mode="route", ipv4=None, dhcp=False), "dhcp-no-room": dict(ipv4="10.0.0.1/31"),
    "bridge-taken": dict(name="other"),
    "xml-malformed": dict(network_xml="<network><name>x</name>", bridge=None),
    "xml-doctype": dict(network_xml="<!DOCTYPE n><network><name>x</name></network>", bridge=None),
    "xml-root": dict(network_xml="<filter name='x'/>", bridge=None),
    "xml-bridge": dict(network_xml="<network><name>x</name><bridge name='v+'/></network>", bridge=None),
}
for key, overrides in NET_BAD.items():
    case("network-%s" % key, network(**overrides), (FilterXMLError, DeviceNameError, StoreError), "")

# ------------------------------------------------------------------ corrupt or foreign store


def store_file(relpath, data):
    def write(root, _host):
        path = os.path.join(root, "store", relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    return write


def store_dir(relpath):
    return lambda root, _host: os.makedirs(os.path.join(root, "store", relpath))


def edit_document(change):
    """Damage store.json the way a hand edit would: ``change`` gets the parsed document."""
    def write(root, _host):
        path = os.path.join(root, "store", "store.json")
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
        change(doc)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(doc, handle)
    return write


def _set(kind, name, text):
    return edit_document(lambda doc: doc[kind].__setitem__(name, text))


BINDING_ELSEWHERE = ("<filterbinding><portdev name='vnet8'/><mac address='%s'/><filterref filter='allow-arp'/>"
                     "</filterbinding>" % MAC)
# damage to the document itself: nothing can be known, every run refuses and names the file
CORRUPT = {
    "format-foreign": edit_document(lambda doc: doc.__setitem__("format", "firewalld 2")),
    "format-missing": edit_document(lambda doc: doc.pop("format")),
    "unknown-key": edit_document(lambda doc: doc.__setitem__("zones", {})),
    "kind-not-map": edit_document(lambda doc: doc.__setitem__("filters", [])),
    "ledger-bad": edit_document(lambda doc: doc.__setitem__("ledger", {"chains": [1]})),
    "not-json": store_file("store.json", b"{\"format\": "),
    "binary": store_file("store.json", bytes(range(256))),
    "list": store_file("store.json", b"[]"),
    "dir-as-file": lambda root, host: (os.unlink(os.path.join(root, "store", "store.json")),
                                       os.makedirs(os.path.join(root, "store", "store.json"))),
}
# damage to one entry: refused by every run that keeps it (fixing it is shown in test_store.py)
BROKEN_ENTRY = {
    "bad-xml": _set("filters", "x", "<filter name='x'"),
    "wrong-name": _set("filters", "x", "<filter name='y'/>"),
    "doctype": _set("filters", "x", "<!DOCTYPE x><filter name='x'/>"),
    "not-text": _set("filters", "x", 7),
    "binding-bad": _set("bindings", "vnet9", "<filterbinding/>"),
    "binding-name": _set("bindings", "vnet9", BINDING_ELSEWHERE),
    "network-bad": _set("networks", "n", "<network/>"),
    "name-newline": _set("bindings", "vnet9\n", BINDING_ELSEWHERE),
}
for key, damage in BROKEN_ENTRY.items():
    for action, call in (("filter", nwfilter(xml="<filter name='fresh'/>")),
                         ("nic", nic(portdev="vnet2", mac=MAC, filter="allow-arp"))):
        case("store-entry-%s-%s" % (key, action), call, (StoreError,), "store.json", setup=(damage,))
for key, damage in CORRUPT.items():
    for action, call in (("filter", nwfilter(xml="<filter name='fresh'/>")),
                         ("nic", nic(portdev="vnet2", mac=MAC, filter="allow-arp")),
                         ("info", lambda root, host: _actions.nwfilter_info(H.base_params(root)))):
        case("store-%s-%s" % (key, action), call, (StoreError,), "store.json", setup=(damage,))


def config_dir_is_file(root, _host):
    with open(os.path.join(root, "plain"), "w", encoding="utf-8") as handle:
        handle.write("not a directory\n")


def nwfilter_in_plain_file(root, host):
    params = dict(H.filter_params(root, xml="<filter name='fresh'/>"), config_dir=os.path.join(root, "plain"))
    return _actions.nwfilter(params, False, host)


case("config-dir-file", nwfilter_in_plain_file, (StoreError,), "plain", setup=(config_dir_is_file,))

# ------------------------------------------------------------------ injection through values

INJECT = ("10.0.0.1 -j ACCEPT", "10.0.0.1\n-A FORWARD -j ACCEPT", "COMMIT", "10.0.0.1\nCOMMIT\n*filter",
          "$(reboot)", "`reboot`", "10.0.0.1;reboot", "10.0.0.1\"")
for number, value in enumerate(INJECT):
    case("inject-ip-%d" % number, nic(portdev="vnet2", mac=MAC, filter="clean-traffic", parameters={"IP": value}),
         (ResolveError, FilterXMLError), "vnet2")
    if "\n" in value:
        case("inject-comment-var-%d" % number, nic(portdev="vnet2", mac=MAC, filter="comment-var",
                                                   parameters={"C": value}),
             (ResolveError, FilterXMLError), "", setup=(nwfilter(xml=rule_xml("comment-var", "<tcp comment='$C'/>")),))
    case("inject-filter-name-%d" % number, nic(portdev="vnet2", mac=MAC, filter=value), (ResolveError,), "")
case("inject-comment-newline", nwfilter(xml=rule_xml("web-in", "<tcp comment='a&#10;COMMIT'/>")), (ResolveError,), "comment")
case("inject-ipset-space", nwfilter(xml=rule_xml("web-in", "<tcp ipset='a b' ipsetflags='src'/>")), (ResolveError,), "")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("hostile-template"))
    host = H.FakeHost()
    H.populate(root, host)
    return root, host


def test_corpus_is_big_and_ids_unique():
    assert len(CASES) >= 200
    assert len({c.id for c in CASES}) == len(CASES)


def test_every_fix_class_is_used_and_no_case_is_left_out():
    used = {fix_for(c.id) for c in CASES}
    assert None not in used, [c.id for c in CASES if fix_for(c.id) is None]
    assert [phrase for _pattern, phrase in FIXES if phrase not in used] == []


@pytest.mark.parametrize("hostile", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused_cleanly(hostile, world, tmp_path):
    root = str(tmp_path)
    host = H.copy_world(world[0], world[1], root)
    for step in hostile.setup:
        step(root, host)
    before = H.snapshot(root, host)
    with pytest.raises(EngineError) as caught:
        hostile.call(root, host)
    err = caught.value
    assert isinstance(err, hostile.errors), "%s: %r" % (type(err).__name__, err.msg)
    assert hostile.names in err.msg, err.msg
    fix = fix_for(hostile.id)
    assert fix is not None, "case %s belongs to no class in FIXES: give its class a fix phrase" % hostile.id
    assert re.search(fix, err.msg), "%s: the fix %r is missing from %r" % (hostile.id, fix, err.msg)
    assert "Traceback" not in err.msg
    assert H.snapshot(root, host) == before


def test_device_name_checks_where_chain_names_are_built():
    dev = "abcdefghijklmno"
    assert len(_names.eb_sub("I", dev, "ipv4-abcdefg")) <= _names.MAX_CHAIN["eb"]
    with pytest.raises(DeviceNameError, match="shorter"):
        _names.eb_sub("I", dev, "ipv4-abcdefghi")
    with pytest.raises(DeviceNameError, match="shorter"):
        _names._checked("ip4", "FI-" + "x" * 26)
