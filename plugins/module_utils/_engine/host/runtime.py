# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runtime map the qemu hook keeps: which guest runs on which taps (see _guests).

Layout: ``config_dir/runtime/DOMAIN.json`` (DOMAIN made file-name safe by _model.domain_key),
one JSON object per domain: ``{"domain", "boot_id", "running", "nics": [{"mac", "tap", "alias"}]}``.

It lives next to the store so every writer of a host (modules, re-apply, hook) sees the same
map without a new setting.  Records carry the kernel's boot id: after a reboot every tap name
is free again, so a record of an earlier boot is ignored, never trusted.
"""

from __future__ import annotations

import json
import os

from ..errors import StoreError
from .placement import GuestNic, GuestRecord
from ..language.model import domain_key
from .store import atomic_replace

RUNTIME_DIR = "runtime"
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


def boot_id(path=BOOT_ID_FILE):
    """This boot's id; '' where the kernel does not offer one (records then never expire)."""
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def runtime_dir(config_dir):
    return os.path.join(config_dir, RUNTIME_DIR)


def record_path(config_dir, domain):
    return os.path.join(runtime_dir(config_dir), domain_key(domain) + ".json")


def _record_from_json(data):
    nics = tuple(GuestNic(str(n["mac"]), n.get("tap"), n.get("alias")) for n in data.get("nics", ()))
    return GuestRecord(str(data["domain"]), bool(data["running"]), nics)


def load_runtime(config_dir, current_boot=None):
    """({domain: GuestRecord} of this boot, warnings).  An unreadable record is skipped with a
    warning: its guest then falls back to MAC-based placement."""
    current_boot = boot_id() if current_boot is None else current_boot
    folder = runtime_dir(config_dir)
    records, warnings = {}, []
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        if not entry.endswith(".json"):
            continue  # our own temporary files, or something an admin left: not ours to judge
        path = os.path.join(folder, entry)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if data.get("boot_id", "") != current_boot:
                continue
            record = _record_from_json(data)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            warnings.append("runtime record %s is unreadable (%s): ignored; the next start of its guest "
                            "rewrites it" % (path, exc))
            continue
        records[record.domain] = record
    return records, warnings


def save_record(config_dir, record: GuestRecord, current_boot=None):
    """Write (atomically) what the hook saw of one domain."""
    current_boot = boot_id() if current_boot is None else current_boot
    data = {
        "domain": record.domain,
        "boot_id": current_boot,
        "running": record.running,
        "nics": [{"mac": n.mac, "tap": n.tap, "alias": n.alias} for n in record.nics],
    }
    folder = runtime_dir(config_dir)
    try:
        os.makedirs(folder, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise StoreError("cannot create %s: %s; fix config_dir" % (folder, exc.strerror or exc), path=folder)
    atomic_replace(record_path(config_dir, record.domain),
                   (json.dumps(data, sort_keys=True, indent=1) + "\n").encode())
