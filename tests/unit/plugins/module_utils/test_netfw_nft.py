# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Virtual networks on nftables: libvirt >= 10.4's table layout, from the same Network objects."""

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import backend as _backend  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import network as _network  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import networks as _netfw_nft  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import converge as _nft  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import tables as _tables  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables.writer import render_table  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402

DEFAULT = dict(name="default", bridge="virbr0", ipv4="192.168.122.1/24")


def net(**options):
    return _network.network_from_params(dict(DEFAULT, **options))


def chains(table):
    return {name: list(lines) for (kind, name), lines in _nft.parse_table(render_table(table)).items()
            if kind == "chain"}


def test_nat_default_network_has_libvirts_rules_in_libvirts_order():
    tables = _netfw_nft.compile_networks([net(dhcp=True)])
    assert sorted(tables) == [("ip", "libvirt_network"), ("ip6", "libvirt_network")]
    ip = chains(tables[("ip", "libvirt_network")])
    assert ip["forward"] == ["type filter hook forward priority filter; policy accept;",
                             "jump guest_cross", "jump guest_input", "jump guest_output"]
    # libvirt 10.4 (tests/networkxml2firewalldata/nat-default-linux.nftables), iif -> iifname
    assert ip["guest_output"] == ['ip saddr 192.168.122.0/24 iifname "virbr0" accept', 'iifname "virbr0" reject']
    assert ip["guest_input"] == [
        'oifname "virbr0" ip daddr 192.168.122.0/24 ct state established,related accept', 'oifname "virbr0" reject']
    assert ip["guest_cross"] == ['iifname "virbr0" oifname "virbr0" accept']
    assert ip["guest_nat"] == [
        "type nat hook postrouting priority srcnat; policy accept;",
        "ip saddr 192.168.122.0/24 ip daddr 224.0.0.0/24 return",
        "ip saddr 192.168.122.0/24 ip daddr 255.255.255.255 return",
        "meta l4proto tcp ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade to :1024-65535",
        "meta l4proto udp ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade to :1024-65535",
        "ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade"]
    # no IPv6 address: the ip6 table exists with empty chains, and no host INPUT rules anywhere
    assert chains(tables[("ip6", "libvirt_network")])["guest_output"] == []
    text = "".join(render_table(table) for table in tables.values())
    assert "hook input" not in text and "hook output" not in text


def test_forward_dev_snat_range_and_routed_ipv6():
    tables = _netfw_nft.compile_networks([net(forward_dev="eth0", ipv6="2001:db8::1/64",
                                              nat_address=["10.0.0.1", "10.0.0.4"], nat_ports=[500, 1000])])
    ip = chains(tables[("ip", "libvirt_network")])
    assert 'ip saddr 192.168.122.0/24 iifname "virbr0" oifname "eth0" accept' in ip["guest_output"]
    assert ('meta l4proto udp ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 oifname "eth0" '
            'snat to 10.0.0.1-10.0.0.4:500-1000') in ip["guest_nat"]
    assert 'ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 oifname "eth0" snat to 10.0.0.1-10.0.0.4' \
        in ip["guest_nat"]
    ip6 = chains(tables[("ip6", "libvirt_network")])
    # IPv6 of a NAT network without nat_ipv6 is routed, never masqueraded
    assert ip6["guest_input"][0] == 'iifname "eth0" ip6 daddr 2001:db8::/64 oifname "virbr0" accept'
    assert ip6["guest_nat"] == ["type nat hook postrouting priority srcnat; policy accept;"]


def test_last_network_first_and_open_mode_adds_nothing():
    tables = _netfw_nft.compile_networks([net(), net(name="iso", bridge="br1", ipv4="10.1.0.1/24", mode="isolated"),
                                          net(name="o", bridge="br2", ipv4="10.2.0.1/24", mode="open")])
    ip = chains(tables[("ip", "libvirt_network")])
    assert ip["guest_output"] == ['iifname "br1" reject', 'ip saddr 192.168.122.0/24 iifname "virbr0" accept',
                                  'iifname "virbr0" reject']
    assert "br2" not in render_table(tables[("ip", "libvirt_network")])


def test_no_networks_no_tables():
    assert _netfw_nft.compile_networks([]) == {}


def test_dhcp_checksum_warning_says_why():
    nets = [net(dhcp=True), net(name="x", bridge="br9", ipv4="10.9.0.1/24")]
    assert "CONFIG_NET_ACT_CSUM" in _netfw_nft.dhcp_checksum_warning(nets, False)
    assert "virbr0" in _netfw_nft.dhcp_checksum_warning(nets, True)
    assert "br9" not in _netfw_nft.dhcp_checksum_warning(nets, False)
    assert _netfw_nft.dhcp_checksum_warning(nets[1:], False) is None


class Probe:
    def __init__(self, available):
        self.available, self.calls = available, 0

    def tc_csum_available(self):
        self.calls += 1
        return self.available


def test_network_warnings_probe_only_for_nftables_with_dhcp():
    probe = Probe(False)
    xtables, nftables = _backend.select("xtables"), _backend.select("nftables")
    assert xtables.network_warnings([net(dhcp=True)], probe, False) == [] and probe.calls == 0
    assert nftables.network_warnings([net()], probe, False) == [] and probe.calls == 0
    warnings = nftables.network_warnings([net(dhcp=True)], probe, False)
    assert probe.calls == 1 and "CONFIG_NET_ACT_CSUM" in warnings[0]


def test_network_tables_are_owned_only_when_the_store_manages_networks():
    assert ("ip", "libvirt_network") in _tables.owned(manage_networks=True)
    assert _tables.owned(manage_networks=False) == _tables.NICS
    assert not any(key in _tables.NICS for key in _tables.NETWORKS)


def test_build_desired_puts_networks_in_nft_tables_not_in_libvirt_chains():
    state = _store.StoreState(networks={"default": net()}, manage_networks=True)
    desired, _warnings = _service.build_desired(state, _backend.select("nftables"), devices=set())
    assert ("ip", "libvirt_network") in desired.tables
    xt, _warnings = _service.build_desired(state, _backend.select("xtables"), devices=set())
    assert any(ch.rules for st in xt.values() for name, ch in st.chains.items() if name.startswith("LIBVIRT_"))


def test_open_networks_alone_need_no_table():
    opens = [net(name="o%d" % n, bridge="br%d" % n, ipv4="10.2%d.0.1/24" % n, mode="open") for n in range(2)]
    assert _netfw_nft.compile_networks(opens) == {}


def test_every_address_of_a_family_gets_its_own_rules():
    tables = _netfw_nft.compile_networks([net(ipv4=["192.168.122.1/24", "10.9.0.1/16"], forward_dev="eth0",
                                              ipv6=["fd00:9::1/64", "fd00:a::1/64"], nat_ipv6=True)])
    ip = chains(tables[("ip", "libvirt_network")])
    # the last address's rules first (libvirt inserts at the top), the bridge's catch-all once
    assert ip["guest_output"] == ['ip saddr 10.9.0.0/16 iifname "virbr0" oifname "eth0" accept',
                                  'ip saddr 192.168.122.0/24 iifname "virbr0" oifname "eth0" accept',
                                  'iifname "virbr0" reject']
    for subnet in ("10.9.0.0/16", "192.168.122.0/24"):
        assert 'ip saddr %s ip daddr != %s oifname "eth0" masquerade' % (subnet, subnet) in ip["guest_nat"]
    ip6 = chains(tables[("ip6", "libvirt_network")])
    for subnet in ("fd00:9::/64", "fd00:a::/64"):
        assert 'ip6 saddr %s ip6 daddr != %s oifname "eth0" masquerade' % (subnet, subnet) in ip6["guest_nat"]
    assert ip6["guest_cross"] == ['iifname "virbr0" oifname "virbr0" accept']
