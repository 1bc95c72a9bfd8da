# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

import glob
import os
import shutil
import subprocess

import netaddr
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as fx  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import schema  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import FilterXMLError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import (
    Binding, Filter, FilterRef, Match, Rule)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "filterxml")
SHIPPED = sorted(glob.glob("/usr/share/libvirt/nwfilter/*.xml"))


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as handle:
        return handle.read()


def rule_xml(body, rule_attrs="action='accept' direction='out'"):
    return "<filter name='f'><rule %s>%s</rule></filter>" % (rule_attrs, body)


# ------------------------------------------------------------------ parsing


def test_fixture_parses_into_model():
    flt, warnings = fx.parse_filter_xml(fixture("web-guest.xml"))
    assert warnings == []
    assert flt.name == "web-guest" and flt.chain == "root" and flt.priority is None
    assert flt.uuid == "5c6d49af-b071-6127-b4ec-6f8ed4b55335"
    assert flt.entries[0] == FilterRef("clean-traffic", (("IP", "10.0.0.2"), ("IP", "10.0.0.3")))
    ssh = flt.entries[1]
    assert ssh.priority == 100 and ssh.statematch
    assert ssh.matches[0].attrs == (("srcipaddr", "$IP[@1]"), ("srcipmask", "24"),
                                    ("state", "NEW,ESTABLISHED"), ("dstportstart", "22"),
                                    ("comment", 'ssh & "admin"'))
    mac = flt.entries[2]
    assert not mac.statematch and mac.priority == 500
    assert mac.matches == (Match("mac", (("srcmacaddr", "52:54:00:ab:cd:01"),
                                         ("protocolid", "2048")), negate=True),)
    arp = flt.entries[3]
    assert [m.negate for m in arp.matches] == [False, True]
    assert arp.matches[0].get("opcode") == "1" and arp.matches[0].get("gratuitous") == "true"
    assert flt.entries[5] == Rule("drop", "inout", 1000, True, ())
    assert [r.protocol for r in flt.rules] == ["tcp", "mac", "arp", "ipv6", None]
    assert flt.references == ("clean-traffic",)


def test_variable_references_with_blanks_are_normalised_as_libvirt_prints_them():
    flt, warnings = fx.parse_filter_xml(rule_xml(
        "<tcp srcipaddr='$A[ 0]' dstipaddr='$B[  @0 ] ' srcportstart='$P[ @2 ]'/>"))
    assert warnings == []
    assert flt.rules[0].matches[0].attrs == (("srcipaddr", "$A[0]"), ("dstipaddr", "$B"),
                                             ("srcportstart", "$P[@2]"))
    text = fx.format_filter_xml(flt)
    assert "srcipaddr='$A[0]'" in text and "dstipaddr='$B'" in text and "srcportstart='$P[@2]'" in text
    assert fx.parse_filter_xml(text)[0] == flt


def test_fixture_formats_to_reviewed_canonical_xml():
    flt, warnings = fx.parse_filter_xml(fixture("web-guest.xml"))
    assert fx.format_filter_xml(flt) == fixture("web-guest.canonical.xml")


def test_chain_and_priority():
    flt, warnings = fx.parse_filter_xml("<filter name='a' chain='arp-ip' priority='-510'/>")
    assert (flt.chain, flt.priority) == ("arp-ip", -510)
    flt, warnings = fx.parse_filter_xml("<filter name='a' chain='ipv4'/>")
    assert (flt.chain, flt.priority) == ("ipv4", None)
    assert schema.chain_priority(flt.chain, flt.priority) == -700
    assert fx.format_filter_xml(flt) == "<filter name='a' chain='ipv4'>\n</filter>\n"


@pytest.mark.parametrize("doc,fragment", [
    ("<filter/>", "no usable name"),
    ("<filter name='a/b'/>", "no usable name"),
    ("<filter name='a' chain='tcp'/>", "filter 'a': invalid chain name 'tcp'"),
    ("<filter name='a' chain='ipv4' priority='x'/>", "not an integer"),
    ("<filter name='a' chain='ipv4' priority='1001'/>", "outside [-1000, 1000]"),
    ("<filter name='a'><uuid>nope</uuid></filter>", "malformed uuid"),
    ("<rule/>", "root element is <rule>"),
    ("<filter name='a'", "malformed XML"),
    (rule_xml("", "action='allow' direction='in'"), "rule 1: action 'allow'"),
    (rule_xml("", "action='drop'"), "direction None"),
    (rule_xml("", "direction='in'"), "action None"),
    (rule_xml("<ip srcipaddr='fe80::1'/>"), "filter 'f', rule 1, <ip srcipaddr>"),
    (rule_xml("<ip protocol='icmp' dstportstart='1'/>"), "port attributes need protocol"),
    (rule_xml("<ipv6 dstportstart='1'/>"), "port attributes need protocol"),
    (rule_xml("<tcp srcipaddr='$IP[x]'/>"), "malformed variable reference"),
    ("<filter name='a'><filterref/></filter>", "needs a filter name"),
    ("<filter name='a'><filterref filter='b'><parameter name='I-P' value='1'/></filterref>"
     "</filter>", "parameter name"),
    ("<filter name='a'><filterref filter='b'><parameter name='IP'/></filterref></filter>",
     "value None"),
    ("<filter name='a'><filterref filter='b'><parameter name='IP' value='1/8'/>"
     "</filterref></filter>", "value '1/8'"),
])
def test_invalid_documents(doc, fragment):
    for strict in (False, True):
        with pytest.raises(FilterXMLError) as err:
            fx.parse_filter_xml(doc, strict=strict)
        assert fragment in str(err.value)


def test_error_names_filter_rule_and_attribute():
    doc = ("<filter name='x'>" + "<rule action='accept' direction='in'/>" * 2
           + "<rule action='accept' direction='in'><tcp dstportstart='70000'/></rule></filter>")
    with pytest.raises(FilterXMLError) as err:
        fx.parse_filter_xml(doc)
    assert str(err.value) == ("filter 'x', rule 3, <tcp dstportstart>: '70000' is out of "
                              "range 0-65535")
    assert err.value.context["attribute"] == "dstportstart"


@pytest.mark.parametrize("body", [
    "<ip protocol='tcp' dstportstart='22'/>",
    "<ip protocol='17' srcportstart='53'/>",
    "<ipv6 protocol='sctp' dstportend='9'/>",
    "<ip protocol='33' dstportstart='1'/>",
    "<ip dstportstart='22'/><ip protocol='tcp'/>",
    "<ip protocol='$PROTO' dstportstart='22'/>",
])
def test_ports_with_port_protocol_are_accepted(body):
    flt, warnings = fx.parse_filter_xml(rule_xml(body))
    assert flt.rules[0].protocol in ("ip", "ipv6")


def test_variables_are_stored_as_written():
    flt, warnings = fx.parse_filter_xml(rule_xml("<tcp srcipaddr='$IP[2]' dstportstart='$PORTS[@1]'/>"))
    assert flt.rules[0].matches[0].attrs == (("srcipaddr", "$IP[2]"),
                                             ("dstportstart", "$PORTS[@1]"))


def test_statematch_and_match_spellings():
    for value, expected in (("0", False), ("false", False), ("False", False), ("1", True),
                            ("true", True)):
        flt, warnings = fx.parse_filter_xml(rule_xml("", "action='drop' direction='in' "
                                                         "statematch='%s'" % value))
        assert flt.rules[0].statematch is expected and warnings == []
    flt, warnings = fx.parse_filter_xml(rule_xml("<mac match='yes' srcmacaddr='$MAC'/>"))
    assert not flt.rules[0].matches[0].negate and warnings == []


# ------------------------------------------------------------------ lenient vs strict


def test_lenient_document_warns_like_libvirt_ignores():
    flt, warnings = fx.parse_filter_xml(fixture("lenient.xml"))
    assert (flt.chain, flt.priority) == ("root", None)
    first, second = flt.rules
    assert first.priority == 500 and first.statematch is True
    assert [m.protocol for m in first.matches] == ["tcp", "tcp"]
    assert first.matches[1] == Match("tcp", (("srcportstart", "1024"),), negate=False)
    assert second.matches[0].attrs == (("dstportstart", "22"),)
    expected = ["priority -300 ignored", "'flavour'", "<description>", "'colour' of <rule>",
                "'colour' of <tcp>", "<udp> ignored", "<tcp-options>", "match='maybe'",
                "priority '5000'", "statematch 'no'", "no TCP flags match for IPv6"]
    assert len(warnings) == len(expected)
    for fragment, warning in zip(expected, warnings):
        assert fragment in warning


@pytest.mark.parametrize("doc", [
    "<filter name='a' priority='5'/>",
    "<filter name='a' colour='red'/>",
    "<filter name='a'><description/></filter>",
    rule_xml("", "action='drop' direction='in' priority='1001'"),
    rule_xml("", "action='drop' direction='in' priority='high'"),
    rule_xml("", "action='drop' direction='in' statematch='no'"),
    rule_xml("<tcp/><udp/>"),
    rule_xml("<tcp colour='x'/>"),
    rule_xml("<tcp match='nope'/>"),
    rule_xml("<tcp-ipv6 flags='SYN/SYN'/>"),
    "<filter name='a'><uuid>5c6d49af-b071-6127-b4ec-6f8ed4b55335</uuid>"
    "<uuid>5c6d49af-b071-6127-b4ec-6f8ed4b55336</uuid></filter>",
])
def test_strict_turns_each_leniency_into_an_error(doc):
    flt, warnings = fx.parse_filter_xml(doc)
    assert len(warnings) == 1
    with pytest.raises(FilterXMLError, match="strict"):
        fx.parse_filter_xml(doc, strict=True)


# ------------------------------------------------------------------ hostile input


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<filter name='&lol3;'/>"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE filter [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<filter name='a'><rule action='accept' direction='in'><all comment='&xxe;'/></rule></filter>"""
DTD_ONLY = """<!DOCTYPE filter SYSTEM "http://example.invalid/nwfilter.dtd"><filter name='a'/>"""


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, EXTERNAL, DTD_ONLY, DTD_ONLY.encode()])
def test_dtd_and_entities_rejected(doc):
    with pytest.raises(FilterXMLError, match="DOCTYPE"):
        fx.parse_filter_xml(doc)


def test_oversize_rejected():
    doc = "<filter name='a'>%s</filter>" % ("<!-- pad -->" * 100000)
    with pytest.raises(FilterXMLError, match="more than the limit"):
        fx.parse_filter_xml(doc)


def test_non_text_rejected():
    with pytest.raises(FilterXMLError, match="must be text"):
        fx.parse_filter_xml(None)


def test_undefined_entity_is_an_error():
    with pytest.raises(FilterXMLError, match="malformed XML"):
        fx.parse_filter_xml("<filter name='&foo;'/>")


def test_bytes_with_declared_encoding():
    doc = "<?xml version='1.0' encoding='ISO-8859-1'?><filter name='caf\xe9'/>"
    flt, warnings = fx.parse_filter_xml(doc.encode("latin-1"))
    assert flt.name == "caf\xe9"
    flt, warnings = fx.parse_filter_xml(doc)  # str input: the declaration is overridden
    assert flt.name == "caf\xe9"


# ------------------------------------------------------------------ dict form


def test_dict_form_shape():
    flt, warnings = fx.parse_filter_xml(fixture("web-guest.xml"))
    data = fx.filter_to_dict(flt)
    assert data["entries"][0] == {"filterref": {"filter": "clean-traffic", "parameters": [
        {"name": "IP", "value": "10.0.0.2"}, {"name": "IP", "value": "10.0.0.3"}]}}
    mac_rule = data["entries"][2]["rule"]
    assert mac_rule == {"action": "drop", "direction": "out", "priority": 500,
                        "statematch": False, "matches": [{
                            "protocol": "mac", "match": False, "attrs": {
                                "srcmacaddr": "52:54:00:ab:cd:01", "protocolid": "ipv4"}}]}
    assert data["entries"][1]["rule"]["matches"][0]["attrs"]["dstportstart"] == 22
    assert data["entries"][3]["rule"]["matches"][0]["attrs"]["gratuitous"] is True
    assert "priority" not in data
    assert fx.filter_from_dict(data) == (flt, [])


def test_dict_form_accepts_yaml_natives():
    data = {"name": "web", "chain": "ipv4", "priority": -650, "entries": [
        {"rule": {"action": "accept", "direction": "in", "priority": "10",
                  "statematch": False, "matches": [
                      {"protocol": "tcp", "match": False,
                       "attrs": {"dstportstart": 22, "srcipaddr": "10.0.0.0",
                                 "srcipmask": "255.0.0.0"}}]}},
        {"rule": {"action": "drop", "direction": "inout"}},
        {"filterref": {"filter": "clean-traffic"}}]}
    flt, warnings = fx.filter_from_dict(data)
    assert warnings == []
    assert flt.priority == -650 and flt.uuid is None
    assert flt.entries[0] == Rule("accept", "in", 10, False, (Match("tcp", (
        ("srcipaddr", "10.0.0.0"), ("srcipmask", "8"), ("dstportstart", "22")), True),))
    assert flt.entries[1] == Rule("drop", "inout")
    assert flt.entries[2] == FilterRef("clean-traffic")


@pytest.mark.parametrize("data,fragment", [
    ([], "filter must be a mapping"),
    ({"name": "a", "entries": {}}, "entries must be a list"),
    ({"name": "a", "entries": [{"rule": {}, "filterref": {}}]}, "exactly one key"),
    ({"name": "a", "entries": [{"rule": {"action": "drop", "direction": "in",
                                         "matches": [{"protocol": "tcp",
                                                      "attrs": {"dstportstart": 70000}}]}}]},
     "filter 'a', rule 1, <tcp dstportstart>: '70000' is out of range"),
    ({"name": "a", "uuid": "x"}, "malformed uuid"),
])
def test_dict_form_errors(data, fragment):
    with pytest.raises(FilterXMLError) as err:
        fx.filter_from_dict(data)
    assert fragment in str(err.value)


def test_dict_form_unknown_keys_lenient_and_strict():
    data = {"name": "a", "colour": 1, "entries": [{"rule": {
        "action": "drop", "direction": "in", "matches": [
            {"protocol": "tcp", "attrs": {"dstportstart": 1}, "extra": 1}]}}]}
    flt, warnings = fx.filter_from_dict(data)
    assert len(warnings) == 2 and flt.rules[0].matches[0].get("dstportstart") == "1"
    with pytest.raises(FilterXMLError, match="strict"):
        fx.filter_from_dict(data, strict=True)


# ------------------------------------------------------------------ bindings


def test_binding_parse_and_format():
    binding = fx.parse_binding_xml(fixture("binding.xml"))
    assert binding == Binding(
        portdev="vnet0", mac="52:54:00:7b:35:93", filter="clean-traffic",
        parameters=(("MAC", "52:54:00:7b:35:93"), ("IP", "192.168.122.10")),
        owner_name="memtest", owner_uuid="d54df46f-1ab5-4a22-8618-4560ef5fac2c",
        linkdev="eth0")
    text = fx.format_binding_xml(binding)
    assert "<backend" not in text and "<linkdev name='eth0'/>" in text
    assert fx.parse_binding_xml(text) == binding


def test_binding_minimal_round_trip():
    binding = Binding(portdev="vnet3", mac="52:54:00:00:00:01", filter="f")
    text = fx.format_binding_xml(binding)
    assert "<owner>" not in text and "<filterref filter='f'/>" in text
    assert fx.parse_binding_xml(text) == binding


@pytest.mark.parametrize("doc,fragment", [
    ("<filterbinding><mac address='52:54:00:00:00:01'/><filterref filter='f'/>"
     "</filterbinding>", "<portdev name="),
    ("<filterbinding><portdev name='v'/><filterref filter='f'/></filterbinding>",
     "<mac address="),
    ("<filterbinding><portdev name='v'/><mac address='zz'/><filterref filter='f'/>"
     "</filterbinding>", "not a MAC address"),
    ("<filterbinding><portdev name='v'/><mac address='52:54:00:00:00:01'/>"
     "</filterbinding>", "<filterref"),
    ("<filter name='a'/>", "expected <filterbinding>"),
])
def test_binding_errors(doc, fragment):
    with pytest.raises(FilterXMLError) as err:
        fx.parse_binding_xml(doc)
    assert fragment in str(err.value)


# ------------------------------------------------------------------ shipped filters


def _validate(path, kind):
    return subprocess.run(["virt-xml-validate", path, kind], capture_output=True, text=True,
                          check=False)


@pytest.mark.skipif(not SHIPPED, reason="libvirt-daemon-config-nwfilter not installed")
@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_shipped_filter_round_trips(path):
    with open(path, encoding="utf-8") as handle:
        flt, warnings = fx.parse_filter_xml(handle.read(), strict=True)
    assert warnings == [] and flt.name == os.path.basename(path)[:-4]
    text = fx.format_filter_xml(flt)
    assert fx.parse_filter_xml(text, strict=True) == (flt, [])
    assert fx.format_filter_xml(fx.parse_filter_xml(text)[0]) == text
    assert fx.filter_from_dict(fx.filter_to_dict(flt), strict=True) == (flt, [])


@pytest.mark.skipif(not SHIPPED or not shutil.which("virt-xml-validate"),
                    reason="needs shipped filters and virt-xml-validate")
@pytest.mark.parametrize("path", SHIPPED + [os.path.join(FIXTURES, "rng-clean.xml")],
                         ids=os.path.basename)
def test_canonical_xml_passes_libvirt_schema(path, tmp_path):
    with open(path, encoding="utf-8") as handle:
        flt, warnings = fx.parse_filter_xml(handle.read())
    out = tmp_path / "filter.xml"
    out.write_text(fx.format_filter_xml(flt), encoding="utf-8")
    result = _validate(str(out), "nwfilter")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not shutil.which("virt-xml-validate"), reason="needs virt-xml-validate")
def test_binding_xml_passes_libvirt_schema(tmp_path):
    out = tmp_path / "binding.xml"
    out.write_text(fx.format_binding_xml(fx.parse_binding_xml(fixture("binding.xml"))))
    result = _validate(str(out), "nwfilterbinding")
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ property: round trips


def _mask_text(prefix, bits):
    return str(netaddr.IPAddress(((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1),
                                 4 if bits == 32 else 6))


def _uint(high):
    return st.integers(0, high).flatmap(
        lambda n: st.sampled_from([n, str(n), hex(n)]))


_MACS = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(
    lambda b: ":".join("%02X" % x for x in b))
_RAW = {
    schema.MAC_ADDR: _MACS,
    schema.MAC_MASK: st.integers(0, 48).map(
        lambda p: ":".join("%02x" % b for b in (((1 << 48) - (1 << (48 - p))).to_bytes(6,
                                                                                       "big")))),
    schema.IP_ADDR: st.integers(0, 2 ** 32 - 1).map(lambda n: str(netaddr.IPAddress(n, 4))),
    schema.IP_MASK: st.integers(0, 32).flatmap(
        lambda p: st.sampled_from([p, str(p), _mask_text(p, 32)])),
    schema.IPV6_ADDR: st.integers(0, 2 ** 128 - 1).map(
        lambda n: str(netaddr.IPAddress(n, 6)).upper()),
    schema.IPV6_MASK: st.integers(0, 128).flatmap(
        lambda p: st.sampled_from([p, _mask_text(p, 128)])),
    schema.UINT8: _uint(255),
    schema.UINT16: _uint(65535),
    schema.UINT16_DEC: st.integers(0, 65535),
    schema.UINT32: _uint(2 ** 32 - 1),
    schema.PORT: _uint(65535),
    schema.DSCP: _uint(63),
    schema.VLAN_ID: _uint(4094),
    schema.MAC_PROTOCOLID: st.one_of(st.sampled_from(["arp", "RARP", "ipv4", "ipv6", "vlan"]),
                                     st.integers(0x600, 0xFFFF).map(hex)),
    schema.VLAN_ENCAP: st.one_of(st.sampled_from(["arp", "ipv4"]), st.integers(0x3C, 0xFFFF)),
    schema.ARP_OPCODE: st.one_of(st.sampled_from(list(schema.ARP_OPCODES)),
                                 st.integers(0, 65535)),
    schema.IP_PROTOCOL: st.one_of(st.sampled_from(["tcp", "UDP", "esp", "icmpv6"]),
                                  st.integers(0, 255)),
    schema.STATE: st.lists(st.sampled_from(["NEW", "established", "RELATED", "INVALID", "NONE"]),
                           min_size=1, max_size=5).map(",".join),
    schema.TCP_FLAGS: st.tuples(*[st.lists(st.sampled_from(
        ["SYN", "ack", "URG", "PSH", "FIN", "RST", "ALL", "NONE"]), min_size=1, max_size=4)
        .map(",".join)] * 2).map("/".join),
    schema.BOOLEAN: st.booleans(),
    schema.IPSET_NAME: st.from_regex(r"[A-Za-z0-9_.:+ -]{1,31}", fullmatch=True),
    schema.IPSET_FLAGS: st.lists(st.sampled_from(["src", "DST"]), min_size=1, max_size=6)
    .map(",".join),
    # a literal comment cannot start with '$': that is a variable reference (or a malformed one)
    schema.COMMENT: st.text(st.characters(blacklist_categories=("Cs", "Cc"))
                            | st.sampled_from("\t\n&<>'\""), max_size=40).filter(lambda t: not t.startswith("$")),
}
_VARS = st.from_regex(r"\$[A-Za-z_][A-Za-z0-9_]{0,6}(\[[0-9]\]|\[@[0-9]\])?", fullmatch=True)


@st.composite
def _match(draw, protocol):
    attrs = list(schema.PROTOCOLS[protocol])
    if protocol in ("ip", "ipv6"):  # ports there need a port protocol; covered elsewhere
        attrs = [(n, t) for n, t in attrs if n not in schema.PORT_ATTRS]
    chosen = draw(st.lists(st.sampled_from(attrs), max_size=5, unique=True))
    values = {}
    for name, datatype in chosen:
        values[name] = draw(st.one_of(_RAW[datatype], _VARS) if draw(st.booleans())
                            else _RAW[datatype])
    return {"protocol": protocol, "match": draw(st.booleans()), "attrs": values}


@st.composite
def _rule(draw):
    protocol = draw(st.sampled_from(sorted(schema.PROTOCOLS)))
    matches = draw(st.lists(_match(protocol), max_size=2))
    return {"rule": {"action": draw(st.sampled_from(fx.ACTIONS)),
                     "direction": draw(st.sampled_from(fx.DIRECTIONS)),
                     "priority": draw(st.integers(-1000, 1000)),
                     "statematch": draw(st.booleans()), "matches": matches}}


_FILTERREF = st.builds(
    lambda name, params: {"filterref": {"filter": name, "parameters": [
        {"name": n, "value": v} for n, v in params]}},
    st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
    st.lists(st.tuples(st.from_regex(r"[A-Z_]{1,5}", fullmatch=True),
                       st.from_regex(r"[a-z0-9.:_]{1,8}", fullmatch=True)), max_size=3))


@st.composite
def _filter_dict(draw):
    chain = draw(st.sampled_from(["root", "mac", "arp-ip", "ipv4-x", "ipv6", "stp", None]))
    data = {"name": draw(st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True)),
            "entries": draw(st.lists(st.one_of(_rule(), _FILTERREF), max_size=6))}
    if chain is not None:
        data["chain"] = chain
        if draw(st.booleans()):
            data["priority"] = draw(st.integers(-1000, 1000))
    if draw(st.booleans()):
        data["uuid"] = draw(st.uuids()).hex
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_filter_dict())
def test_random_filters_round_trip(data):
    flt, warnings = fx.filter_from_dict(data, strict=True)
    assert warnings == [] and isinstance(flt, Filter)
    text = fx.format_filter_xml(flt)
    assert fx.parse_filter_xml(text, strict=True) == (flt, [])
    assert fx.format_filter_xml(fx.parse_filter_xml(text)[0]) == text
    assert fx.filter_from_dict(fx.filter_to_dict(flt), strict=True) == (flt, [])
