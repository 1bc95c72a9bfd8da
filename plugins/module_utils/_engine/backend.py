# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which backend filters guest NICs on a host (xtables or nftables), and converging both.

The choice is per call (the ``backend`` option) and per host: the last backend a call asked for
is kept in ``config_dir/backend`` so later writers (and the re-apply command) use it.  Whatever
the choice, both backends are converged in one run: the chosen one to the desired rules, the other
one to no NIC rules, so switching a host removes the old backend's rules.  The new backend is
applied first: for a moment both filter (stricter, never open).

Fallback (``backend_fallback``): when nftables cannot express a binding's rules or the kernel
lacks a feature our tables use, a host that allows it is filtered by xtables instead, whole host
(NICs and networks), for that run only.  The permission is kept next to the backend (a second
line ``fallback`` in ``config_dir/backend``) so the re-apply command and the qemu hook behave
like the last module call; the fallback itself is never stored: the stored backend stays
nftables, and every run tries it again and warns again until the cause is fixed.
"""

from __future__ import annotations

import os

from .errors import StoreError, ToolMissingError
from .xtables import apply as _apply
from .nftables import compile_l3 as _compile_nft_l3
from .nftables import networks as _netfw_nft
from .nftables import converge as _nft
from .host import store as _store

BACKENDS = ("xtables", "nftables")
DEFAULT = "xtables"
BACKEND_FILE = "backend"


FALLBACK_WORD = "fallback"


def _read(config_dir):
    """(backend, fallback allowed) kept in the store, or (None, None)."""
    path = os.path.join(config_dir, BACKEND_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            words = handle.read().split()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise StoreError("cannot read %s: %s" % (path, exc), path=path)
    if not words or words[0] not in BACKENDS or words[1:] not in ([], [FALLBACK_WORD]):
        raise StoreError("%s holds %r, not one of %s (optionally followed by a line '%s'): fix or remove the file"
                         % (path, " ".join(words)[:40], ", ".join(BACKENDS), FALLBACK_WORD), path=path)
    return words[0], len(words) > 1


def stored(config_dir):
    """The host's default backend from the store, or None."""
    return _read(config_dir)[0]


def choose(config_dir, requested=None):
    if requested is not None and requested not in BACKENDS:
        raise StoreError("backend %r is not one of %s" % (requested, ", ".join(BACKENDS)), backend=requested)
    return requested or stored(config_dir) or DEFAULT


def fallback_allowed(config_dir, requested=None):
    """Whether nftables may give way to xtables: the call's ``backend_fallback``, else the stored one."""
    return bool(requested) if requested is not None else bool(_read(config_dir)[1])


def record(config_dir, requested, check_mode, fallback=None):
    """Keep ``requested`` (and ``fallback``, when given) as the host defaults; True when they changed."""
    old_backend, old_fallback = _read(config_dir)
    new_backend = requested or old_backend or DEFAULT
    new_fallback = bool(old_fallback) if fallback is None else bool(fallback)
    if (requested is None or old_backend == requested) and new_fallback == bool(old_fallback):
        return False
    if not check_mode:
        try:
            os.makedirs(config_dir, mode=0o755, exist_ok=True)  # the store's own mode (see _store)
        except OSError as exc:
            raise StoreError("cannot create %s: %s; fix config_dir" % (config_dir, exc.strerror or exc),
                             path=config_dir) from None
        text = new_backend + "\n" + (FALLBACK_WORD + "\n" if new_fallback else "")
        _store.atomic_replace(os.path.join(config_dir, BACKEND_FILE), text.encode())
    return True


def check_kernel(runner, nft_tables):
    """Raise (with context backend='nftables') when this host cannot load ``nft_tables``."""
    if not nft_tables:
        return
    if not hasattr(runner, "nft"):
        raise ToolMissingError("this runner cannot run nft", backend="nftables")
    try:
        _nft.probe(runner, layer34=bool(nft_tables.get(_compile_nft_l3.TABLE)))
    except ToolMissingError as exc:
        raise ToolMissingError(exc.msg, **dict(exc.context, backend="nftables"))


def fallback_warning(exc, chosen, allowed):
    """The warning to fall back to xtables with, or None when ``exc`` must stand."""
    if chosen != "nftables" or not allowed or exc.context.get("backend") != "nftables":
        return None
    return ("backend nftables cannot filter this host (%s); backend_fallback is on, so xtables filters every "
            "NIC and network of this host in this run. The stored backend stays nftables: this warning "
            "repeats on every run until the cause is fixed or backend xtables is chosen" % exc.msg)


def nft_available(runner):
    """False for runners without nft (fake runners, hosts without the nft binary)."""
    if not hasattr(runner, "nft"):
        return False
    try:
        runner.nft(["--version"])
    except ToolMissingError:
        return False
    return True


def owned_tables(scope):
    """nft tables we own: the NIC table always; ``ip``/``ip6 libvirt_network`` only once the store
    declares networks (the same rule as for the LIBVIRT_* chains), so libvirtd's stay untouched."""
    return _nft.OWNED_TABLES + (_netfw_nft.TABLES if scope.manage_networks else ())


def converge_both(backend, xt_desired, nft_tables, runner, scope, check_mode):
    """(xtables Result, nft NftResult or None): chosen backend first, the other one emptied."""
    tables = owned_tables(scope)
    if backend == "nftables":
        nft_result = _nft.converge(nft_tables, runner, check_mode=check_mode, tables=tables)
        return _apply.converge(xt_desired, runner, scope, check_mode=check_mode), nft_result
    result = _apply.converge(xt_desired, runner, scope, check_mode=check_mode)
    nft_result = _nft.converge({}, runner, check_mode=check_mode, tables=tables) if nft_available(runner) else None
    return result, nft_result


def network_warnings(backend, networks, runner, check_mode=False):
    """Warnings about the networks on this backend: the DHCP checksum fix on nftables.

    The probe adds and deletes a tc action, so check mode does not run it: the warning is given
    either way, only its reason is less precise.
    """
    if backend != "nftables" or not any(net.dhcp for net in networks):
        return []
    if check_mode:
        available = True
    else:
        available = runner.tc_csum_available() if hasattr(runner, "tc_csum_available") else False
    warning = _netfw_nft.dhcp_checksum_warning(networks, available)
    return [warning] if warning else []


def gather_nft(runner, devices):
    """{device: (chains, sets)} of the live nft NIC tables: the chains the device's packets can
    reach (label ``nft FAMILY TABLE CHAIN`` -> [{rule}]) and the device's own elements of the sets
    those rules look up (label -> [values, without the interface or mark key]).

    No counters: our nft rules carry none (the plan compares rules as text, so live counter values
    would make every table look changed on every read)."""
    live = {key: _nft.parse_table(text) for key, text in _nft.read_live(runner, _nft.OWNED_TABLES).items()}
    bridge, inet = live.get(("bridge", "hfw_nwfilter"), {}), live.get(_compile_nft_l3.TABLE, {})
    mark_maps = live.get(_compile_nft_l3.MARK_TABLE, {})
    out = {}
    for dev in devices:
        chains, sets = {}, {}
        name = '"%s"' % dev
        _follow(bridge, "nft bridge hfw_nwfilter", ("from_guest", "to_guest"), name,
                lambda element, key=name: element[:-len(key) - 3] if element.endswith(" . " + key) else None,
                chains, sets)
        for map_name in ("in_port", "out_port"):
            for mark in [value for key, value in _pairs(mark_maps, map_name) if key == name]:
                prefix = "%d . " % int(mark, 0)  # parse_table writes set integers in decimal
                _follow(inet, "nft inet hfw_nwfilter", ("from_guest", "to_guest", "to_host"), mark,
                        lambda element, pre=prefix: element[len(pre):] if element.startswith(pre) else None,
                        chains, sets)
        out[dev] = (chains, sets)
    return out


def _elements(objects, kind, name):
    for line in objects.get((kind, name), ()):
        if line.startswith("elements = "):
            return line[len("elements = "):].split(", ")
    return []


def _pairs(objects, map_name):
    """(key, value) of a map's elements (``key : value``)."""
    return [tuple(element.split(" : ", 1)) for element in _elements(objects, "map", map_name)]


def _follow(objects, label, maps, key, own_value, chains, sets):
    """Collect the chains reachable from ``maps``' entries for ``key`` and the key's set elements."""
    todo = [value.split()[-1] for map_name in maps for k, value in _pairs(objects, map_name) if k == key]
    while todo:
        chain = todo.pop(0)
        if label + " " + chain in chains or ("chain", chain) not in objects:
            continue
        rules = objects[("chain", chain)]
        chains[label + " " + chain] = [dict(rule=rule) for rule in rules]
        for rule in rules:
            todo += [word for before, word in zip(rule.split(), rule.split()[1:]) if before in ("jump", "goto")]
            for ref in [word[1:] for word in rule.split() if word.startswith("@")]:
                if ("map", ref) in objects:
                    todo += [value.split()[-1] for k, value in _pairs(objects, ref) if k == key]
                elif ("set", ref) in objects:
                    values = [own_value(e) for e in _elements(objects, "set", ref)]
                    sets[label + " " + ref] = [v for v in values if v is not None]
