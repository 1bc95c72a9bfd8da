# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the user waits for: ansible-playbook wall time, both backends in one run.

Run as root with the venv python (never run by CI):

    .venv/bin/python bench/playbook_bench.py [--runs 3] [--quick] [--only P,CURVE,HEAL,FLEET]

Every figure is the median over ``--runs`` runs of a whole ``ansible-playbook`` process minus a
trivial playbook (one ``ansible.builtin.ping``) run against the same inventory right before it, so
the controller's start-up cost is taken out and what remains is what the collection adds.
Hosts are network namespaces named ``hfwo-p*`` (deleted on exit), reached with the test
connection plugin ``netns`` (a local ``ip netns exec``: no SSH cost in either figure).

Cases:
  P     P1 bind N NICs to clean-traffic in one guest_nic_filter task (from an empty store),
        P2 the same task again (a converged no-op), P3 nwfilter redefining clean-traffic with
        one more rule while the N NICs are bound; N = 1,000 (100 with --quick).
  CURVE P1 and P2 for N = 1, 10, 100, 1,000, 5,000 (to 100 with --quick).
  HEAL  time from ``nft flush ruleset`` (what a firewall restart does) until every NIC's rules are
        back, with ``hypervisor-firewall-reapply --watch`` running, at N = 1,000.
  FLEET a converged no-op across 20 hosts against ansible.builtin.ping across the same 20 hosts,
        same forks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "integration")]
import conftest  # noqa: E402,F401 pylint: disable=unused-import
from ansible_run import host_vars, run_playbook  # noqa: E402
from run_bench import binding_items, make_host  # noqa: E402

PREFIX = "hfwo-p"
BACKENDS = ("xtables", "nftables")
FILTER_DIR = os.path.join(ROOT, "roles", "default_filters", "files")
REAPPLY = os.path.join(ROOT, "bin", "hypervisor-firewall-reapply")

TRIVIAL = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.ping:
"""

FILTERS = """
- hosts: all
  gather_facts: false
  tasks:
    - hypervisor.firewall.nwfilter:
        xml: "{{ lookup('ansible.builtin.file', item) }}"
        config_dir: "{{ hfw_config_dir }}"
        lock_file: "{{ hfw_lock_file }}"
        backend: "{{ hfw_backend }}"
      loop: "{{ query('ansible.builtin.fileglob', hfw_filter_dir ~ '/*.xml') }}"
"""

BIND = """
- hosts: all
  gather_facts: false
  tasks:
    - hypervisor.firewall.guest_nic_filter:
        bindings: "{{ hfw_bindings }}"
        exclusive: true
        config_dir: "{{ hfw_config_dir }}"
        lock_file: "{{ hfw_lock_file }}"
        backend: "{{ hfw_backend }}"
"""

REDEFINE = """
- hosts: all
  gather_facts: false
  tasks:
    - hypervisor.firewall.nwfilter:
        xml: "{{ hfw_filter_xml }}"
        config_dir: "{{ hfw_config_dir }}"
        lock_file: "{{ hfw_lock_file }}"
        backend: "{{ hfw_backend }}"
"""


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def delete_namespaces():
    for name in sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else ():
        if name.startswith(PREFIX):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


class Lab:
    """Namespace hosts with their stores, and the playbooks run against them."""

    def __init__(self, workdir, backend):
        self.workdir = workdir
        self.backend = backend
        self.hosts = {}

    def add_host(self, name, ports):
        ns = PREFIX + name
        make_host(ns, ports)
        hvars = host_vars(ns, self.workdir)
        hvars.update(hfw_backend=self.backend, hfw_filter_dir=FILTER_DIR)
        shutil.rmtree(os.path.dirname(hvars["hfw_config_dir"]), ignore_errors=True)
        os.makedirs(os.path.dirname(hvars["hfw_config_dir"]))
        self.hosts[ns] = hvars
        return ns

    def inventory(self, hosts=None):
        return {"hypervisors": {h: self.hosts[h] for h in (hosts or self.hosts)}}

    def play(self, text, hosts=None, extra=None, forks=None):
        """Wall time of one ansible-playbook run; raises when a host failed."""
        args = ["--forks", str(forks)] if forks else []
        if extra:
            path = os.path.join(self.workdir, "extra.json")
            with open(path, "w") as handle:
                json.dump(extra, handle)
            args += ["-e", "@" + path]
        start = time.monotonic()
        proc, recap = run_playbook(self.workdir, text, self.inventory(hosts), extra_args=args)
        elapsed = time.monotonic() - start
        if proc.returncode != 0 or any(r["failed"] or r["unreachable"] for r in recap.values()):
            raise RuntimeError("playbook failed (rc %d):\n%s\n%s" % (proc.returncode, proc.stdout[-3000:],
                                                                     proc.stderr[-2000:]))
        return elapsed, recap

    def reset(self, ns):
        """Empty the host's kernel tables and its store's bindings, keep the filters."""
        subprocess.run(["ip", "netns", "exec", ns, "nft", "flush", "ruleset"], check=True)
        store = self.hosts[ns]["hfw_config_dir"]
        template = store + ".filters"
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(template, store, symlinks=True)

    def install_filters(self, ns):
        self.play(FILTERS, hosts=[ns])
        store = self.hosts[ns]["hfw_config_dir"]
        shutil.rmtree(store + ".filters", ignore_errors=True)
        shutil.copytree(store, store + ".filters", symlinks=True)


def median(values):
    return statistics.median(values)


def clean_traffic_variant(extra_rules):
    """libvirt's clean-traffic with ``extra_rules`` more drop rules (so every run changes it)."""
    with open(os.path.join(FILTER_DIR, "clean-traffic.xml")) as handle:
        text = handle.read()
    rules = "".join("<rule action='drop' direction='out' priority='500'><tcp dstportstart='%d'/></rule>"
                    % (2500 + i) for i in range(extra_rules))
    return text.replace("</filter>", rules + "</filter>")


def bind_vars(count):
    return {"hfw_bindings": binding_items(count)}


def measure_p(lab, ns, count, runs, with_p3=True):
    """P1, P2, P3 at ``count`` NICs on host ``ns``: medians of (playbook - the trivial run before it).

    Each measured run is paired with a trivial run right before it, so a load change on the machine
    during the bench shifts both figures of a pair alike.
    """
    p1, p2, p3 = [], [], []
    for run in range(runs):
        lab.reset(ns)
        base = lab.play(TRIVIAL, [ns])[0]
        p1.append(lab.play(BIND, [ns], bind_vars(count))[0] - base)
        base = lab.play(TRIVIAL, [ns])[0]
        elapsed, recap = lab.play(BIND, [ns], bind_vars(count))
        if recap[ns]["changed"]:
            raise RuntimeError("P2 was not a no-op at N=%d (%s)" % (count, lab.backend))
        p2.append(elapsed - base)
        if with_p3:
            base = lab.play(TRIVIAL, [ns])[0]
            p3.append(lab.play(REDEFINE, [ns], {"hfw_filter_xml": clean_traffic_variant(run + 1)})[0] - base)
    return median(p1), median(p2), (median(p3) if p3 else None)


def trivial(lab, hosts, runs, forks=None):
    return median([lab.play(TRIVIAL, hosts, forks=forks)[0] for _run in range(runs)])


def chains_present(ns, backend):
    """True when the host's kernel holds our rules for vnet0 and the last NIC again."""
    listing = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"], capture_output=True,
                             text=True, check=False).stdout
    return "vnet0" in listing and "hfw" in listing if backend == "nftables" else "I-vnet0-" in listing


def measure_heal(lab, ns, count, runs):
    """Seconds from ``nft flush ruleset`` until the watcher has put the rules back."""
    lab.reset(ns)
    lab.play(BIND, [ns], bind_vars(count))
    hvars = lab.hosts[ns]
    watcher = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, REAPPLY, "--watch", "0.5", "--quiet",
                                "--config-dir", hvars["hfw_config_dir"], "--lock-file", hvars["hfw_lock_file"]])
    times = []
    try:
        time.sleep(2.0)
        for _run in range(runs):
            start = time.monotonic()
            subprocess.run(["ip", "netns", "exec", ns, "nft", "flush", "ruleset"], check=True)
            while not chains_present(ns, lab.backend):
                if time.monotonic() - start > 60:
                    raise RuntimeError("rules did not come back within 60 s (%s)" % lab.backend)
                time.sleep(0.02)
            times.append(time.monotonic() - start)
            time.sleep(1.0)
    finally:
        watcher.terminate()
        watcher.wait(timeout=30)
    return median(times)


def measure_fleet(lab, hosts, runs, ports):
    """(no-op playbook, ping playbook) medians across ``hosts`` with forks = len(hosts)."""
    forks = len(hosts)
    for ns in hosts:
        lab.install_filters(ns)
    lab.play(BIND, hosts, bind_vars(ports), forks=forks)
    noop, ping = [], []
    for _run in range(runs):
        elapsed, recap = lab.play(BIND, hosts, bind_vars(ports), forks=forks)
        if any(r["changed"] for r in recap.values()):
            raise RuntimeError("fleet no-op changed something")
        noop.append(elapsed)
        ping.append(lab.play(TRIVIAL, hosts, forks=forks)[0])
    return median(noop), median(ping)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="N up to 100, 4 fleet hosts")
    parser.add_argument("--only", default="P,CURVE,HEAL,FLEET")
    args = parser.parse_args(argv)
    cases = set(args.only.split(","))
    big = 100 if args.quick else 1000
    sizes = (1, 10, 100) if args.quick else (1, 10, 100, 1000, 5000)
    fleet_hosts = 4 if args.quick else 20
    if os.geteuid() != 0:
        raise SystemExit("run as root (network namespaces)")
    workdir = tempfile.mkdtemp(prefix="hfw-pbench-")
    results = {}
    try:
        for backend in BACKENDS:
            lab = Lab(os.path.join(workdir, backend), backend)
            os.makedirs(lab.workdir)
            ns = lab.add_host("%s-big" % backend[:2], max(sizes + (big,)) if "CURVE" in cases else big)
            lab.install_filters(ns)
            base = trivial(lab, [ns], args.runs)
            res = results[backend] = {"trivial": base}
            log("%s: trivial playbook %.2f s" % (backend, base))
            if "P" in cases:
                res["P"] = measure_p(lab, ns, big, args.runs)
                log("%s: P1 %.2f P2 %.2f P3 %.2f (minus trivial)" % ((backend,) + res["P"]))
            if "CURVE" in cases:
                res["curve"] = {}
                for count in sizes:
                    p1, p2, _p3 = measure_p(lab, ns, count, 1 if count >= 5000 else args.runs, with_p3=False)
                    res["curve"][count] = (p1, p2)
                    log("%s: N=%d P1 %.2f P2 %.2f" % (backend, count, p1, p2))
            if "HEAL" in cases:
                res["heal"] = measure_heal(lab, ns, big, args.runs)
                log("%s: heal %.2f s" % (backend, res["heal"]))
            if "FLEET" in cases:
                hosts = [lab.add_host("%s-f%d" % (backend[:2], i), 10) for i in range(fleet_hosts)]
                res["fleet"] = measure_fleet(lab, hosts, args.runs, 10)
                log("%s: fleet no-op %.2f ping %.2f" % ((backend,) + res["fleet"]))
            delete_namespaces()
    finally:
        delete_namespaces()
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(results, big, fleet_hosts, args.runs)


def print_report(results, big, fleet_hosts, runs):
    print("ansible-playbook wall time minus the trivial playbook run before it, median of %d runs, N = %d" % (runs, big))
    print("| backend | trivial | P1 bind | P2 no-op | P3 redefine |")
    print("|---|---|---|---|---|")
    for backend, res in results.items():
        p = res.get("P")
        cells = ["%.2f s" % v for v in p] if p else ["-"] * 3
        print("| %s | %.2f s | %s |" % (backend, res["trivial"], " | ".join(cells)))
    if any("curve" in r for r in results.values()):
        print("\nscaling (P1 / P2, minus trivial)")
        sizes = sorted(next(r["curve"] for r in results.values() if "curve" in r))
        print("| backend | " + " | ".join("N=%d" % n for n in sizes) + " |")
        print("|---|" + "---|" * len(sizes))
        for backend, res in results.items():
            if "curve" in res:
                print("| %s | " % backend + " | ".join("%.2f / %.2f" % res["curve"][n] for n in sizes) + " |")
    for backend, res in results.items():
        if "heal" in res:
            print("\nre-apply after nft flush ruleset at N = %d, %s, watcher running: %.2f s" % (big, backend, res["heal"]))
    for backend, res in results.items():
        if "fleet" in res:
            noop, ping = res["fleet"]
            print("fleet of %d hosts, %s: no-op %.2f s, ping %.2f s, ratio %.2f"
                  % (fleet_hosts, backend, noop, ping, noop / ping))


if __name__ == "__main__":
    main()
