# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host store: everything desired on a hypervisor, kept in ``config_dir``.

Layout (format 1)::

    config_dir/format            "hypervisor-firewall-store 1"
    config_dir/filters/NAME.xml  libvirt <filter> XML, canonical, with its uuid
    config_dir/bindings/KEY.xml  libvirt <filterbinding> XML; KEY is the tap, or DOMAIN--MAC (Binding.key)
    config_dir/networks/NAME.xml libvirt <network> XML
    config_dir/drop-unbound-taps present: drop frames from vnet* taps without a binding
    config_dir/backend           the host's backend and fallback permission (see _backend)
    (config_dir/runtime/ is the qemu hook's map of running guests, see _runtime; not the store)

The store is read whole into a StoreState (plain data).  Writes go through a StoreWriter that
writes each file to a temporary name and renames it, and can put every file it touched back the
way it was, so a failed apply never leaves the store half-written.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from typing import Dict, Optional

from ..errors import EngineError, StoreError
from . import runner as _runner
from ..language import filter_xml as _filterxml
from ..language import network as _network

FORMAT_LINE = "hypervisor-firewall-store 1"
KINDS = ("filters", "bindings", "networks")
DROP_UNBOUND_FILE = "drop-unbound-taps"
# names become file names: no path separators, no leading dot
OBJECT_NAME_RE = re.compile(r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,127}$")


@dataclass(frozen=True)
class StoreState:
    filters: Dict[str, object] = field(default_factory=dict)  # name -> Filter
    bindings: Dict[str, object] = field(default_factory=dict)  # Binding.key -> Binding
    networks: Dict[str, object] = field(default_factory=dict)  # name -> Network
    # True once networks/ exists: from then on the LIBVIRT_* chains are ours
    manage_networks: bool = False
    # guest_nic_filter drop_unbound_taps: the fail-closed rule for taps without a binding
    drop_unbound_taps: bool = False

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


def load_store(config_dir) -> StoreState:
    """Read the whole store; a missing config_dir is an empty store."""
    if not os.path.exists(config_dir):
        return StoreState()
    if not os.path.isdir(config_dir):
        raise StoreError("config_dir %s is not a directory: point config_dir at a directory" % config_dir,
                         path=config_dir)
    fmt = os.path.join(config_dir, "format")
    if os.path.exists(fmt):
        line = _read_text(fmt)
        if line != FORMAT_LINE:
            raise StoreError(
                "%s holds %r, not %r: this store was written by another tool or version; "
                "move it away or point config_dir elsewhere" % (fmt, line[:80], FORMAT_LINE),
                path=fmt,
            )
    found = {}
    for kind in KINDS:
        found[kind] = _load_kind(config_dir, kind)
    return StoreState(
        filters=found["filters"],
        bindings=found["bindings"],
        networks=found["networks"],
        manage_networks=os.path.isdir(os.path.join(config_dir, "networks")),
        drop_unbound_taps=os.path.exists(os.path.join(config_dir, DROP_UNBOUND_FILE)),
    )


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError("cannot read %s (%s): remove it or point config_dir elsewhere" % (path, exc), path=path)


def _load_kind(config_dir, kind):
    folder = os.path.join(config_dir, kind)
    objects = {}
    if not os.path.isdir(folder):
        return objects
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if entry.startswith(".") and entry.endswith(".tmp"):
            continue  # an interrupted write of ours; the rename never happened
        stem, ext = os.path.splitext(entry)
        if ext != ".xml" or not os.path.isfile(path) or not OBJECT_NAME_RE.match(stem):
            raise StoreError(
                "unexpected file %s in the store: only NAME.xml files written by this collection "
                "belong there; remove it" % path,
                path=path,
            )
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise StoreError("cannot read %s (%s): fix its permissions or remove it" % (path, exc.strerror or exc),
                             path=path) from None
        try:
            obj = _deserialize(kind, data)
        except EngineError as exc:
            raise StoreError("store file %s is corrupt: %s; fix or remove it" % (path, exc.msg), path=path)
        if _key(kind, obj) != stem:
            raise StoreError(
                "store file %s describes %r, not %r: rename or remove it" % (path, _key(kind, obj), stem),
                path=path,
            )
        objects[stem] = obj
    return objects


class StoreWriter:
    """Writes store files atomically and can undo everything it wrote."""

    def __init__(self, config_dir):
        self.config_dir = config_dir
        self._undo = []  # (path, previous bytes or None)
        self._created = []  # directories this writer made

    def _ensure_layout(self, kind):
        folder = os.path.join(self.config_dir, kind)
        # directories count as state (networks/ means "network chains are ours"): undo them too
        for path in (self.config_dir, folder):
            if not os.path.isdir(path) and path not in self._created:
                self._created.append(path)
        try:
            os.makedirs(folder, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise StoreError("cannot create %s: %s; fix config_dir" % (folder, exc.strerror or exc), path=folder)
        fmt = os.path.join(self.config_dir, "format")
        if not os.path.exists(fmt):
            self._write(fmt, (FORMAT_LINE + "\n").encode())

    def _write(self, path, data: Optional[bytes]):
        previous = None
        if os.path.exists(path):
            with open(path, "rb") as handle:
                previous = handle.read()
        if previous == data:
            return
        atomic_replace(path, data)
        # recorded only once written: undoing a write that failed would fail itself
        self._undo.append((path, previous))

    def put(self, kind, name, obj):
        check_object_name(kind, name)
        self._ensure_layout(kind)
        self._write(os.path.join(self.config_dir, kind, name + ".xml"), serialize(kind, obj).encode())

    def delete(self, kind, name):
        check_object_name(kind, name)
        path = os.path.join(self.config_dir, kind, name + ".xml")
        if os.path.exists(path):
            self._write(path, None)

    def ensure_kind(self, kind):
        self._ensure_layout(kind)

    def set_flag(self, name, on):
        """A setting stored as the presence of a file (undone like every other write)."""
        self._ensure_layout("bindings")
        self._write(os.path.join(self.config_dir, name), b"yes\n" if on else None)

    def rollback(self):
        while self._undo:
            path, previous = self._undo.pop()
            atomic_replace(path, previous)
        while self._created:
            folder = self._created.pop()
            if os.path.isdir(folder):
                os.rmdir(folder)


def atomic_replace(path, data: Optional[bytes]):
    if data is None:
        try:
            os.unlink(path)
        except OSError as exc:
            raise StoreError("cannot remove %s: %s" % (path, exc.strerror or exc), path=path) from None
        return
    folder = os.path.dirname(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise StoreError("cannot write %s: %s; make %s writable for this user"
                         % (path, exc.strerror or exc, folder), path=path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        _runner.fault_point("rename", path)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise StoreError("cannot write %s: %s" % (path, exc.strerror or exc), path=path)


def write_changes(config_dir, before: StoreState, after: StoreState) -> StoreWriter:
    """Write every object that differs between two states; return the writer (for rollback)."""
    writer = StoreWriter(config_dir)
    try:
        for kind in KINDS:
            old, new = getattr(before, kind), getattr(after, kind)
            for name in sorted(new):
                if old.get(name) != new[name]:
                    writer.put(kind, name, new[name])
            for name in sorted(set(old) - set(new)):
                writer.delete(kind, name)
        if after.manage_networks and not before.manage_networks:
            writer.ensure_kind("networks")
        if after.drop_unbound_taps != before.drop_unbound_taps:
            writer.set_flag(DROP_UNBOUND_FILE, after.drop_unbound_taps)
    except StoreError:
        writer.rollback()
        raise
    return writer


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
