# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The default filter set (roles/default_filters/files) behaves exactly like libvirt's."""

import os

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import resolve as _resolve  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.filter_xml import parse_filter_xml
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import Binding

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
OURS = os.path.join(ROOT, "roles", "default_filters", "files")
LIBVIRT = "/usr/share/libvirt/nwfilter"

NAMES = (
    "allow-arp", "allow-dhcp", "allow-dhcp-server", "allow-dhcpv6", "allow-dhcpv6-server",
    "allow-incoming-ipv4", "allow-incoming-ipv6", "allow-ipv4", "allow-ipv6", "clean-traffic",
    "clean-traffic-gateway", "no-arp-ip-spoofing", "no-arp-mac-spoofing", "no-arp-spoofing",
    "no-ip-multicast", "no-ip-spoofing", "no-ipv6-multicast", "no-ipv6-spoofing", "no-mac-broadcast",
    "no-mac-spoofing", "no-other-l2-traffic", "no-other-rarp-traffic", "qemu-announce-self",
    "qemu-announce-self-rarp",
)

PARAMETERS = (
    ("IP", "192.0.2.10"), ("IP", "192.0.2.11"),
    ("IPV6", "2001:db8::10"),
    ("DHCPSERVER", "192.0.2.1"),
    ("GATEWAY_MAC", "52:54:00:00:00:01"),
)


def load(directory, strict=False):
    filters = {}
    for name in NAMES:
        with open(os.path.join(directory, name + ".xml")) as handle:
            flt, warnings = parse_filter_xml(handle.read(), strict=strict)
        filters[flt.name] = (flt, warnings)
    return filters


def instantiate(filters, name):
    # DHCPSERVER is an IPv4 address: the *-dhcpv6-server filters need an IPv6 one
    params = PARAMETERS
    if name == "allow-dhcpv6-server":
        params = tuple(p for p in params if p[0] != "DHCPSERVER") + (("DHCPSERVER", "2001:db8::1"),)
    return _resolve.instantiate(Binding("vnet0", "52:54:00:12:34:56", name, params), filters)


@pytest.fixture(scope="module")
def ours():
    return {name: flt for name, (flt, _w) in load(OURS, strict=True).items()}


def test_the_set_is_complete_and_clean():
    assert sorted(f[:-4] for f in os.listdir(OURS) if f.endswith(".xml")) == sorted(NAMES)
    for name, (flt, warnings) in load(OURS, strict=True).items():
        assert not warnings, name
        assert flt.uuid is None, "%s: uuids are per host, the file must not carry one" % name


def test_every_reference_resolves_without_cycles(ours):
    for name, flt in ours.items():
        assert set(flt.references) <= set(ours), name
        _resolve.find_cycle(ours, flt)


def test_clean_traffic_layout(ours):
    inst = instantiate(ours, "clean-traffic")
    assert inst.subchains == (
        ("mac", -800), ("ipv4-ip", -710), ("ipv4", -700), ("arp-mac", -520), ("arp-ip", -510), ("rarp", -400))
    root = [(ri.priority, ri.action, ri.direction, ri.protocol) for ri in inst.rules if ri.chain == "root"]
    assert root == [(-650, "accept", "out", "mac"), (-500, "accept", "inout", "mac"),
                    (500, "accept", "out", "mac"), (1000, "drop", "inout", None)]
    # one return rule per guest address, in the IP and ARP chains
    assert sum(1 for ri in inst.rules if ri.action == "return" and ri.priority in (400, 500)) == 5


@pytest.mark.skipif(not os.path.isdir(LIBVIRT), reason="libvirt's filters are not installed")
@pytest.mark.parametrize("name", NAMES)
def test_same_rule_instances_as_libvirt(ours, name):
    theirs = {n: flt for n, (flt, _w) in load(LIBVIRT).items()}
    mine, libvirt = instantiate(ours, name), instantiate(theirs, name)
    assert mine.rules == libvirt.rules
    assert mine.subchains == libvirt.subchains
    assert mine.filters_used == libvirt.filters_used
