# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adopting a host that libvirtd filters today: its filters, live bindings and networks.

Three steps, so that all but the first are pure and testable on any tree of files:

- read_documents(root): the XML files of a host laid out like libvirt's under ``root``
  (normally "/"), as (path, bytes) pairs; the only step that touches the filesystem.
- import_documents(docs, ...): parse them into a LibvirtHost; every error names its file.
- adopt(state, host, overwrite): the StoreState that also holds the host's objects.

libvirt's chain names are ours too, so once the store binds libvirtd's NICs the next reconcile
rewrites each of their chains in place, in the same restore transaction that loads ours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Dict, Tuple

from .errors import EngineError, FilterXMLError, ResolveError, StoreError, VariableError
from .language import filter_xml as _filterxml
from .language import network as _network
from .host import transitions as _ops
from .language import resolve as _resolve

FILTER_DIR = "etc/libvirt/nwfilter"
BINDING_DIR = "run/libvirt/nwfilter-binding"
NETWORK_DIR = "etc/libvirt/qemu/networks"
NETWORK_STATUS_DIR = "run/libvirt/network"
# forward modes for which libvirt's network driver installs no firewall rules at all
NO_FIREWALL_MODES = ("bridge", "private", "vepa", "passthrough", "hostdev")


def host_path(root, relative):
    return os.path.join(root or "/", relative)


def binding_dir(root):
    """Where libvirtd keeps its live bindings under ``root``."""
    return host_path(root, BINDING_DIR)


@dataclass(frozen=True)
class HostDocuments:
    """The raw files of a libvirt host: (path, bytes) pairs, sorted by path."""

    filters: Tuple[Tuple[str, bytes], ...] = ()
    bindings: Tuple[Tuple[str, bytes], ...] = ()
    # active networks come from their status file (<networkstatus>), autostarted ones from config
    network_status: Tuple[Tuple[str, bytes], ...] = ()
    network_configs: Tuple[Tuple[str, bytes], ...] = ()
    # (path, reason) of network definitions that install no rules today
    skipped: Tuple[Tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LibvirtHost:
    """What libvirtd enforces on a host, parsed; ``sources`` maps (kind, key) to its file."""

    filters: Dict[str, object] = field(default_factory=dict)
    bindings: Dict[str, object] = field(default_factory=dict)
    networks: Dict[str, object] = field(default_factory=dict)
    sources: Dict[Tuple[str, str], str] = field(default_factory=dict)
    skipped: Tuple[Tuple[str, str], ...] = ()
    warnings: Tuple[str, ...] = ()

    def summary(self):
        return dict(filters=sorted(self.filters), bindings=sorted(self.bindings),
                    networks=sorted(self.networks),
                    skipped=[dict(path=path, reason=reason) for path, reason in self.skipped])


# ---------------------------------------------------------------- reading (the only I/O)

def _xml_files(folder):
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError("cannot list %s (%s): check libvirt_root" % (folder, exc.strerror or exc), path=folder)
    return [os.path.join(folder, n) for n in names if n.endswith(".xml") and os.path.isfile(os.path.join(folder, n))]


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise StoreError("cannot read %s (%s): check libvirt_root" % (path, exc.strerror or exc), path=path)


def read_documents(root, networks=True) -> HostDocuments:
    """Read the filter, binding and network files of the libvirt host under ``root``."""
    if not os.path.isdir(root or "/"):
        raise StoreError("libvirt_root %s is not a directory: give the host's root (normally /)" % root, path=root)
    filters = tuple((p, _read(p)) for p in _xml_files(host_path(root, FILTER_DIR)))
    bindings = tuple((p, _read(p)) for p in _xml_files(binding_dir(root)))
    if not networks:
        return HostDocuments(filters, bindings)
    status, configs, skipped = _network_files(root)
    return HostDocuments(filters, bindings, tuple((p, _read(p)) for p in status),
                         tuple((p, _read(p)) for p in configs), skipped)


def _network_files(root):
    """Active networks (status files) first; an inactive one counts if it autostarts.

    autostart/ holds symlinks to absolute paths of the real host: only their names matter here.
    """
    status = _xml_files(host_path(root, NETWORK_STATUS_DIR))
    active = set(os.path.basename(p) for p in status)
    autostart_dir = host_path(root, os.path.join(NETWORK_DIR, "autostart"))
    try:
        autostart = set(n for n in os.listdir(autostart_dir) if n.endswith(".xml"))
    except OSError:
        autostart = set()
    configs, skipped = [], []
    for path in _xml_files(host_path(root, NETWORK_DIR)):
        name = os.path.basename(path)
        if name in active:
            continue
        if name in autostart:
            configs.append(path)
        else:
            skipped.append((path, "neither running nor autostarted: libvirt installs no rules for it"))
    return status, configs, tuple(skipped)


# ---------------------------------------------------------------- parsing (pure)

def _in_file(path, exc):
    """The same error, its message prefixed with the file it came from."""
    context = dict(exc.context, path=path)
    return type(exc)("%s: %s" % (path, exc.msg), **context)


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def import_documents(docs: HostDocuments, binding_parameters=None) -> LibvirtHost:
    """Parse a host's documents; ``binding_parameters`` ({portdev: {NAME: value or list}}) adds or
    replaces variables of a binding (libvirtd learns IP at run time and never writes it down)."""
    sources, warnings = {}, []
    filters = {}
    for path, data in docs.filters:
        flt, notes = _parse(path, lambda d: _filterxml.parse_filter_xml(d, strict=False), data)
        _same_name(path, "filter", flt.name)
        filters[flt.name] = flt
        sources[("filters", flt.name)] = path
        warnings.extend("%s: %s" % (path, note) for note in notes)
    bindings = {}
    for path, data in docs.bindings:
        binding = _parse(path, _filterxml.parse_binding_status_xml, data)
        _same_name(path, "binding of portdev", binding.portdev)
        bindings[binding.portdev] = binding
        sources[("bindings", binding.portdev)] = path
    bindings = _with_parameters(bindings, binding_parameters or {}, docs)
    networks, skipped = {}, list(docs.skipped)
    documents = [(p, d, "networkstatus") for p, d in docs.network_status]
    documents += [(p, d, "network") for p, d in docs.network_configs]
    for path, data, root_tag in documents:
        network, reason = _parse(path, lambda d: _network_from_file(d, root_tag), data)
        if network is None:
            skipped.append((path, reason))
            continue
        networks[network.name] = network
        sources[("networks", network.name)] = path
    return LibvirtHost(filters, bindings, networks, sources, tuple(skipped), tuple(warnings))


def _parse(path, parser, data):
    try:
        return parser(data)
    except EngineError as exc:
        raise _in_file(path, exc) from None


def _same_name(path, what, name):
    # libvirt names each file after its object; a mismatch is a file libvirt did not write
    if _stem(path) != name:
        raise StoreError("%s describes %s %r, not %r: libvirt names the file after it; rename or move it away"
                         % (path, what, name, _stem(path)), path=path)


def _network_from_file(data, root_tag):
    """(Network, None), or (None, reason) for a forward mode that libvirt gives no firewall."""
    if root_tag == "networkstatus":
        inner = _filterxml._parse_document(data, root_tag).find("network")
        if inner is None:
            raise FilterXMLError("<networkstatus> holds no <network>: this is not a status file libvirt wrote")
        data = _filterxml.etree.tostring(inner)
    forward = _filterxml._parse_document(data, "network").find("forward")
    mode = forward.get("mode", "nat") if forward is not None else None
    if mode in NO_FIREWALL_MODES:
        return None, "forward mode %s: libvirt installs no firewall rules for it" % mode
    return _network.parse_network_xml(data), None


def _with_parameters(bindings, extra, docs):
    unknown = sorted(set(extra) - set(bindings))
    if unknown:
        raise StoreError("binding_parameters names %s, which libvirtd does not filter (no binding file in %s)"
                         % (", ".join(unknown), os.path.dirname(docs.bindings[0][0]) if docs.bindings
                            else BINDING_DIR), devices=unknown)
    out = dict(bindings)
    for portdev in sorted(extra):
        given = extra[portdev] or {}
        kept = tuple(p for p in bindings[portdev].parameters if p[0] not in given)
        added = tuple((str(name), str(value)) for name in sorted(given)
                      for value in (given[name] if isinstance(given[name], list) else [given[name]]))
        out[portdev] = replace(bindings[portdev], parameters=kept + added)
    return out


# ---------------------------------------------------------------- the store transition (pure)

def adopt(state, host: LibvirtHost, overwrite=False):
    """``state`` plus every object of ``host``; each adopted binding must resolve.

    An object already stored under the same name is kept when it is equal (a filter's uuid aside);
    when it differs, libvirt's replaces it only with ``overwrite``, otherwise nothing is adopted.
    """
    for name in sorted(host.filters):
        state = _adopt_filter(state, host.filters[name], host.sources[("filters", name)], overwrite)
    bindings = dict(state.bindings)
    for portdev in sorted(host.bindings):
        path = host.sources[("bindings", portdev)]
        if _conflicts(bindings.get(portdev), host.bindings[portdev], path, "binding of", portdev, overwrite):
            bindings[portdev] = host.bindings[portdev]
    state = state.with_changes(bindings=bindings)
    for name in sorted(host.networks):
        path = host.sources[("networks", name)]
        if _conflicts(state.networks.get(name), host.networks[name], path, "network", name, overwrite):
            state = _parse(path, lambda net: _ops.set_network(state, net), host.networks[name])
    for portdev in sorted(host.bindings):
        _check_resolves(state, portdev, host.sources[("bindings", portdev)])
    return state


def _adopt_filter(state, flt, path, overwrite):
    stored = state.filters.get(flt.name)
    if stored is not None and replace(stored, uuid=None) == replace(flt, uuid=None):
        return state
    _conflicts(stored, flt, path, "filter", flt.name, overwrite)
    if stored is not None:
        # libvirt's uuid wins with overwrite: drop ours so define_filter does not see a uuid change
        state = state.with_changes(filters={k: v for k, v in state.filters.items() if k != flt.name})
    return _parse(path, lambda f: _ops.define_filter(state, f), flt)


def _conflicts(stored, new, path, what, name, overwrite):
    """True when ``new`` must be written; StoreError when it would silently replace ours."""
    if stored is None:
        return True
    if stored == new:
        return False
    if not overwrite:
        raise StoreError("%s %s from %s differs from the one already in the store: set overwrite=true to "
                         "replace the stored definition with libvirt's, or make them equal first"
                         % (what, name, path), path=path, name=name)
    return True


def _check_resolves(state, portdev, path):
    try:
        _resolve.instantiate(state.bindings[portdev], state.filters)
    except EngineError as exc:
        hint = ""
        if isinstance(exc, VariableError):
            # libvirtd learns IP (and DHCPSERVER) at run time and never writes them to the binding
            hint = " (on this module: binding_parameters: {%s: {NAME: value}})" % portdev
        raise ResolveError("%s: %s%s" % (path, exc.msg, hint), path=path, portdev=portdev) from None
