# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU time of the engine's pure phases at N NICs: resolve, nftables compile, xtables compile.

No root, no tools: N clean-traffic bindings (bench/run_bench.py's) resolved and compiled in this
process.  Each figure is the minimum of ``--runs`` runs of ``time.process_time`` (CPU time, which a
loaded machine disturbs far less than wall time).  The digests of the nftables text and of the
xtables ruleset let two checkouts be compared: equal digests, equal output.

    .venv/bin/python bench/engine_cpu_bench.py [--sizes 100,1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_bench as _rb  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import compile_l2 as _nft  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables.writer import render_table  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import compile as _xt  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import resolve as _resolve  # noqa: E402


def best_of(runs, func):
    """(minimum CPU seconds over ``runs`` calls, the last call's result)."""
    best, result = None, None
    for _turn in range(runs):
        start = time.process_time()
        result = func()
        spent = time.process_time() - start
        best = spent if best is None or spent < best else best
    return best, result


def measure(size, runs):
    filters = {f.name: f for f in _rb.default_filters()}
    bindings = [_rb._actions.binding_from_params(item) for item in _rb.binding_items(size)]

    def resolve():
        memo = _resolve.new_memo()
        return [_resolve.instantiate(b, filters, memo) for b in bindings]

    t_resolve, insts = best_of(runs, resolve)
    t_nft, nft = best_of(runs, lambda: _nft.compile_nics(insts))
    t_xt, xt = best_of(runs, lambda: _xt.compile_nics(insts))
    nft_text = "".join(render_table(table) for _key, table in sorted(nft.tables.items()))
    return (size, t_resolve, t_nft, t_xt, hashlib.sha256(nft_text.encode()).hexdigest()[:12],
            hashlib.sha256(repr(sorted(xt.items())).encode()).hexdigest()[:12])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    print("| N | resolve s | nft compile s | xt compile s | nft digest | xt digest |")
    print("|---:|---:|---:|---:|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        print("| %d | %.3f | %.3f | %.3f | %s | %s |" % measure(size, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
