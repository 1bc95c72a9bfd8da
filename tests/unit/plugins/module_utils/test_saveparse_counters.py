# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Counters of owned rules from REAL ``*-save -c`` dumps, and gathered built on them.

The ``traffic_*`` dumps come from fixtures/save/capture_counters.py: g0 (vnet0) filtered by
clean-traffic plus a UDP 40009 drop, network 'lab' on br0, then 3 spoofed, 2 blocked, 4 passed
frames from g0 and 5 frames from g1 to g0 (tests/integration/counter_traffic.py), and one admin
rule per tool that counts traffic of its own.
"""

import os

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import save_parse as _saveparse  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import SaveParseError, ToolMissingError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import CountedRule, Scope

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "save")
TRAFFIC = {"eb": "traffic_eb_counters.save", "ip4": "traffic_ip4_counters.save", "ip6": "traffic_ip6_counters.save"}
EB_OWNED = ["I-vnet0-arp-ip", "I-vnet0-arp-mac", "I-vnet0-ipv4-ip", "I-vnet0-mac", "I-vnet0-rarp",
            "O-vnet0-ipv4", "O-vnet0-rarp", "libvirt-I-vnet0", "libvirt-O-vnet0"]


def dump(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def test_each_owned_rule_keeps_its_own_counters():
    counted = _saveparse.parse_counters("eb", dump(TRAFFIC["eb"]))
    assert sorted(chain for _table, chain in counted) == EB_OWNED
    assert counted[("nat", "I-vnet0-ipv4-ip")] == (
        CountedRule("-p IPv4 --ip-src 0.0.0.0 --ip-proto udp -j RETURN", 0, 0),
        CountedRule("-p IPv4 --ip-src 192.168.100.10 -j RETURN", 11, 636),
        CountedRule("-j DROP", 3, 138),  # exactly the 3 spoofed frames
    )


def test_iptables_counters_of_nic_and_network_chains_but_not_the_admins():
    counted = _saveparse.parse_counters("ip4", dump(TRAFFIC["ip4"]))
    assert counted[("filter", "FI-vnet0")] == (CountedRule("-p udp -m udp --dport 40009 -j DROP", 2, 88),)
    assert counted[("filter", "LIBVIRT_FWX")] == (CountedRule("-i br0 -o br0 -j ACCEPT", 9, 508),)
    assert all(not _saveparse.is_builtin_chain("ip4", table, chain) for table, chain in counted)
    assert not any("40002" in r.rule for rules in counted.values() for r in rules)


@pytest.mark.parametrize("tool,name", sorted(TRAFFIC.items()) + [
    ("eb", "eb_nft_counters.save"), ("ip4", "ip4_nft_counters.save"), ("ip4", "ip4_legacy_counters.save")])
def test_counted_rules_are_exactly_what_parse_save_owns(tool, name):
    """Same ownership, same rule text: a counter never leaks into the rule or shifts a rule."""
    text = dump(name)
    counted = _saveparse.parse_counters(tool, text)
    owned = {(table, chain): tuple(c.rules) for (_tool, table), state in _saveparse.parse_save(tool, text).items()
             for chain, c in state.chains.items()}
    assert counted and {key: tuple(r.rule for r in rules) for key, rules in counted.items()} == owned


def test_scope_leaves_out_network_chains_and_foreign_devices():
    text = dump(TRAFFIC["ip4"])
    assert not [c for _t, c in _saveparse.parse_counters("ip4", text, Scope(manage_networks=False))
                if c.startswith("LIBVIRT_")]
    assert not [c for _t, c in _saveparse.parse_counters("ip4", text, Scope(foreign_devices=frozenset({"vnet0"})))
                if "vnet0" in c]


def test_a_dump_without_counters_is_refused():
    with pytest.raises(SaveParseError, match=r"no counters .* read it with iptables-save -c") as err:
        _saveparse.parse_counters("ip4", dump("ip4_nft.save"))
    assert err.value.context["chain"] in err.value.msg


def test_old_ebtables_trailing_counters_are_read_too():
    text = "*nat\n:PREROUTING ACCEPT\n:I-vnet0-mac ACCEPT\n-A I-vnet0-mac -s 52:54:0:0:0:1 -j RETURN -c 7 420\n"
    assert _saveparse.parse_counters("eb", text) == {
        ("nat", "I-vnet0-mac"): (CountedRule("-s 52:54:0:0:0:1 -j RETURN", 7, 420),)}


class DumpRunner:
    """Answers only what gathered may ask: the ``-c`` dumps and the host's devices."""

    def save_counters(self, tool):
        return dump(TRAFFIC[tool])

    def list_devices(self):
        return {"lo", "br0", "vnet0", "vnet1"}

    def which(self, _tool):
        return None

    def nft(self, _args, data=None):
        raise ToolMissingError("no nft on this host")


def test_gather_groups_counted_rules_by_device_and_network(tmp_path):
    (tmp_path / "networks").mkdir()  # a store that manages networks
    gathered = _service.gather(DumpRunner(), _store.load_store(str(tmp_path)))
    vnet0 = gathered.by_device["vnet0"]
    assert sorted(vnet0) == ["ebtables nat %s" % c for c in EB_OWNED] + [
        "iptables filter FI-vnet0", "iptables filter FO-vnet0", "iptables filter HI-vnet0"]
    assert vnet0["ebtables nat I-vnet0-ipv4-ip"][-1] == dict(rule="-j DROP", packets=3, bytes=138)
    assert vnet0["iptables filter FI-vnet0"] == [dict(rule="-p udp -m udp --dport 40009 -j DROP", packets=2, bytes=88)]
    assert gathered.networks["iptables filter LIBVIRT_FWX"] == [
        dict(rule="-i br0 -o br0 -j ACCEPT", packets=9, bytes=508)]
    assert set(gathered.by_device) == {"vnet0"}


def test_gather_without_managed_networks_reports_no_network_chains(tmp_path):
    gathered = _service.gather(DumpRunner(), _store.load_store(str(tmp_path)))
    assert gathered.networks == {} and "vnet0" in gathered.by_device
