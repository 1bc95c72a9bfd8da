# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host store: everything desired on a hypervisor, kept in ``config_dir``.

Layout (format 2): ONE document, ``config_dir/store.json``::

    {"format": "hypervisor-firewall-store 2",
     "filters":  {NAME: libvirt <filter> XML, canonical, with its uuid},
     "bindings": {KEY: libvirt <filterbinding> XML},   KEY is the tap, or DOMAIN--MAC (Binding.key)
     "networks": {NAME: libvirt <network> XML},
     "manage_networks": true once a network was stored: from then on the LIBVIRT_* chains are ours,
     "drop_unbound_taps": drop frames from vnet* taps without a binding,
     "ledger": what the collection wrote into the kernel (see ledger.py), or null before it was kept}

A change is committed as one unit: the whole document is written to a temporary file, fsynced,
renamed over ``store.json`` once and the directory fsynced: two fsyncs whatever the number of
objects, and a kill at any instant leaves either the old document or the new one (the design notes, "The host store").
Nothing else in ``config_dir`` is read as part of the store, so an editor backup or a foreign file
there cannot block anything.  (``config_dir/backend`` and ``config_dir/runtime/`` are separate
records, see backend.py and runtime.py.)

What a write accepts is what a read accepts: every object is serialised, parsed back and
serialised again before anything is written, and the document is held to the read limit.

Format 1 (one file per object: ``format``, ``filters/NAME.xml``, ``bindings/KEY.xml``,
``networks/NAME.xml``, ``drop-unbound-taps``) is read when no document exists and is replaced by
the document on the first write (reconcile writes it on first use).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Tuple

from ..errors import EngineError, StoreError
from ..language import filter_xml as _filterxml
from ..language import network as _network
from . import ledger as _ledger
from . import runner as _runner

FORMAT_LINE = "hypervisor-firewall-store 2"
LEGACY_FORMAT_LINE = "hypervisor-firewall-store 1"
DOCUMENT = "store.json"
KINDS = ("filters", "bindings", "networks")
DROP_UNBOUND_FILE = "drop-unbound-taps"
# the whole document: room for thousands of NICs and the 24 default filters many times over
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
# names are keys of the document and headers of diffs; \Z: a trailing newline is not a name
OBJECT_NAME_RE = re.compile(r"[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,127}\Z")
_DOCUMENT_KEYS = frozenset(("format", "manage_networks", "drop_unbound_taps", "ledger") + KINDS)


@dataclass(frozen=True)
class Broken:
    """A stored object that no longer parses (the document was edited by hand).

    It stays in the state so that the object it replaces can still be redefined or removed; any
    run whose result still holds it is refused with ``message`` (see require_sound).
    """

    kind: str
    name: str
    message: str
    raw: str = field(compare=False, default="")
    uuid: Optional[str] = None
    references: Tuple[str, ...] = ()
    filter: Optional[str] = None
    portdev: Optional[str] = None
    owner_name: Optional[str] = None
    mac: Optional[str] = None

    @property
    def domain(self):
        return None

    @property
    def key(self):
        return self.name

    @property
    def label(self):
        return "stored %s %r" % (self.kind.rstrip("s"), self.name)


@dataclass(frozen=True)
class StoreState:
    filters: Dict[str, object] = field(default_factory=dict)  # name -> Filter
    bindings: Dict[str, object] = field(default_factory=dict)  # Binding.key -> Binding
    networks: Dict[str, object] = field(default_factory=dict)  # name -> Network
    # True once a network was stored: from then on the LIBVIRT_* chains are ours
    manage_networks: bool = False
    # guest_nic_filter drop_unbound_taps: the fail-closed rule for taps without a binding
    drop_unbound_taps: bool = False
    # what we wrote into the kernel (ledger.Ledger), None while no ledger was kept (legacy stores)
    ledger: object = None
    # read from the format 1 layout: the next write replaces it with the document
    legacy: bool = field(default=False, compare=False)
    # things noticed while reading that did not stop it (skipped stray files of a legacy store)
    warnings: Tuple[str, ...] = field(default=(), compare=False)

    def with_changes(self, **kwargs):
        return replace(self, **kwargs)


def check_object_name(kind, name):
    if not isinstance(name, str) or not OBJECT_NAME_RE.match(name):
        raise StoreError(
            "%s name %r is not valid: use up to 128 characters from A-Z a-z 0-9 _ . : - "
            "(not starting with '.')" % (kind.rstrip("s"), name),
            name=name,
        )
    return name


def serialize(kind, obj):
    if isinstance(obj, Broken):
        return obj.raw
    if kind == "filters":
        return _filterxml.format_filter_xml(obj)
    if kind == "bindings":
        return _filterxml.format_binding_xml(obj)
    return _network.format_network_xml(obj)


def _deserialize(kind, text):
    if kind == "filters":
        return _filterxml.parse_filter_xml(text, strict=False)[0]
    if kind == "bindings":
        return _filterxml.parse_binding_xml(text)
    return _network.parse_network_xml(text)


def _key(kind, obj):
    if kind == "filters":
        return obj.name
    if kind == "bindings":
        return obj.key
    return obj.name


def document_path(config_dir):
    return os.path.join(config_dir, DOCUMENT)


# ---------------------------------------------------------------- reading


def load_store(config_dir) -> StoreState:
    """Read the whole store; a missing config_dir is an empty store."""
    if not os.path.exists(config_dir):
        return StoreState()
    if not os.path.isdir(config_dir):
        raise StoreError("config_dir %s is not a directory: point config_dir at a directory" % config_dir,
                         path=config_dir)
    path = document_path(config_dir)
    if os.path.lexists(path):
        return _load_document(path)
    return _load_legacy(config_dir)


def _load_document(path):
    data = _read_bytes(path, MAX_DOCUMENT_BYTES)
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StoreError("store document %s is not valid JSON (%s): restore it from a backup, or move it away "
                         "and re-run the playbook that defines this host" % (path, exc), path=path) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_LINE:
        shown = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise StoreError("%s is not a hypervisor-firewall store (format %r, not %r): it was written by another "
                         "tool or version; move it away or point config_dir elsewhere" % (path, shown, FORMAT_LINE),
                         path=path)
    unknown = sorted(set(doc) - _DOCUMENT_KEYS)
    if unknown:
        raise StoreError("store document %s has unknown keys %s: remove them (they were not written by this "
                         "collection)" % (path, ", ".join(map(repr, unknown))), path=path)
    found = {}
    for kind in KINDS:
        entries = doc.get(kind, {})
        if not isinstance(entries, dict):
            raise StoreError("store document %s: %r must map names to XML text; restore it from a backup"
                             % (path, kind), path=path)
        found[kind] = {name: _load_entry(path, kind, name, text) for name, text in sorted(entries.items())}
    try:
        ledger = _ledger.from_json(doc.get("ledger"))
    except (TypeError, ValueError) as exc:
        raise StoreError("store document %s: the ledger is damaged (%s): restore the document from a backup"
                         % (path, exc), path=path) from None
    return StoreState(filters=found["filters"], bindings=found["bindings"], networks=found["networks"],
                      manage_networks=doc.get("manage_networks") is True,
                      drop_unbound_taps=doc.get("drop_unbound_taps") is True, ledger=ledger)


def _load_entry(path, kind, name, text):
    where = "%s: %s %r" % (path, kind.rstrip("s"), name)
    if not isinstance(name, str) or not OBJECT_NAME_RE.match(name) or not isinstance(text, str):
        return Broken(kind, str(name), "%s is not a valid entry; remove it from the document" % where,
                      raw=text if isinstance(text, str) else "")
    try:
        obj = _deserialize(kind, text)
    except EngineError as exc:
        return Broken(kind, name, "%s is corrupt (%s): redefine or remove it" % (where, exc.msg), raw=text)
    if _key(kind, obj) != name:
        return Broken(kind, name, "%s describes %r: redefine or remove it" % (where, _key(kind, obj)), raw=text)
    return obj


def broken_objects(state):
    """Every Broken entry of a state, in document order."""
    return [obj for kind in KINDS for _name, obj in sorted(getattr(state, kind).items()) if isinstance(obj, Broken)]


def require_sound(state):
    """Refuse a state that still holds an entry that does not parse."""
    broken = broken_objects(state)
    if broken:
        raise StoreError("; ".join(b.message for b in broken), objects=["%s/%s" % (b.kind, b.name) for b in broken])


def _read_bytes(path, limit):
    try:
        # O_NOFOLLOW: a symlink planted in the store is refused, never followed
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise StoreError("cannot read %s (%s): fix its permissions, or remove it if it is not a file this "
                         "collection wrote" % (path, exc.strerror or exc), path=path) from None
    if len(data) > limit:
        raise StoreError("%s is more than %d bytes: it was not written by this collection; move it away"
                         % (path, limit), path=path)
    return data


def _load_legacy(config_dir):
    """Format 1: one file per object.  Stray files (editor backups, notes) are skipped with a warning."""
    fmt = os.path.join(config_dir, "format")
    if os.path.lexists(fmt):
        line = _read_bytes(fmt, 4096).decode("utf-8", "replace").strip()
        if line != LEGACY_FORMAT_LINE:
            raise StoreError(
                "%s holds %r, not %r: this store was written by another tool or version; "
                "move it away or point config_dir elsewhere" % (fmt, line[:80], LEGACY_FORMAT_LINE),
                path=fmt,
            )
    found, warnings, any_layout = {}, [], os.path.lexists(fmt)
    for kind in KINDS:
        found[kind] = _load_legacy_kind(config_dir, kind, warnings)
        any_layout = any_layout or os.path.isdir(os.path.join(config_dir, kind))
    return StoreState(
        filters=found["filters"], bindings=found["bindings"], networks=found["networks"],
        manage_networks=os.path.isdir(os.path.join(config_dir, "networks")),
        drop_unbound_taps=os.path.exists(os.path.join(config_dir, DROP_UNBOUND_FILE)),
        legacy=any_layout, warnings=tuple(warnings),
    )


def _load_legacy_kind(config_dir, kind, warnings):
    folder = os.path.join(config_dir, kind)
    objects = {}
    if not os.path.isdir(folder):
        return objects
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        stem, ext = os.path.splitext(entry)
        if ext != ".xml" or not OBJECT_NAME_RE.match(stem) or not os.path.isfile(path) or os.path.islink(path):
            if not (entry.startswith(".") and entry.endswith(".tmp")):  # our own interrupted writes
                warnings.append("%s is not a store file (only NAME.xml files written by this collection are); "
                                "it was ignored: remove it" % path)
            continue
        try:
            obj = _deserialize(kind, _read_bytes(path, _filterxml.MAX_XML_BYTES))
        except EngineError as exc:
            raise StoreError("store file %s is corrupt: %s; fix or remove it" % (path, exc.msg), path=path)
        if _key(kind, obj) != stem:
            raise StoreError(
                "store file %s describes %r, not %r: rename or remove it" % (path, _key(kind, obj), stem),
                path=path,
            )
        objects[stem] = obj
    return objects


# ---------------------------------------------------------------- writing


def check_readable(kind, obj):
    """The canonical text of ``obj``, once it is known to read back as itself; raises StoreError."""
    if isinstance(obj, Broken):
        return obj.raw
    label = "%s %r" % (kind.rstrip("s"), _key(kind, obj))
    text = serialize(kind, obj)
    try:
        again = serialize(kind, _deserialize(kind, text))
    except EngineError as exc:
        raise StoreError("%s cannot be stored: its canonical form would not read back (%s); shorten or simplify "
                         "it" % (label, exc.msg), object=label) from None
    except ValueError as exc:  # lxml refuses text XML cannot hold (NUL, control characters, U+FFFF)
        raise StoreError("%s cannot be stored: %s; remove control characters and other characters XML cannot "
                         "hold" % (label, exc), object=label) from None
    if again != text:
        raise StoreError("%s cannot be stored: it would read back differently (characters XML cannot hold, "
                         "such as control characters, NUL or U+FFFF?); remove them" % label, object=label)
    return text


def render_document(state: StoreState, texts=None) -> bytes:
    """The document of a state; ``texts`` caches canonical texts already checked by (kind, name)."""
    texts = texts or {}
    doc = {"format": FORMAT_LINE}
    for kind in KINDS:
        objects = getattr(state, kind)
        doc[kind] = {name: texts.get((kind, name)) or serialize(kind, objects[name]) for name in sorted(objects)}
    doc["manage_networks"] = bool(state.manage_networks)
    doc["drop_unbound_taps"] = bool(state.drop_unbound_taps)
    doc["ledger"] = _ledger.to_json(state.ledger)
    data = (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise StoreError("the store would be %d bytes, more than the %d a read accepts: remove unused filters or "
                         "bindings" % (len(data), MAX_DOCUMENT_BYTES), size=len(data))
    return data


def checked_document(before: StoreState, after: StoreState) -> bytes:
    """The document of ``after``, every object that changed checked to read back first."""
    texts = {}
    for kind in KINDS:
        old, new = getattr(before, kind), getattr(after, kind)
        for name in sorted(new):
            check_object_name(kind, name)
            if old.get(name) != new[name] or before.legacy:
                texts[(kind, name)] = check_readable(kind, new[name])
    return render_document(after, texts)


class Commit:
    """One committed change; rollback() commits the state before it (one more rename)."""

    def __init__(self, config_dir, previous: Optional[bytes], created_dir):
        self.config_dir = config_dir
        self._previous = previous
        self._created_dir = created_dir

    def rollback(self):
        path = document_path(self.config_dir)
        if self._previous is not None:
            atomic_replace(path, self._previous)
            return
        _remove_quietly(path)
        if self._created_dir:
            try:
                os.rmdir(self.config_dir)
            except OSError:
                pass  # something else lives there now (the backend record, the hook config)


def write_changes(config_dir, before: StoreState, after: StoreState) -> Commit:
    """Commit ``after`` as one unit; returns the Commit (for rollback).  Nothing is written when
    ``after`` cannot be read back."""
    data = checked_document(before, after)
    created = not os.path.isdir(config_dir)
    try:
        os.makedirs(config_dir, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise StoreError("cannot create %s: %s; fix config_dir or its permissions" % (config_dir, exc.strerror or exc),
                         path=config_dir) from None
    path = document_path(config_dir)
    previous = _read_bytes(path, MAX_DOCUMENT_BYTES) if os.path.lexists(path) else None
    if before.legacy:
        previous = None if not _legacy_has_content(before) else checked_document(StoreState(), before)
    _remove_stale_temporaries(config_dir)
    atomic_replace(path, data)
    # format 1 files left by the migration (or by one a kill interrupted) are never read again
    if before.legacy or os.path.lexists(os.path.join(config_dir, "format")):
        remove_legacy(config_dir)
    return Commit(config_dir, previous, created)


def _remove_stale_temporaries(config_dir):
    """Temporary documents of writers killed before their rename (the caller holds the host lock)."""
    prefix = "." + DOCUMENT + "."
    for entry in os.listdir(config_dir):
        if entry.startswith(prefix) and entry.endswith(".tmp"):
            _remove_quietly(os.path.join(config_dir, entry))


def _legacy_has_content(state):
    return bool(state.filters or state.bindings or state.networks or state.manage_networks or state.drop_unbound_taps)


def remove_legacy(config_dir):
    """Remove the format 1 files the document replaces (only those: anything else stays)."""
    for kind in KINDS:
        folder = os.path.join(config_dir, kind)
        if not os.path.isdir(folder) or os.path.islink(folder):
            continue
        for entry in os.listdir(folder):
            stem, ext = os.path.splitext(entry)
            if ext == ".xml" and OBJECT_NAME_RE.match(stem):
                _remove_quietly(os.path.join(folder, entry))
        try:
            os.rmdir(folder)
        except OSError:
            pass  # a stray file is left where the admin put it
    for name in ("format", DROP_UNBOUND_FILE):
        _remove_quietly(os.path.join(config_dir, name))


def _remove_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StoreError("cannot remove %s: %s; fix the permissions of %s" % (path, exc.strerror or exc,
                                                                              os.path.dirname(path)), path=path) from None


def _fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_replace(path, data: Optional[bytes]):
    """Write ``data`` to ``path`` in one rename (two fsyncs: the file, then its directory)."""
    if data is None:
        _remove_quietly(path)
        return
    folder = os.path.dirname(path) or "."
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        _runner.fault_point("rename", path)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(folder)
    except OSError as exc:
        raise StoreError("cannot write %s: %s; make %s writable (a read-only file system or a full disk?)"
                         % (path, exc.strerror or exc, folder), path=path) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def store_diff(before: StoreState, after: StoreState):
    """Ansible diff entries (XML before/after) for every stored object that changes."""
    entries = []
    for kind in KINDS:
        old, new = getattr(before, kind), getattr(after, kind)
        for name in sorted(set(old) | set(new)):
            if old.get(name) == new.get(name):
                continue
            entries.append({
                "before_header": "%s/%s.xml" % (kind, name) if name in old else "/dev/null",
                "after_header": "%s/%s.xml" % (kind, name) if name in new else "/dev/null",
                "before": serialize(kind, old[name]) if name in old else "",
                "after": serialize(kind, new[name]) if name in new else "",
            })
    if before.drop_unbound_taps != after.drop_unbound_taps:
        entries.append({"before_header": DROP_UNBOUND_FILE, "after_header": DROP_UNBOUND_FILE,
                        "before": "%s\n" % before.drop_unbound_taps, "after": "%s\n" % after.drop_unbound_taps})
    return entries
