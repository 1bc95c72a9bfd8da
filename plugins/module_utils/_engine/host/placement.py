# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bindings that follow guests: which tap each stored binding is on right now.

libvirt names taps ``vnetN`` when a guest starts and hands the names out again, so a binding
that names a guest (domain + MAC) is placed on a tap only when the guest is known to run there.
Placement is decided here and nowhere else, from three inputs:

- the runtime map the qemu hook keeps (domain -> running?, its NICs' MAC, tap and alias), read
  from libvirt's live domain XML;
- the host's devices and their MACs (``ip -o link``);
- the stored bindings.

A map entry is trusted only while its tap still exists and still carries a MAC libvirt gives a
guest's tap (the guest's MAC with the first byte 0xfe, or the guest's MAC itself): a stale entry
must never put one guest's rules on another guest's tap.  Without a map entry (no hook installed,
or libvirtd started guests before it) the tap whose MAC is the guest's MAC with 0xfe first is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

from ..errors import FilterXMLError
from ..language import filter_xml as _filterxml
from ..language.devices import check_device
from ..language import schema as _schema

NOT_RUNNING = "not running"
RUNNING = "running"
FIXED = "fixed"
NO_DEVICE = "no device"
UNPLACED = "unplaced"


@dataclass(frozen=True)
class GuestNic:
    mac: str
    tap: Optional[str] = None
    alias: Optional[str] = None


@dataclass(frozen=True)
class GuestRecord:
    """What the hook last saw of a domain: running (with its NICs) or stopped."""

    domain: str
    running: bool
    nics: Tuple[GuestNic, ...] = ()


@dataclass(frozen=True)
class Placement:
    key: str
    binding: object  # the stored Binding
    tap: Optional[str]
    status: str  # FIXED, RUNNING, NOT_RUNNING, NO_DEVICE or UNPLACED


def tap_mac(mac: str) -> str:
    """The MAC libvirt gives a guest's tap: the guest's MAC with the first byte 0xfe (so the bridge
    never takes the guest's own address)."""
    return "fe" + mac[2:]


def canonical_mac(mac, what, **context):
    """``mac`` in canonical form; ``what`` names it in the error ("binding of vnet0: mac")."""
    try:
        return _schema.canonical_value("mac", "srcmacaddr", mac)
    except FilterXMLError:
        raise FilterXMLError("%s %r is not a MAC address (write it as 52:54:00:12:34:56)" % (what, mac),
                             **dict(context, mac=mac)) from None


def _nic_matches(binding, nic):
    return nic.mac == binding.mac and (binding.alias is None or binding.alias == nic.alias)


def _from_record(binding, record, links, warnings):
    if not record.running:
        return None, NOT_RUNNING
    nics = [nic for nic in record.nics if _nic_matches(binding, nic) and nic.tap]
    if not nics and links is not None and binding.alias is None:
        # a NIC hot-plugged after the hook's last record (libvirt runs no hook for
        # attach-interface): its tap carries the guest MAC with the first byte fe
        tap, status = _from_links(binding, links, warnings)
        if tap is not None:
            return tap, status
    if not nics:
        warnings.append("guest %s runs but has no NIC with MAC %s%s on a tap: no rules for %s"
                        % (record.domain, binding.mac, "" if binding.alias is None else " and alias " + binding.alias,
                           binding.label))
        return None, UNPLACED
    tap = nics[0].tap
    if links is None:
        return tap, RUNNING
    if tap not in links:
        return None, NOT_RUNNING  # stopped without the hook seeing it
    if links[tap] is not None and links[tap] not in (tap_mac(binding.mac), binding.mac):
        warnings.append("the hook saw %s on %s, but %s now has MAC %s: another guest's tap; no rules for %s"
                        % (record.domain, tap, tap, links[tap], binding.label))
        return None, UNPLACED
    return tap, RUNNING


def _from_links(binding, links, warnings):
    if links is None:
        return None, NOT_RUNNING
    wanted = tap_mac(binding.mac)
    taps = sorted(dev for dev, mac in links.items() if mac == wanted)
    if len(taps) > 1:
        warnings.append("several devices (%s) carry MAC %s: cannot tell which is %s's tap; no rules for it"
                        % (", ".join(taps), wanted, binding.label))
        return None, UNPLACED
    return (taps[0], RUNNING) if taps else (None, NOT_RUNNING)


def _place_one(key, binding, runtime, links, warnings):
    if binding.portdev is not None:
        if links is not None and binding.portdev not in links:
            # true in check mode too: never say "stored" of what a check run does not store
            warnings.append("binding for %s: no device %s exists, so it gets no rules until one does"
                            % (binding.portdev, binding.portdev))
            return Placement(key, binding, None, NO_DEVICE)
        return Placement(key, binding, binding.portdev, FIXED)
    record = runtime.get(binding.domain)
    if record is not None:
        tap, status = _from_record(binding, record, links, warnings)
    else:
        tap, status = _from_links(binding, links, warnings)
    return Placement(key, binding, tap, status)


def place_bindings(bindings: Mapping[str, object], runtime: Mapping[str, GuestRecord],
                   links: Optional[Mapping[str, Optional[str]]]) -> Tuple[List[Placement], List[str]]:
    """Where each binding's rules go now, sorted by key, and warnings.

    ``links``: device -> MAC (None when unknown) of every device on the host, or None when the
    host is not known (rendered output: fixed bindings are placed, guests are 'not running').
    Two bindings never share a tap: a guest binding (it knows the NIC's MAC) wins over a fixed
    one; two guest bindings that land on one tap both lose, with a warning.
    """
    warnings: List[str] = []
    placed = [_place_one(key, bindings[key], runtime, links, warnings) for key in sorted(bindings)]
    by_tap: Dict[str, List[Placement]] = {}
    for placement in placed:
        if placement.tap is not None:
            by_tap.setdefault(placement.tap, []).append(placement)
    losers = set()
    for tap, claims in sorted(by_tap.items()):
        if len(claims) == 1:
            continue
        guests = [p for p in claims if p.status == RUNNING]
        keep = guests[0] if len(guests) == 1 else None
        for placement in claims:
            if placement is not keep:
                losers.add(placement.key)
        warnings.append("%s is claimed by %s: %s" % (
            tap, ", ".join(p.binding.label for p in claims),
            "the guest binding %s wins" % keep.binding.label if keep else "no rules for any of them"))
    return [Placement(p.key, p.binding, None, UNPLACED) if p.key in losers else p for p in placed], warnings


def placed_taps(placements) -> frozenset:
    return frozenset(p.tap for p in placements if p.tap is not None)


# ---------------------------------------------------------------- libvirt's domain XML

def domain_nics(root) -> Tuple[GuestNic, ...]:
    """The NICs of a parsed live <domain> element: MAC, tap (<target dev>) and alias, in order."""
    nics = []
    devices = root.find("devices")
    for iface in () if devices is None else devices.findall("interface"):
        mac_node, target, alias = iface.find("mac"), iface.find("target"), iface.find("alias")
        if mac_node is None or not mac_node.get("address"):
            continue  # libvirt always fills it in a running domain; nothing to match on otherwise
        tap = None if target is None else target.get("dev")
        if tap is not None:
            # a name we would hand to iptables: never a wildcard, never shell text
            check_device(tap, "tap of domain %s" % (root.findtext("name") or "?"))
        nics.append(GuestNic(canonical_mac(mac_node.get("address"), "domain interface <mac>:"), tap,
                             None if alias is None else alias.get("name")))
    return tuple(nics)


def parse_domain_xml(text) -> Tuple[Optional[str], Tuple[GuestNic, ...]]:
    """(name, NICs) of libvirt's live domain XML, as a qemu hook receives it on stdin."""
    root = _filterxml._parse_document(text, "domain")
    return (root.findtext("name") or "").strip() or None, domain_nics(root)
