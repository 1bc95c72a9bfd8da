# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How long resolving filterref trees takes: hostile shapes and the ordinary case.

Pure engine, no root. Prints one line per case (median of --runs runs, milliseconds):

  doubling-40     forty filters each referencing the next twice: refused (limit) before expansion
  doubling-60-0   sixty such filters without rules: one visit per (filter, variables) pair
  chain-N         an N-deep chain of references ending in one rule
  nics-N          N NICs bound to libvirt's clean-traffic, one shared memo (what a host apply does)

Usage: .venv/bin/python bench/resolve_bench.py [--runs 5]
"""

import argparse
import glob
import os
import statistics
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path[:0] = [os.path.join(ROOT, "tests")]
import conftest  # noqa: E402,F401 pylint: disable=unused-import

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ResolveError  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _fx  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import resolve as _resolve  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import (  # noqa: E402
    Binding, Filter, FilterRef, Match, Rule)


def _rule(port):
    return Rule("accept", "in", 500, True, (Match("tcp", (("dstportstart", str(port)),)),))


def doubling(depth, with_rules=True):
    return {"f%d" % n: Filter("f%d" % n, entries=((_rule(1000 + n),) if with_rules else ())
                              + ((FilterRef("f%d" % (n + 1)),) * 2 if n + 1 < depth else ()))
            for n in range(depth)}


def chain(depth):
    return {"c%d" % n: Filter("c%d" % n, entries=(FilterRef("c%d" % (n + 1)),) if n + 1 < depth else (_rule(22),))
            for n in range(depth)}


def default_filters():
    out = {}
    for path in glob.glob(os.path.join(ROOT, "roles", "default_filters", "files", "*.xml")):
        with open(path, encoding="utf-8") as handle:
            flt, _warnings = _fx.parse_filter_xml(handle.read())
        out[flt.name] = flt
    return out


def timed(func, runs):
    samples = []
    for _run in range(runs):
        start = time.perf_counter()
        func()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def refused(graph, top):
    def run():
        try:
            _resolve.instantiate(Binding("vnet0", "52:54:00:00:00:01", top, ()), graph)
        except ResolveError:
            return
        raise AssertionError("expected the limit to refuse %s" % top)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    cases = [("doubling-40", refused(doubling(40), "f0")),
             ("doubling-60-0", lambda: _resolve.instantiate(Binding("vnet0", "52:54:00:00:00:01", "f0", ()),
                                                            doubling(60, with_rules=False)))]
    for depth in (1000, 5000):
        graph = chain(depth)
        cases.append(("chain-%d" % depth, lambda g=graph: _resolve.instantiate(
            Binding("vnet0", "52:54:00:00:00:01", "c0", ()), g)))
    filters = default_filters()
    for count in (100, 1000):
        bindings = [Binding("vnet%d" % n, "52:54:00:%02x:%02x:01" % (n // 256, n % 256), "clean-traffic",
                            (("IP", "10.0.%d.%d" % (n // 256, n % 256)),)) for n in range(count)]

        def nics(bindings=bindings):
            memo = _resolve.new_memo()
            for binding in bindings:
                _resolve.instantiate(binding, filters, memo)
        cases.append(("nics-%d" % count, nics))
    print("%-16s %10s" % ("case", "ms"))
    for name, func in cases:
        print("%-16s %10.1f" % (name, timed(func, runs)))


if __name__ == "__main__":
    main()
