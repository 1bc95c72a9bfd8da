# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What one NIC's packets meet in our nft tables: for ``gathered`` and for ``rebuilt_devices``.

Chains are shared by NICs, so a NIC's view is followed from its entries in the dispatch maps
(by interface in the bridge table, by the port mark in the inet table): the chains reachable from
there, and the NIC's own elements of the sets those chains look up.
"""

from __future__ import annotations

from . import tables as _tables

_L2_MAPS = ("from_guest", "to_guest")
_L3_MAPS = ("from_guest", "to_guest", "to_host")
_PORT_MAPS = ("in_port", "out_port")


def _elements(objects, kind, name):
    for line in objects.get((kind, name), ()):
        if line.startswith("elements = "):
            return line[len("elements = "):].split(", ")
    return []


def _pairs(objects, map_name):
    """(key, value) of a map's elements (``key : value``)."""
    return [tuple(element.split(" : ", 1)) for element in _elements(objects, "map", map_name)]


def devices(parsed):
    """The NICs that have entries in the dispatch maps of ``parsed`` ({table key: objects})."""
    bridge, marks = parsed.get(_tables.L2, {}), parsed.get(_tables.MARK, {})
    keys = {k for name in _L2_MAPS for k, _v in _pairs(bridge, name)}
    keys |= {k for name in _PORT_MAPS for k, _v in _pairs(marks, name)}
    return sorted(key.strip('"') for key in keys)


class _Index:
    """One parsed table's map entries by key and set elements by owner, built on first use.

    device_view asked every map and set for one NIC by scanning all their elements, so
    rebuilt_devices over N NICs cost N x (all NICs' elements): 30 million element checks at
    N = 1,000.  The index groups each map's entries by key and each set's elements by the part
    that names their owner, once per table.  ``owner`` is ``"last"`` (the element's last
    `` . `` component, the quoted interface: L2) or ``"first"`` (its first, the port mark: L3);
    a value is the element without that component, exactly what the scan kept."""

    def __init__(self, objects, owner):
        self.objects, self.owner = objects, owner
        self.maps, self.sets = {}, {}

    def map_values(self, name, key):
        if name not in self.maps:
            grouped = {}
            for k, value in _pairs(self.objects, name):
                grouped.setdefault(k, []).append(value)
            self.maps[name] = grouped
        return self.maps[name].get(key, [])

    def set_values(self, name, owner_key):
        if " . " in owner_key:  # an interface named with the separator: scan, as before
            cut = len(owner_key) + 3
            return [e[:-cut] if self.owner == "last" else e[cut:] for e in _elements(self.objects, "set", name)
                    if (e.endswith if self.owner == "last" else e.startswith)(
                        " . " + owner_key if self.owner == "last" else owner_key + " . ")]
        if name not in self.sets:
            grouped = {}
            for element in _elements(self.objects, "set", name):
                if self.owner == "last":
                    head, sep, tail = element.rpartition(" . ")
                    if sep:
                        grouped.setdefault(tail, []).append(head)
                else:
                    head, sep, tail = element.partition(" . ")
                    if sep:
                        grouped.setdefault(head, []).append(tail)
            self.sets[name] = grouped
        return self.sets[name].get(owner_key, [])


def view_indexes(parsed):
    return (_Index(parsed.get(_tables.L2, {}), "last"), _Index(parsed.get(_tables.MARK, {}), "first"),
            _Index(parsed.get(_tables.L3, {}), "first"))


def device_view(parsed, dev, indexes=None):
    """(chains, sets) of one NIC: label ``nft FAMILY TABLE CHAIN`` -> rule lines, and label ->
    the NIC's own set elements (without the interface or mark key).  ``indexes``: view_indexes(parsed),
    shared by the calls for one ``parsed``."""
    l2, marks, l3 = indexes or view_indexes(parsed)
    chains, sets = {}, {}
    name = '"%s"' % dev
    _follow(l2, "nft %s %s" % _tables.L2, _L2_MAPS, name, name, chains, sets)
    for map_name in _PORT_MAPS:
        for mark in marks.map_values(map_name, name):
            # parse_table writes set integers in decimal
            _follow(l3, "nft %s %s" % _tables.L3, _L3_MAPS, mark, "%d" % int(mark, 0), chains, sets)
    return chains, sets


def _follow(index, label, maps, key, owner_key, chains, sets):
    """Collect the chains reachable from ``maps``' entries for ``key`` and the key's set elements
    (those whose owner component is ``owner_key``)."""
    objects = index.objects
    todo = [value.split()[-1] for map_name in maps for value in index.map_values(map_name, key)]
    while todo:
        chain = todo.pop(0)
        if label + " " + chain in chains or ("chain", chain) not in objects:
            continue
        rules = objects[("chain", chain)]
        chains[label + " " + chain] = list(rules)
        for rule in rules:
            words = rule.split()
            todo += [word for before, word in zip(words, words[1:]) if before in ("jump", "goto")]
            for ref in [word[1:] for word in words if word.startswith("@")]:
                if ("map", ref) in objects:
                    todo += [value.split()[-1] for value in index.map_values(ref, key)]
                elif ("set", ref) in objects:
                    sets[label + " " + ref] = list(index.set_values(ref, owner_key))


def rebuilt_devices(desired, live):
    """NICs whose view differs between two parsed states ({table key: objects})."""
    desired_index, live_index = view_indexes(desired), view_indexes(live)
    return [dev for dev in sorted(set(devices(desired)) | set(devices(live)))
            if device_view(desired, dev, desired_index) != device_view(live, dev, live_index)]
