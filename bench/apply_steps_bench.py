# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What make-before-break costs: the two-step xtables apply against the one-step one it replaced.

As root: ``.venv/bin/python bench/apply_steps_bench.py [--sizes 10,100,1000] [--runs 3]``.  For N
NICs on a namespace host (bridge br0, veth ports vnet0..), each row is the median wall time of one
``guest_nic_filter`` call and the number of ``*-restore`` runs it made, for two changes:

- ``move``: every NIC goes from ``clean-traffic`` (ebtables only) to an iptables-only filter and
  back, so old chains leave one tool while new ones enter another (two steps: make, then break);
- ``edit``: every NIC's ``IP`` parameter changes, chains are rewritten in place (one step).

``one-step`` is the old order, measured by swapping in the direct plan (one restore per tool that
removes and adds at once).  Namespaces are named ``hfwo-s*`` and deleted on exit.  Not run by CI.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "bench")]

import run_bench as B  # noqa: E402  (puts the collection on sys.path)

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import apply as _apply  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.plan import plan  # noqa: E402

IP_ONLY = """<filter name='hfw-ip-only' chain='root'>
  <rule action='drop' direction='out' priority='500'><udp/></rule>
  <rule action='drop' direction='out' priority='500'><udp-ipv6/></rule>
</filter>
"""


def one_step(runner, scope, target, live, positions, order, progress):
    """The old apply: one restore per tool, removals and additions in the same transaction."""
    del scope
    _apply._restore_each(runner, plan(target, live, positions), order, progress)


class CountingRunner(B._runner.HostRunner):
    def __init__(self, prefix):
        super().__init__(prefix=prefix)
        self.restores = 0

    def restore(self, tool, payload):
        self.restores += 1
        return super().restore(tool, payload)


def timed(store, workdir, ns, items):
    runner = CountingRunner(["ip", "netns", "exec", ns])
    started = time.monotonic()
    result = _actions.guest_nic_filter(B.nic_params(store, workdir, items), False, runner)
    assert result["changed"]
    return time.monotonic() - started, runner.restores


def bench(size, runs, workdir):
    ns = B.make_host(B.PREFIX.replace("-b", "-s") + str(size), size)
    template = B.make_filter_store(os.path.join(workdir, "filters-%d" % size), ns, workdir)
    B._actions.nwfilter(dict(config_dir=template, lock_file=os.path.join(workdir, "lock"), lock_timeout=30,
                             name=None, xml=IP_ONLY, definition=None, strict=False, state="present"),
                        False, B.host_runner(ns))
    base = B.binding_items(size)
    moved = [dict(item, filter="hfw-ip-only") for item in base]
    edited = [dict(item, parameters={"IP": "172.16.%d.%d" % (i >> 8, i & 255)}) for i, item in enumerate(base)]
    rows = []
    try:
        for label, transition in (("two-step", _apply._transition), ("one-step", one_step)):
            _apply._transition = transition
            store = B.fresh_store(template, workdir, "%d-%s" % (size, label))
            B.flush_rules(ns)
            timed(store, workdir, ns, base)
            for change, target in (("move", moved), ("edit", edited)):
                samples = []
                for _run in range(runs):
                    samples.append(timed(store, workdir, ns, target))
                    timed(store, workdir, ns, base)
                seconds = statistics.median(s for s, _n in samples)
                rows.append((size, change, label, seconds, samples[0][1]))
    finally:
        _apply._transition = TWO_STEP
        B.subprocess.run(["ip", "netns", "del", ns], check=False)
    return rows


TWO_STEP = _apply._transition


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for size in [int(s) for s in args.sizes.split(",")]:
            rows += bench(size, args.runs, workdir)
            print("N=%d done" % size, file=sys.stderr)
    print("%6s  %-5s  %-8s  %9s  %8s" % ("NICs", "change", "apply", "median s", "restores"))
    for size, change, label, seconds, restores in rows:
        print("%6d  %-5s  %-8s  %9.3f  %8d" % (size, change, label, seconds, restores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
