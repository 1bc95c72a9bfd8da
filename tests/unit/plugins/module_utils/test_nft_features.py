# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nft forms of the language features: compile goldens for every filter of the feature
battery (tests/lab/features.py) and the match texts themselves.

REGEN=1 rewrites the goldens; tests/integration/test_nft_features_roundtrip.py loads every
golden into the real nft and requires it to read back as written.
"""

import os

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import resolve as _resolve  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import Binding
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import compile_l2 as _compile_nft
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import converge as _converge
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import matches as M
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables.writer import Table as _Table, \
    render_rule, render_table
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ResolveError
from ansible_collections.hypervisor.firewall.tests.lab.features import FEATURES
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.golden import golden

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "nft_features")
NO_NFT_FORM = ("hfwf-arp-gratuitous",)


def compile_feature(feat, nics=1):
    filters = {}
    for xml in feat.filters:
        parsed = _filterxml.parse_filter_xml(xml)
        flt = parsed[0] if isinstance(parsed, tuple) else parsed
        filters[flt.name] = flt
    insts = []
    for index in range(nics):
        params = (("IP", "192.168.100.1%d" % index), ("IPV6", "fd00:100::1%d" % index)) + feat.parameters
        insts.append(_resolve.instantiate(Binding(portdev="vnet%d" % index, mac="52:54:00:00:00:%02x" % index,
                                                  filter=feat.name, parameters=params), filters))
    return _compile_nft.compile_nics(insts).tables


def render_tables(tables):
    return "".join(render_table(tables[key]) for key in sorted(tables))


def text(statements):
    """Statement(s) as nft prints them."""
    return render_rule(statements if isinstance(statements, (list, tuple)) else (statements,))


@pytest.mark.parametrize("feat", [f for f in FEATURES if f.name not in NO_NFT_FORM], ids=lambda f: f.name)
def test_feature_golden(feat):
    text = render_tables(compile_feature(feat, nics=2))
    assert text == golden(os.path.join(FIXTURES, feat.name + ".nft"), text)


def test_features_without_an_nft_form_are_refused_with_the_reason():
    for feat in FEATURES:
        if feat.name in NO_NFT_FORM:
            with pytest.raises(ResolveError, match="no nftables form for.*cannot compare the sender and target"):
                compile_feature(feat)


# -------------------------------------------------------------------------------- match texts

@pytest.mark.parametrize("spec, negate, printed", [
    ("SYN,ACK/SYN", False, "tcp flags syn / syn,ack"),
    ("SYN,ACK/SYN", True, "tcp flags != syn / syn,ack"),
    ("SYN,ACK/SYN,ACK", False, "tcp flags syn,ack / syn,ack"),
    ("ALL/NONE", False, "tcp flags ! fin,syn,rst,psh,ack,urg"),
    ("FIN,SYN/NONE", True, "tcp flags fin,syn"),
    ("ALL/ALL", False, "tcp flags fin,syn,rst,psh,ack,urg / fin,syn,rst,psh,ack,urg"),
    ("SYN/SYN", False, "tcp flags & syn == syn"),
    ("RST/RST", True, "tcp flags & rst != rst"),
])
def test_tcp_flags_in_nfts_printed_form(spec, negate, printed):
    assert text(M.tcp_flags(spec, negate)) == printed


def test_layer2_dscp_compares_the_whole_tos_byte_in_a_form_that_loads_back():
    assert text(M.tos("10")) == "@nh,8,8 0xa-0xa" and text(M.tos("10", True)) == "@nh,8,8 != 0xa-0xa"
    assert text(M.dscp("ip", "46")) == "ip dscp ef" and text(M.dscp("ip6", "3", True)) == "ip6 dscp != 0x03"


def test_icmpv6_layer2_defaults_follow_libvirts_driver():
    assert text(M.icmpv6_l2("128", "129", None, None)) == "icmpv6 type 128-129"
    assert text(M.icmpv6_l2("128", None, None, None)) == "icmpv6 type echo-request"
    assert text(M.icmpv6_l2("1", None, "3", "4")) == "icmpv6 type destination-unreachable icmpv6 code 3-4"
    assert text(M.icmpv6_l2(None, None, "4", None)) == "icmpv6 code port-unreachable"
    with pytest.raises(M.NoNftForm):
        M.icmpv6_l2("1", None, "4", None, negate=True)


def test_stp_fields_sit_at_their_802_1d_offsets():
    attrs = {"root-priority": ("0", False), "root-priority-hi": ("4096", False),
             "sender-address": ("52:54:00:aa:00:00", False), "sender-address-mask": ("ff:ff:ff:ff:00:00", False)}
    assert [text(st) for st in M.stp(attrs)] == ["@ll,112,24 0x424203", "@ll,160,8 0x0-0x0", "@ll,176,16 0x0-0x1000",
                                                 "@ll,288,48 & 0xffffffff0000 == 0x525400aa0000"]
    assert text(M.stp({"type": ("128", False)})) == "@ll,112,24 0x424203 @ll,160,8 0x80-0x80"


def test_masked_mac_and_ranges():
    assert text(M.masked_mac("ether saddr", "52:54:00:de:ad:01", "ff:ff:ff:ff:00:00")) == \
        "ether saddr & ff:ff:ff:ff:00:00 == 52:54:00:de:00:00"
    assert text(M.ip_range("ip saddr", "10.0.0.1", "10.0.0.1")) == "ip saddr 10.0.0.1"
    assert text(M.ip_range("ip6 daddr", "fd00::1", "fd00::2", True)) == "ip6 daddr != fd00::1-fd00::2"


def test_icmp_type_code_and_tcp_option_names():
    assert text(M.icmp(4, "3", "3")) == "icmp type destination-unreachable icmp code port-unreachable"
    assert text(M.icmp(6, "200", None, True)) == "icmpv6 type != 200"
    assert text(M.tcp_option("2")) == "tcp option maxseg exists"
    assert text(M.tcp_option("6", True)) == "tcp option 6 missing"


def test_connlimit_counts_per_port_and_source_address():
    assert text(M.connlimit("S", 4, "3")) == "add @S { meta mark . ip saddr ct count over 3 }"
    assert text(M.connlimit("S", 6, "3", negate=True)) == "add @S { meta mark . ip6 saddr ct count 3 }"
    declared = render_table(_Table("inet", "t", (M.connlimit_set("S", 6),)))
    assert "\t\ttype mark . ipv6_addr\n\t\tsize 65535\n\t\tflags dynamic\n" in declared


def test_dynamic_set_elements_are_state_not_rules():
    desired = "table inet t {\n\tset c {\n\t\ttype mark . ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic\n\t}\n}\n"
    live = desired.replace("dynamic\n", "dynamic\n\t\telements = { 0x48460001 . 10.0.0.1 ct count over 1 }\n")
    assert _converge.parse_table(live) == _converge.parse_table(desired)
    static = desired.replace("\t\tsize 65535\n\t\tflags dynamic\n", "")
    assert _converge.parse_table(static.replace("}\n}", "\telements = { 0x1 . 10.0.0.1 }\n\t}\n}")) != \
        _converge.parse_table(static)
