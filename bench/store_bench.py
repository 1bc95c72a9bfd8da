# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host store's cost at N = 1, 100, 1,000 bindings: format 1 (one file per object) vs the document.

Run with the venv python (no root needed; not run by CI):

    .venv/bin/python bench/store_bench.py [--runs 5] [--dir /var/tmp] [--before REV]

"before" is the store module of git revision REV (default: the last one with the format 1 writer),
loaded next to today's; "after" is today's.  Figures are medians of --runs runs, in seconds, with
the fsyncs each commit made.  --dir picks the file system: fsync costs what that disk costs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests")]
import conftest  # noqa: E402,F401 pylint: disable=unused-import

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _fx  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import Binding  # noqa: E402

STORE_PATH = "plugins/module_utils/_engine/host/store.py"
FORMAT_1_REV = "900f534"  # the engine move; its store.py is the format 1 writer
FILTERS = os.path.join(ROOT, "roles", "default_filters", "files")
SIZES = (1, 100, 1000)


def load_before(rev):
    """The store module of ``rev``, imported as a sibling of today's so its relative imports work."""
    code = subprocess.run(["git", "-C", ROOT, "show", "%s:%s" % (rev, STORE_PATH)], capture_output=True,
                          text=True, check=True).stdout
    package = _store.__name__.rsplit(".", 1)[0]
    spec = importlib.util.spec_from_loader(package + "._store_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = package
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(code, "%s@%s" % (STORE_PATH, rev), "exec"), module.__dict__)  # pylint: disable=exec-used
    return module


def default_filters():
    found = {}
    for name in sorted(os.listdir(FILTERS)):
        with open(os.path.join(FILTERS, name), encoding="utf-8") as handle:
            flt = _fx.parse_filter_xml(handle.read())[0]
        found[flt.name] = flt
    return found


def bindings(count):
    made = {}
    for n in range(count):
        b = Binding(portdev="vnet%d" % n, mac="52:54:00:00:%02x:%02x" % (n // 256, n % 256), filter="clean-traffic",
                    parameters=(("IP", "10.0.%d.%d" % (n // 250, n % 250 + 1)),))
        made[b.key] = b
    return made


class FsyncCount:
    def __init__(self):
        self.count = 0
        self._real = os.fsync

    def __enter__(self):
        def counted(fd):
            self.count += 1
            return self._real(fd)
        os.fsync = counted
        return self

    def __exit__(self, *exc):
        os.fsync = self._real


def measure(module, base, count, runs):
    """(seconds to commit N new bindings, fsyncs, seconds to change one of N, fsyncs, seconds to load)."""
    filters = default_filters()
    empty = module.StoreState(filters=filters)
    full = module.StoreState(filters=filters, bindings=bindings(count))
    key = sorted(full.bindings)[0]
    one_changed = full.with_changes(bindings=dict(full.bindings, **{key: Binding(
        portdev=key, mac=full.bindings[key].mac, filter="allow-arp")}))
    bind, change, load, bind_syncs, change_syncs = [], [], [], 0, 0
    for _run in range(runs):
        folder = tempfile.mkdtemp(prefix="hfw-store-bench-", dir=base)
        try:
            config_dir = os.path.join(folder, "store")
            module.write_changes(config_dir, module.StoreState(), empty)
            with FsyncCount() as syncs:
                start = time.perf_counter()
                module.write_changes(config_dir, empty, full)
                bind.append(time.perf_counter() - start)
            bind_syncs = syncs.count
            with FsyncCount() as syncs:
                start = time.perf_counter()
                module.write_changes(config_dir, full, one_changed)
                change.append(time.perf_counter() - start)
            change_syncs = syncs.count
            start = time.perf_counter()
            module.load_store(config_dir)
            load.append(time.perf_counter() - start)
        finally:
            shutil.rmtree(folder)
    return statistics.median(bind), bind_syncs, statistics.median(change), change_syncs, statistics.median(load)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", default="/var/tmp", help="where the throw-away stores go (its disk is measured)")
    parser.add_argument("--before", default=FORMAT_1_REV, help="git revision of the format 1 store")
    args = parser.parse_args()
    before = load_before(args.before)
    print("store cost, median of %d runs, stores in %s" % (args.runs, args.dir))
    print("%-7s %6s | %12s %7s | %12s %7s | %9s" % ("store", "N", "bind N s", "fsyncs", "change 1 s", "fsyncs",
                                                    "load s"))
    for label, module in (("before", before), ("after", _store)):
        for count in SIZES:
            bind, bind_syncs, change, change_syncs, load = measure(module, args.dir, count, args.runs)
            print("%-7s %6d | %12.4f %7d | %12.4f %7d | %9.4f" % (label, count, bind, bind_syncs, change,
                                                                  change_syncs, load))


if __name__ == "__main__":
    main()
