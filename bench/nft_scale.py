# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the nftables backend's shared rules against the xtables backend's per-NIC copies.

Run as root with the venv python (not run by CI; needs iperf3 for part B):

    /tmp/venv/bin/python bench/nft_scale.py [--sizes 1,10,100,1000] [--seconds 4] [--runs 3]

A. rules as N grows: every NIC bound to clean-traffic; rules the kernel holds for them (compiled,
   no root needed): xtables rules + hook rules vs nftables rules, and the nft set elements.
B. per-packet cost: a lab (tests/lab) where guest g0 floods guest g1 with 64-byte UDP (iperf3,
   unlimited rate) for --seconds; g0's tap and N-1 veth devices are bound to clean-traffic (the
   dummies sort before vnet0, so xtables' linear per-interface jumps are walked in full).  The
   figure is the median over --runs of the packets per second g1 received.
Namespaces are named ``hfwtb-*`` and deleted on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "integration")]
import conftest  # noqa: E402,F401 pylint: disable=unused-import

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import compile_l2 as _compile_nft  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables.tables import L2 as L2_TABLE  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables.writer import render_table  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import compile as _compile_xt  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import transitions as _ops  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import resolve as _resolve  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import Binding  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner  # noqa: E402
from lab import Lab  # noqa: E402

FILTER_DIR = os.path.join(ROOT, "roles", "default_filters", "files")
PREFIX = "hfwtb"


def default_filters():
    out = []
    for name in sorted(os.listdir(FILTER_DIR)):
        with open(os.path.join(FILTER_DIR, name), encoding="utf-8") as handle:
            parsed = _filterxml.parse_filter_xml(handle.read())
        out.append(parsed[0] if isinstance(parsed, tuple) else parsed)
    return out


def binding(dev, index, ip=None, mac=None):
    mac = mac or "52:54:01:%02x:%02x:%02x" % (index >> 16 & 255, index >> 8 & 255, index & 255)
    ip = ip or "10.%d.%d.%d" % (index >> 16 & 255, index >> 8 & 255, index & 255)
    return Binding(portdev=dev, mac=mac, filter="clean-traffic", parameters=(("IP", ip),))


def rule_counts(sizes):
    filters = {f.name: f for f in default_filters()}
    rows = []
    for size in sizes:
        insts = [_resolve.instantiate(binding("dm%04d" % i, i), filters) for i in range(size)]
        xt = _compile_xt.compile_nics(insts)
        xt_rules = sum(len(c.rules) for st in xt.values() for c in st.chains.values())
        xt_rules += sum(len(st.hooks) for st in xt.values())
        nft = _compile_nft.compile_nics(insts)
        text = render_table(nft.tables[L2_TABLE])
        elements = sum(line.count(' . "') + line.count('" : ') for line in text.splitlines())
        rows.append((size, xt_rules, nft.rule_count, elements))
    return rows


def flood(lab, seconds):
    """Packets per second g1 received from an unlimited 64-byte UDP flood by g0."""
    server = subprocess.Popen(["ip", "netns", "exec", lab.guests[1].ns, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        out = lab.exec("g0", ["iperf3", "-c", lab.guests[1].ipv4, "-u", "-b", "0", "-l", "64",
                              "-t", str(seconds), "-J"]).stdout
    finally:
        server.wait(timeout=30)
    summary = json.loads(out)["end"]["sum"]
    return (summary["packets"] - summary["lost_packets"]) / summary["seconds"]


def bind(lab, workdir, backend, devices):
    guest = lab.guests[0]
    items = [binding(guest.tap, 0, guest.ipv4, guest.mac)] + [binding(dev, i + 1) for i, dev in enumerate(devices)]
    filters = default_filters()

    def mutate(state):
        for flt in filters:
            state = _ops.define_filter(state, flt)
        return _ops.set_bindings(state, items, exclusive=True), []
    started = time.monotonic()
    _service.reconcile(os.path.join(workdir, "store"), mutate, HostRunner(prefix=lab.hv_prefix), False,
                       lock_file=os.path.join(workdir, "lock"), backend=backend)
    return time.monotonic() - started


def packet_cost(big, seconds, runs):
    rows = []
    with Lab(PREFIX, guests=2) as lab, tempfile.TemporaryDirectory() as workdir:
        dummies = ["dm%04d" % i for i in range(big - 1)]
        # veth pairs: this kernel has no dummy driver
        batch = "".join("link add %s type veth peer name p%s\n" % (dev, dev) for dev in dummies)
        lab.exec("hv", ["ip", "-batch", "-"], input=batch)
        for backend in ("xtables", "nftables"):
            for size in (1, big):
                apply_s = bind(lab, workdir, backend, dummies[:size - 1])
                lab.exec("g0", ["ping", "-c", "1", "-W", "2", lab.guests[1].ipv4])
                pps = statistics.median(flood(lab, seconds) for i in range(runs))
                rows.append((backend, size, apply_s, pps))
                print("  %s N=%d: %.0f pps" % (backend, size, pps), file=sys.stderr)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100,1000")
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rules-only", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print("A. rules for N NICs bound to clean-traffic\n")
    print("| N | xtables rules | nftables rules | nftables set/map elements |\n|---|---|---|---|")
    for row in rule_counts(sizes):
        print("| %d | %d | %d | %d |" % row)
    if args.rules_only:
        return
    print("\nB. 64-byte UDP flood g0 -> g1, packets/s received (median of %d x %d s)\n" % (args.runs, args.seconds))
    print("| backend | bound NICs | apply s | packets/s | vs N=1 |\n|---|---|---|---|---|")
    base = {}
    for backend, size, apply_s, pps in packet_cost(max(sizes), args.seconds, args.runs):
        base.setdefault(backend, pps)
        print("| %s | %d | %.2f | %.0f | %+.1f %% |" % (backend, size, apply_s, pps, 100.0 * (pps / base[backend] - 1)))


if __name__ == "__main__":
    main()
