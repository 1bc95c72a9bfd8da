# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reference copy (revision 359bb04) of nftables/inspect.py, the per-NIC scan, for test_perf_caches.

What one NIC's packets meet in our nft tables: for ``gathered`` and for ``rebuilt_devices``.

Chains are shared by NICs, so a NIC's view is followed from its entries in the dispatch maps
(by interface in the bridge table, by the port mark in the inet table): the chains reachable from
there, and the NIC's own elements of the sets those chains look up.
"""

from __future__ import annotations

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import tables as _tables

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


def device_view(parsed, dev):
    """(chains, sets) of one NIC: label ``nft FAMILY TABLE CHAIN`` -> rule lines, and label ->
    the NIC's own set elements (without the interface or mark key)."""
    chains, sets = {}, {}
    name = '"%s"' % dev
    _follow(parsed.get(_tables.L2, {}), "nft %s %s" % _tables.L2, _L2_MAPS, name,
            lambda element: element[:-len(name) - 3] if element.endswith(" . " + name) else None, chains, sets)
    marks = parsed.get(_tables.MARK, {})
    for map_name in _PORT_MAPS:
        for mark in [value for key, value in _pairs(marks, map_name) if key == name]:
            prefix = "%d . " % int(mark, 0)  # parse_table writes set integers in decimal
            _follow(parsed.get(_tables.L3, {}), "nft %s %s" % _tables.L3, _L3_MAPS, mark,
                    lambda element, pre=prefix: element[len(pre):] if element.startswith(pre) else None,
                    chains, sets)
    return chains, sets


def _follow(objects, label, maps, key, own_value, chains, sets):
    """Collect the chains reachable from ``maps``' entries for ``key`` and the key's set elements."""
    todo = [value.split()[-1] for map_name in maps for k, value in _pairs(objects, map_name) if k == key]
    while todo:
        chain = todo.pop(0)
        if label + " " + chain in chains or ("chain", chain) not in objects:
            continue
        rules = objects[("chain", chain)]
        chains[label + " " + chain] = list(rules)
        for rule in rules:
            todo += [word for before, word in zip(rule.split(), rule.split()[1:]) if before in ("jump", "goto")]
            for ref in [word[1:] for word in rule.split() if word.startswith("@")]:
                if ("map", ref) in objects:
                    todo += [value.split()[-1] for k, value in _pairs(objects, ref) if k == key]
                elif ("set", ref) in objects:
                    values = [own_value(e) for e in _elements(objects, "set", ref)]
                    sets[label + " " + ref] = [v for v in values if v is not None]


def rebuilt_devices(desired, live):
    """NICs whose view differs between two parsed states ({table key: objects})."""
    return [dev for dev in sorted(set(devices(desired)) | set(devices(live)))
            if device_view(desired, dev) != device_view(live, dev)]
