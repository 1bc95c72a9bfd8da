# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nftables compiler and planner: goldens (REGEN=1 rewrites them), sharing, parsing, backend."""

import dataclasses
import glob
import os

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import backend as _backend  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import compile_l2 as _compile_nft  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import converge as _nft  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import resolve as _resolve  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import (
    ApplyError, DeviceNameError, ResolveError, StoreError)
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import Binding
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables.writer import (
    Chain, Lookup, Set, Table, Verdict, render_table)
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.golden import golden

HERE = os.path.dirname(__file__)
FIXTURES = os.path.join(HERE, "fixtures", "nft")
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
TABLE = ("bridge", "hfw_nwfilter")


def _filters():
    out = {}
    for path in glob.glob(os.path.join(ROOT, "roles", "default_filters", "files", "*.xml")):
        with open(path, encoding="utf-8") as handle:
            parsed = _filterxml.parse_filter_xml(handle.read())
        flt = parsed[0] if isinstance(parsed, tuple) else parsed
        out[flt.name] = flt
    return out


FILTERS = _filters()


def _extra_filter(xml):
    parsed = _filterxml.parse_filter_xml(xml)
    return parsed[0] if isinstance(parsed, tuple) else parsed


def nic(index, name="clean-traffic", ips=None, filters=None):
    params = [("IP", ip) for ip in (ips or ["192.168.100.%d" % (10 + index)])]
    params += [("IPV6", "fd00::%d" % (index + 1)), ("DHCPSERVER", "192.168.100.1"),
               ("GATEWAY_MAC", "52:54:00:ff:00:01")]
    binding = Binding(portdev="vnet%d" % index, mac="52:54:00:00:00:%02x" % index, filter=name,
                      parameters=tuple(params))
    return _resolve.instantiate(binding, filters or FILTERS)


def table_text(insts):
    tables = _compile_nft.compile_nics(insts).tables
    return render_table(tables[TABLE]) if TABLE in tables else ""


GOLDEN = {
    "clean-traffic-1": lambda: [nic(0)],
    "clean-traffic-3": lambda: [nic(0), nic(1), nic(2)],
    "clean-traffic-ip-list": lambda: [nic(0, ips=["192.168.100.10", "192.168.100.99"]), nic(1)],
    "dhcp-ipv6": lambda: [nic(0, "allow-dhcp"), nic(1, "allow-dhcpv6"), nic(2, "no-ipv6-spoofing")],
    "gateway": lambda: [nic(0, "clean-traffic-gateway"), nic(1, "clean-traffic-gateway")],
}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden(case):
    text = table_text(GOLDEN[case]())
    assert text == golden(os.path.join(FIXTURES, case + ".nft"), text)


def _rule_lines(text):
    return [line for line in text.splitlines() if line.startswith("\t\t") and "elements" not in line
            and not line.startswith("\t\t\t") and not line.strip().startswith("type")]


def test_rule_count_does_not_grow_with_the_number_of_nics():
    few = _compile_nft.compile_nics([nic(i) for i in range(2)])
    many = _compile_nft.compile_nics([nic(i) for i in range(40)])
    assert few.rule_count == many.rule_count
    assert len(_rule_lines(render_table(few.tables[TABLE]))) == len(_rule_lines(render_table(many.tables[TABLE])))
    # and the per-NIC values are there: every tap in the dispatch map and in the MAC set
    text = render_table(many.tables[TABLE])
    assert all('"vnet%d" : jump out-root-' % i in text for i in range(40))
    assert all('52:54:00:00:00:%02x . "vnet%d"' % (i, i) for i in range(40))


def test_value_shared_by_every_nic_is_written_literally_and_differing_ones_go_to_sets():
    text = table_text([nic(0), nic(1)])
    assert "ip saddr 0.0.0.0 ip protocol udp return" in text  # same constant for both NICs
    assert "ip saddr . iifname @out-ipv4-ip-" in text          # $IP differs
    assert '192.168.100.10 . "vnet0"' in text and '192.168.100.11 . "vnet1"' in text


def test_one_nic_keeps_its_values_in_sets():
    text = table_text([nic(0)])
    assert "ether saddr . iifname @" in text and "52:54:00:00:00:00 . \"vnet0\"" in text


def test_ip_list_becomes_one_rule_with_one_element_per_address():
    text = table_text([nic(0, ips=["192.168.100.10", "192.168.100.99"]), nic(1)])
    assert text.count("ip saddr . iifname @") == 1  # 0.0.0.0, common to both NICs, is literal
    assert '192.168.100.10 . "vnet0"' in text and '192.168.100.99 . "vnet0"' in text


SPAM_PORT = ('<filter name="port-%s" chain="ipv4-x"><rule action="drop" direction="out">'
             '<ip protocol="tcp" dstportstart="$PORT"/></rule></filter>')


def test_nics_that_differ_in_a_value_sets_cannot_hold_get_their_own_chain_and_a_note():
    filters = dict(FILTERS)
    flt = _extra_filter(SPAM_PORT % "var")
    filters[flt.name] = flt
    insts = []
    for index, port in enumerate(("25", "587")):
        binding = Binding(portdev="vnet%d" % index, mac="52:54:00:00:00:0%d" % index, filter=flt.name,
                          parameters=(("PORT", port),))
        insts.append(_resolve.instantiate(binding, filters))
    result = _compile_nft.compile_nics(insts)
    text = render_table(result.tables[TABLE])
    assert "tcp dport 25 drop" in text and "tcp dport 587 drop" in text
    # the shared root dispatches to the per-NIC variant through an interface map
    assert "ether type ip iifname vmap @out-root-" in text
    assert any("2 variants for 2 NICs" in note for note in result.notes)


def test_inout_rule_is_reversed_for_frames_from_the_guest_like_xtables():
    flt = _extra_filter('<filter name="io"><rule action="accept" direction="inout">'
                        '<mac srcmacaddr="$MAC" dstmacaddr="ff:ff:ff:ff:ff:ff"/></rule></filter>')
    filters = dict(FILTERS, io=flt)
    text = table_text([nic(0, "io", filters=filters)])
    # xtables: I chain "-s Broadcast -d MAC", O chain "-s MAC -d Broadcast"; keys are daddr . saddr
    assert "ether daddr . ether saddr . iifname @" in text
    assert '52:54:00:00:00:00 . ff:ff:ff:ff:ff:ff . "vnet0"' in text.split("map to_guest")[0]
    assert 'ff:ff:ff:ff:ff:ff . 52:54:00:00:00:00 . "vnet0"' in text.split("map to_guest")[1]


@pytest.mark.parametrize("xml, what", [
    ('<rule action="drop" direction="out"><all ipset="blocked" ipsetflags="src"/></rule>', "ipset facility"),
    ('<rule action="drop" direction="out"><arp gratuitous="true"/></rule>', "gratuitous"),
    ('<rule action="drop" direction="out"><tcp flags="NONE/NONE"/></rule>', "empty mask"),
    ('<rule action="drop" direction="out"><ipv6 protocol="icmpv6" type="1" code="4" match="no"/></rule>',
     "split the rule"),
])
def test_unsupported_constructs_fail_clearly(xml, what):
    flt = _extra_filter('<filter name="u">%s</filter>' % xml)
    with pytest.raises(ResolveError) as info:
        table_text([nic(0, "u", filters=dict(FILTERS, u=flt))])
    assert what in info.value.msg and "no nftables form for" in info.value.msg and "backend 'xtables'" in info.value.msg


def test_bad_device_name_is_refused():
    inst = nic(0)
    with pytest.raises(DeviceNameError):
        _compile_nft.compile_nics([dataclasses.replace(inst, portdev="vnet+")])


def test_no_rules_no_table():
    assert _compile_nft.compile_nics([]).tables == {}


# ------------------------------------------------------------------------------ _nft

LIVE = """table bridge hfw_nwfilter {
\tset s {
\t\ttype ether_addr . ifname
\t\telements = { 52:54:00:00:00:02 . "vnet1",
\t\t\t     52:54:00:00:00:01 . "vnet0" }
\t}

\tset r {
\t\ttypeof @nh,48,16 . iifname
\t\telements = { 0x3 . "vnet0" }
\t}

\tchain c {
\t\tether saddr . iifname @s return
\t\taccept
\t}
}
"""
DESIRED = Table("bridge", "hfw_nwfilter", (
    Set("r", ("@nh,48,16", "iifname"), (("3", '"vnet0"'),), typeof=True),
    Set("s", ("ether_addr", "ifname"), (("52:54:00:00:00:01", '"vnet0"'), ("52:54:00:00:00:02", '"vnet1"'))),
    Chain("c", ((Lookup(("ether saddr", "iifname"), "s"), Verdict("return")), (Verdict("accept"),)))))


def test_parse_ignores_element_order_object_order_and_integer_spelling():
    assert _nft.parse_table(LIVE) == _nft.parse_table(render_table(DESIRED))
    assert _nft.plan({TABLE: DESIRED}, {TABLE: LIVE}).is_empty()


def test_a_changed_rule_replaces_the_table_in_one_transaction():
    chain = DESIRED.objects[2]
    changed = dataclasses.replace(DESIRED, objects=DESIRED.objects[:2] + (
        dataclasses.replace(chain, rules=((chain.rules[0][0], Verdict("drop")),) + chain.rules[1:]),))
    the_plan = _nft.plan({TABLE: changed}, {TABLE: LIVE})
    payload = the_plan.payload()
    assert payload.startswith("table bridge hfw_nwfilter\ndelete table bridge hfw_nwfilter\n")
    assert payload.endswith(render_table(changed)) and "@s drop" in payload
    assert the_plan.diff()[0]["before"] == LIVE and the_plan.diff()[0]["after"] == render_table(changed)


def test_an_empty_desired_state_deletes_only_our_table():
    payload = _nft.plan({}, {TABLE: LIVE}).payload()
    assert payload == "table bridge hfw_nwfilter\ndelete table bridge hfw_nwfilter\n"
    assert _nft.plan({}, {}).is_empty()


def test_unreadable_nft_output_is_an_error_not_an_empty_table():
    with pytest.raises(Exception) as info:
        _nft.parse_table("table bridge hfw_nwfilter {\n\tflowtable f {\n\t}\n}\n")
    assert "cannot read nft output" in str(info.value)


class FakeNft:
    """A kernel with one nft ruleset text per table; ``broken`` fails every -f."""

    def __init__(self, tables=None, broken=False, probe_ok=True):
        self.tables = dict(tables or {})
        self.broken, self.probe_ok, self.calls = broken, probe_ok, []

    def nft(self, args, data=None):
        self.calls.append(list(args))
        if args == ["list", "tables"]:
            return 0, "".join("table %s %s\n" % key for key in self.tables), ""
        if args[:2] == ["list", "table"]:
            if tuple(args[2:4]) not in self.tables:
                return 1, "", "Error: No such file or directory\nlist table %s %s\n" % tuple(args[2:4])
            return 0, self.tables[tuple(args[2:4])], ""
        if args[:1] == ["-c"]:
            return (0, "", "") if self.probe_ok else (1, "", "Error: Could not process rule: Operation not supported")
        if self.broken:
            return 1, "", "Error: syntax error"
        self.tables.pop(TABLE, None)
        if data.count("table ") > 2:
            self.tables[TABLE] = data.split("delete table bridge hfw_nwfilter\n", 1)[1]
        return 0, "", ""


def test_converge_applies_once_then_is_idempotent():
    kernel = FakeNft()
    assert _nft.converge({TABLE: DESIRED}, kernel).changed
    assert not _nft.converge({TABLE: DESIRED}, kernel).changed
    assert sum(1 for call in kernel.calls if call == ["-f", "-"]) == 1


def test_check_mode_plans_but_writes_nothing():
    kernel = FakeNft()
    result = _nft.converge({TABLE: DESIRED}, kernel, check_mode=True)
    assert result.changed and result.diff and ["-f", "-"] not in kernel.calls


def test_failed_apply_and_missing_kernel_features_fail_clearly():
    with pytest.raises(ApplyError) as info:
        _nft.converge({TABLE: DESIRED}, FakeNft(broken=True))
    assert "nothing was changed" in info.value.msg
    with pytest.raises(ApplyError) as info:
        _nft.converge({TABLE: DESIRED}, FakeNft(probe_ok=False))
    assert "backend 'xtables'" in info.value.msg


# ------------------------------------------------------------------------------ _backend


def test_backend_default_choice_and_record(tmp_path):
    config = str(tmp_path / "store")
    assert _backend.choose(config) == "xtables"
    assert _backend.record(config, "nftables", check_mode=True)
    assert _backend.choose(config) == "xtables"  # check mode wrote nothing
    assert _backend.record(config, "nftables", check_mode=False)
    assert _backend.choose(config) == "nftables" and _backend.choose(config, "xtables") == "xtables"
    assert not _backend.record(config, "nftables", check_mode=False)
    assert not _backend.record(config, None, check_mode=False)


def test_backend_file_with_garbage_is_refused(tmp_path):
    (tmp_path / "backend").write_text("iptables-legacy\n")
    with pytest.raises(StoreError):
        _backend.choose(str(tmp_path))
    with pytest.raises(StoreError):
        _backend.choose(str(tmp_path / "x"), "pf")


# ------------------------------------------------------------------------------ layer 3/4 rules

SSH_IN = ('<filter name="ssh-in"><rule action="accept" direction="in"><tcp dstportstart="22"/></rule>'
          '<rule action="reject" direction="inout"><all/></rule></filter>')


def _l3(count=3):
    filters = dict(FILTERS, **{"ssh-in": _extra_filter(SSH_IN)})
    return _compile_nft.compile_nics([nic(i, "ssh-in", filters=filters) for i in range(count)])


def test_layer34_copies_follow_the_xtables_chains():
    inet = _nft.parse_table(render_table(_l3().tables[("inet", "hfw_nwfilter")]))
    chains = {name.split("-")[0]: lines for (kind, name), lines in inet.items() if kind == "chain" and "-" in name}
    # FO (to the guest) accepts new SSH; FI and HI let the replies return; reject is stateless
    assert list(chains["FO"]) == [
        "meta nfproto ipv4 tcp dport 22 ct state established,new ct direction original accept",
        "reject with icmp port-unreachable"]
    assert list(chains["FI"]) == list(chains["HI"]) == [
        "meta nfproto ipv4 tcp sport 22 ct state established ct direction reply return",
        "reject with icmp port-unreachable"]
    assert inet[("chain", "prerouting")][1] == "fib daddr type local return"


def test_layer34_chains_are_shared_and_ports_dispatch_by_mark():
    few, many = _l3(2), _l3(30)
    assert few.rule_count == many.rule_count
    inet = render_table(many.tables[("inet", "hfw_nwfilter")])
    assert inet.count("\tchain FO-") == 1 and inet.count(": jump FO-") == 30
    marks = render_table(many.tables[("bridge", "hfw_nwfilter_mark")])
    number = sorted("vnet%d" % i for i in range(30)).index("vnet29") + 1
    assert '"vnet29" : 0x%08x' % (0x48460000 + number) in marks
    assert '"vnet29" : 0x%08x' % (0x48470000 + number) in marks
    assert any("layer 3/4" in note for note in many.notes)


def test_l2_only_filters_need_no_mark_table():
    assert set(_compile_nft.compile_nics([nic(0)]).tables) == {TABLE}


# layer 3/4 rules with per-NIC addresses ($IP), as clean-traffic-like filters have them
IP_L3 = ("<filter name='ip-l3'><rule action='accept' direction='out'><tcp srcipaddr='$IP' dstportstart='80'/></rule>"
         "<rule action='accept' direction='in'><udp srcipaddr='10.0.0.1' dstipaddr='$IP'/></rule>"
         "<rule action='drop' direction='inout'><all/></rule></filter>")


def _ip_l3(count, ips=None):
    filters = dict(FILTERS, **{"ip-l3": _extra_filter(IP_L3)})
    return _compile_nft.compile_nics([nic(i, "ip-l3", filters=filters, ips=(ips or {}).get(i)) for i in range(count)])


def test_layer34_rules_differing_only_in_host_addresses_share_chains_as_nics_grow():
    sizes = {count: _ip_l3(count) for count in (1, 2, 40)}
    assert sizes[2].rule_count == sizes[40].rule_count == sizes[1].rule_count
    inet = render_table(sizes[40].tables[("inet", "hfw_nwfilter")])
    assert inet.count("\tchain FI-") == inet.count("\tchain FO-") == inet.count("\tchain HI-") == 1
    # each NIC's address is a set element keyed by its mark; the constant 10.0.0.1 is written once
    number = sorted("vnet%d" % i for i in range(40)).index("vnet7") + 1
    assert "0x%08x . 192.168.100.17" % (0x48460000 + number) in inet
    assert "0x%08x . 192.168.100.17" % (0x48470000 + number) in inet
    assert "meta mark . ip saddr @FI-" in inet and "ip saddr 10.0.0.1 meta mark . ip daddr @FO-" in inet
    assert not any("variants" in note for note in sizes[40].notes)


def test_layer34_ip_list_becomes_one_lookup_and_other_differences_get_a_chain_and_a_note():
    listed = _ip_l3(2, ips={0: ["192.168.100.10", "192.168.100.99"]})
    inet = render_table(listed.tables[("inet", "hfw_nwfilter")])
    assert inet.count("\tchain FI-") == 1 and listed.rule_count == _ip_l3(2).rule_count
    assert "0x48460001 . 192.168.100.99" in inet and "0x48460002 . 192.168.100.11" in inet
    # a masked address is a network, written literally: that NIC's FI chain differs
    masked_xml = IP_L3.replace("'$IP' dstportstart", "'$IP' srcipmask='24' dstportstart")
    net = _extra_filter(masked_xml.replace("ip-l3", "ip-l3-net"))
    filters = dict(FILTERS, **{"ip-l3": _extra_filter(IP_L3), "ip-l3-net": net})
    masked = _compile_nft.compile_nics([nic(0, "ip-l3", filters=filters), nic(1, "ip-l3-net", filters=filters)])
    inet = render_table(masked.tables[("inet", "hfw_nwfilter")])
    assert inet.count("\tchain FI-") == 2 and "ip saddr 192.168.100.0/24 tcp dport 80" in inet
    assert any(note.startswith("FI chain: 2 variants for 2 NICs") for note in masked.notes)
