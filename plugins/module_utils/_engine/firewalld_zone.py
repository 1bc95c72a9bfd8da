# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A virtual network's bridge in firewalld's zone, as libvirt does it on a firewalld host.

libvirt puts the bridge of every network it starts in firewalld's ``libvirt`` zone
(``libvirt-routed`` for routed networks; none for mode ``open``), so firewalld's own policy lets
the guests' traffic through: forwarding, and DHCP, DNS, TFTP, SSH and ICMP to the host. libvirt
does it at runtime and again after each firewalld reload (it listens on D-Bus). We have no daemon,
so the binding is made in both the runtime and the permanent configuration: a reload or restart
of firewalld, or a reboot, keeps the bridge in its zone without anyone re-applying it.

The zones themselves are libvirt's (its packages install them). Without them the bridge stays
where it is and the module warns with the fix.
"""

from __future__ import annotations

from .language import network as _network

CONFIGS = (False, True)  # runtime, permanent
# firewalld's reload, restart and stop flush every table of every tool it can drive, its
# nftables backend included (firewall/core/fw.py flush() walks all backends): measured under
# systemd (docs/docsite/rst/reapply.rst), guests go unfiltered until the watcher heals
XTABLES_WARNING = ("firewalld runs on this host: each firewalld reload or restart flushes every iptables, ip6tables "
                   "and ebtables table (also with firewalld's nftables backend), so the guests are unfiltered until "
                   "hypervisor-firewall-reapply's watcher puts the chains back (about half a second); choose backend "
                   "nftables on firewalld hosts, whose tables firewalld leaves alone")


def zone_steps(zone, current):
    """The configurations (False runtime, True permanent) whose zone for the bridge is not ``zone``.

    ``current``: {permanent flag: the bridge's zone there, or None}."""
    return [permanent for permanent in CONFIGS if current.get(permanent) != zone]


def removal_steps(zone, current):
    """The configurations where the bridge sits in ``zone`` (ours to take it out of)."""
    return [permanent for permanent in CONFIGS if zone is not None and current.get(permanent) == zone]


def missing_zone_warning(network, zone):
    return ("firewalld is running but has no '%s' zone, so bridge %s of network %r stays in the zone it is in "
            "(firewalld's own rules may block its guests): install libvirt's firewalld zones (package "
            "libvirt-daemon-system on Debian, libvirt-daemon-driver-network on EL) and run this again, or put "
            "the bridge in a zone of your own" % (zone, network.bridge, network.name))


def open_mode_warning(network):
    return ("firewalld is running: network %r (mode open) gets no rules from us and no zone, so firewalld's "
            "zone for %s alone decides its traffic" % (network.name, network.bridge))


def _current(runner, bridge):
    return {permanent: runner.firewalld_zone_of(bridge, permanent) for permanent in CONFIGS}


def place_bridge(runner, network, check_mode):
    """Put ``network``'s bridge in its zone when firewalld runs; (changed, zone or None, warnings)."""
    if not runner.firewalld_running():
        return False, None, []
    zone = _network.firewalld_zone_for(network)
    if zone is None:
        return False, None, [open_mode_warning(network)]
    if zone not in runner.firewalld_zones():
        return False, None, [missing_zone_warning(network, zone)]
    steps = zone_steps(zone, _current(runner, network.bridge))
    if not check_mode:
        for permanent in steps:
            runner.firewalld_change_zone(zone, network.bridge, permanent)
    return bool(steps), zone, []


def release_bridge(runner, network, check_mode):
    """Take a removed network's bridge out of the zone we put it in; returns changed."""
    if network is None or not runner.firewalld_running():
        return False
    zone = _network.firewalld_zone_for(network)
    steps = removal_steps(zone, _current(runner, network.bridge))
    if not check_mode:
        for permanent in steps:
            runner.firewalld_remove_interface(zone, network.bridge, permanent)
    return bool(steps)
