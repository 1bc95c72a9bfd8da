# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmarks: one-transaction apply at scale, side by side with per-command application.

Run as root with the venv python (not run by CI):

    /tmp/venv/bin/python bench/run_bench.py [--runs 3] [--quick] [--only P1,P2]

Every case runs in throw-away network namespaces named ``hfwo-b*``, deleted on exit.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "integration")]
# links the checkout as ansible_collections.hypervisor.firewall
import conftest  # noqa: E402,F401 pylint: disable=unused-import

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import apply as _apply  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import compile as _compile_xt  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import transitions as _ops  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import resolve as _resolve  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import runner as _runner  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.plan import plan  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import Scope  # noqa: E402

PREFIX = "hfwo-b"
FILTER_DIR = os.path.join(ROOT, "roles", "default_filters", "files")
FULL = dict(sizes=(1, 10, 100, 1000), big=1000, hosts=(1, 5, 20), sample=10)
QUICK = dict(sizes=(1, 10, 50), big=50, hosts=(1, 2), sample=5)
CASES = ("P1", "P2", "P3", "P4", "P6", "MEM")
CMD_BIN = {"eb": "ebtables", "ip4": "iptables", "ip6": "ip6tables"}


# ------------------------------------------------------------------ namespaces and stores

def ns_exec(ns, argv, data=None):
    proc = subprocess.run(["ip", "netns", "exec", ns] + list(argv), input=data, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError("%s in %s failed (rc %d): %s" % (" ".join(argv), ns, proc.returncode, proc.stderr.strip()))
    return proc.stdout


def make_host(ns, ports):
    """A namespace with bridge br0 and ``ports`` veth ports vnet0.. on it, built by one ``ip -batch``."""
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    lines = ["link add br0 type bridge", "link set br0 up"]
    for i in range(ports):
        lines += ["link add vnet%d type veth peer name p%d" % (i, i), "link set vnet%d master br0 up" % i]
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n", text=True, check=True)
    return ns


def delete_namespaces():
    for name in sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else ():
        if name.startswith(PREFIX):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def flush_rules(ns):
    """Empty every table in the namespace (all three tools are the nft variant here)."""
    ns_exec(ns, ["nft", "flush", "ruleset"])


def default_filters():
    filters = []
    for name in sorted(os.listdir(FILTER_DIR)):
        with open(os.path.join(FILTER_DIR, name)) as handle:
            filters.append(_filterxml.parse_filter_xml(handle.read(), strict=True)[0])
    return filters


def make_filter_store(path, ns, workdir):
    """A store holding libvirt's 24 default filters and no bindings."""
    filters = default_filters()

    def mutate(state):
        for flt in filters:
            state = _ops.define_filter(state, flt)
        return state, []

    _service.reconcile(path, mutate, _runner.HostRunner(prefix=["ip", "netns", "exec", ns]), False,
                       lock_file=os.path.join(workdir, "lock"))
    return path


def fresh_store(template, workdir, tag):
    path = os.path.join(workdir, "store-%s" % tag)
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(template, path)
    return path


def binding_items(count):
    """clean-traffic on vnet0.. with a distinct MAC and IP each (the IP is 10.0.0.1 for vnet0)."""
    return [dict(portdev="vnet%d" % i, mac="52:54:00:%02x:%02x:%02x" % (i >> 16, (i >> 8) & 255, i & 255),
                 filter="clean-traffic",
                 parameters={"IP": "10.%d.%d.%d" % ((i + 1) >> 16, ((i + 1) >> 8) & 255, (i + 1) & 255)})
            for i in range(count)]


def nic_params(store, workdir, items):
    return dict(state="present", config_dir=store, lock_file=os.path.join(workdir, "lock"), lock_timeout=30,
                bindings=items, portdev=None, mac=None, filter=None, parameters=None, binding_xml=None,
                exclusive=False, takeover=False)


# ------------------------------------------------------------------ measuring

class Counted:
    """Wall time, Runner.run calls and child processes of one measured call."""

    def __init__(self):
        self.seconds = self.runs = self.children = self.tool_seconds = 0


@contextlib.contextmanager
def measured():
    """Count Runner.run calls (the seam meant to spawn tools) and every child process started.

    Children are counted at subprocess.Popen, which every spawn in this process goes through,
    so a command run outside the Runner would show up as children > run() calls.
    """
    counted = Counted()
    original_run, original_popen = _runner.Runner.run, subprocess.Popen.__init__

    def counting_run(self, argv, data=None):
        counted.runs += 1
        start = time.perf_counter()
        try:
            return original_run(self, argv, data)
        finally:
            counted.tool_seconds += time.perf_counter() - start

    def counting_popen(self, *args, **kwargs):
        counted.children += 1
        original_popen(self, *args, **kwargs)

    _runner.Runner.run, subprocess.Popen.__init__ = counting_run, counting_popen
    start = time.perf_counter()
    try:
        yield counted
    finally:
        counted.seconds = time.perf_counter() - start
        _runner.Runner.run, subprocess.Popen.__init__ = original_run, original_popen


def median_of(runs, once):
    """Run ``once()`` (returns a Counted) ``runs`` times; median times, the last run's counts."""
    results = [once() for i in range(runs)]
    last = results[-1]
    last.seconds = statistics.median(r.seconds for r in results)
    last.tool_seconds = statistics.median(r.tool_seconds for r in results)
    return last


def host_runner(ns):
    return _runner.HostRunner(prefix=["ip", "netns", "exec", ns])


def apply_bindings(ns, store, workdir, items):
    with measured() as counted:
        result = _actions.guest_nic_filter(nic_params(store, workdir, items), False, host_runner(ns))
    counted.result = result
    return counted


# ------------------------------------------------------------------ the per-command baseline

def desired_for(items):
    """The ruleset our engine computes for these bindings (pure: resolve + compile)."""
    filters = {f.name: f for f in default_filters()}
    insts = [_resolve.instantiate(_actions.binding_from_params(item), filters) for item in items]
    return _compile_xt.compile_nics(insts)


def per_command_argvs(ruleset):
    """The libvirt way: one tool run per chain (-N), per rule (-A) and per hook (-I)."""
    chains, rules, hooks = [], [], []
    for (tool, table), state in sorted(ruleset.items()):
        head = [CMD_BIN[tool]] + ([] if tool == "eb" else ["-w"]) + ["-t", table]
        for name in sorted(state.chains):
            chains.append(head + ["-N", name])
            rules += [head + ["-A", name] + shlex.split(rule) for rule in state.chains[name].rules]
        seen = {}
        for builtin, rule in state.hooks:
            seen[builtin] = seen.get(builtin, 0) + 1
            hooks.append(head + ["-I", builtin, str(seen[builtin])] + shlex.split(rule))
    return chains + rules + hooks


def measure_per_command(ns, items):
    """Seconds per command, applying ``items`` command by command in the empty namespace ``ns``.

    Checks that the commands built exactly the rules our engine would (plan is empty).
    """
    desired = desired_for(items)
    argvs = per_command_argvs(desired)
    flush_rules(ns)
    start = time.perf_counter()
    for argv in argvs:
        ns_exec(ns, argv)
    seconds = time.perf_counter() - start
    live, positions = _apply.read_live(host_runner(ns), Scope())
    rest = plan(desired, live, positions)
    if not rest.is_empty():
        raise RuntimeError("per-command baseline built different rules:\n%s" % rest.diff())
    flush_rules(ns)
    return seconds / len(argvs)


def baseline(ns, sizes, sample, runs):
    """{N: (commands, estimated seconds)}: a measured per-command cost times N's command count."""
    per_cmd = statistics.median(measure_per_command(ns, binding_items(min(sample, max(sizes))))
                                for i in range(runs))
    out = {}
    for size in sizes:
        count = len(per_command_argvs(desired_for(binding_items(size))))
        out[size] = (count, per_cmd * count)
    return per_cmd, out


# ------------------------------------------------------------------ cases

class Bench:
    def __init__(self, args, conf, workdir):
        self.args, self.conf, self.workdir = args, conf, workdir
        self.rows, self.notes = [], []
        self.ns = make_host(PREFIX + "-hv", conf["big"])
        self.template = make_filter_store(os.path.join(workdir, "filters"), self.ns, workdir)

    def row(self, case, size, counted, base=None, note="", counts=True):
        ratio = "%.0fx" % (base / counted.seconds) if base else ""
        runs, children, tools = ("", "", "")
        if counts:
            runs, children, tools = str(counted.runs), str(counted.children), "%.3f" % counted.tool_seconds
        self.rows.append((case, str(size), "%.3f" % counted.seconds, tools, runs, children,
                          "%.1f" % base if base else "", ratio, note))

    def bind_fresh(self, size, tag):
        flush_rules(self.ns)
        store = fresh_store(self.template, self.workdir, tag)
        counted = apply_bindings(self.ns, store, self.workdir, binding_items(size))
        if len(counted.result["rebuilt_devices"]) != size:
            raise RuntimeError("P1 N=%d rebuilt %d devices" % (size, len(counted.result["rebuilt_devices"])))
        return counted, store

    def p1(self):
        # the tools do not check device names: an empty namespace is enough for the baseline
        empty = make_host(PREFIX + "-base", 0)
        per_cmd, base = baseline(empty, self.conf["sizes"], self.conf["sample"], self.args.runs)
        self.notes.append("per-command cost measured: %.2f ms per tool run (sample of %d NICs, empty "
                          "namespace); baseline = that x the command count, a LOWER BOUND"
                          % (per_cmd * 1000, self.conf["sample"]))
        for size in self.conf["sizes"]:
            counted = median_of(self.args.runs, lambda: self.bind_fresh(size, "p1")[0])
            count, seconds = base[size]
            self.row("P1 bind", size, counted, seconds, "baseline: %d commands" % count)
        self.per_command_when_full()

    def per_command_when_full(self):
        """For scale only: a per-command NIC added once N NICs are loaded (how libvirt's last NIC fares)."""
        size = self.conf["big"]
        self.bind_fresh(size, "full")
        extra = binding_items(size + self.conf["sample"])[size:]
        argvs = [argv for argv in per_command_argvs(desired_for(extra)) if argv[0] == CMD_BIN["eb"]]
        start = time.perf_counter()
        for argv in argvs:
            ns_exec(self.ns, argv)
        per_cmd = (time.perf_counter() - start) / len(argvs)
        self.notes.append("per-command cost with %d NICs already loaded: %.2f ms per tool run (%d ebtables "
                          "commands for %d more NICs), for comparison with the empty-namespace figure above"
                          % (size, per_cmd * 1000, len(argvs), len(extra)))

    def p2(self):
        size = self.conf["big"]
        _counted, store = self.bind_fresh(size, "p2")

        def once():
            counted = apply_bindings(self.ns, store, self.workdir, binding_items(size))
            if counted.result["changed"]:
                raise RuntimeError("P2: the re-run reported changed")
            return counted

        self.row("P2 no-op", size, median_of(self.args.runs, once), note="changed=false")

    def p3(self):
        size = self.conf["big"]
        _counted, store = self.bind_fresh(size, "p3")
        with open(os.path.join(FILTER_DIR, "clean-traffic.xml")) as handle:
            original = handle.read()
        turn = [0]

        def once():
            turn[0] += 1
            extra = ('<rule action="drop" direction="out" priority="-700"><mac protocolid="0x%04x"/></rule>'
                     % (0x88b5 + turn[0]))
            xml = original.replace("</filter>", extra + "</filter>")
            params = dict(nic_params(store, self.workdir, None), xml=xml, definition=None, name=None, strict=True)
            with measured() as counted:
                result = _actions.nwfilter(params, False, host_runner(self.ns))
            if len(result["rebuilt_devices"]) != size:
                raise RuntimeError("P3 rebuilt %d of %d devices" % (len(result["rebuilt_devices"]), size))
            return counted

        self.row("P3 redefine", size, median_of(self.args.runs, once), note="all NICs rebuilt")

    def p4(self):
        for case, size, _t, _tools, runs, children, _base, _ratio, note in list(self.rows):
            if case == "P1 bind":
                self.rows.append(("P4 procs/apply", size, "", "", runs, children, "", "",
                                  "per-command: %s processes" % note.split()[1]))

    def child_argv(self, tag):
        """argv of a fresh process that applies N bindings from scratch (see child_apply)."""
        flush_rules(self.ns)
        store = fresh_store(self.template, self.workdir, tag)
        request = json.dumps(dict(ns=self.ns, store=store, workdir=self.workdir, size=self.conf["big"]))
        return [sys.executable, os.path.abspath(__file__), "--child", request]

    def mem(self):
        child = subprocess.Popen(self.child_argv("mem"), stdout=subprocess.PIPE, text=True)
        out = child.stdout.read()
        _pid, status, usage = os.wait4(child.pid, 0)
        if status != 0:
            raise RuntimeError("memory child failed (status %d)" % status)
        report = json.loads(out)
        self.notes.append("peak memory at N=%d: module process %.1f MiB (its own ru_maxrss); largest "
                          "process of its tree incl. the tools %.1f MiB (wait4); apply took %.2f s"
                          % (self.conf["big"], report["maxrss_kib"] / 1024, usage.ru_maxrss / 1024,
                             report["seconds"]))
        self.census()

    def census(self):
        """Every process the apply starts, all generations, counted by strace (not timed)."""
        if shutil.which("strace") is None:
            self.notes.append("process census skipped: strace is not installed")
            return
        trace = os.path.join(self.workdir, "census.trace")
        subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", trace] + self.child_argv("census"),
                       check=True, capture_output=True)
        with open(trace) as handle:
            execs = [line for line in handle if "execve(" in line]
        pids = {line.split()[0] for line in execs}
        programs = sorted({os.path.basename(line.split('"')[1]) for line in execs})
        self.notes.append("process census at N=%d (strace -f, every generation): %d processes besides the "
                          "module itself; programs run: %s"
                          % (self.conf["big"], len(pids) - 1, ", ".join(programs)))

    def p6(self):
        from ansible_run import host_vars, run_playbook
        for hosts in self.conf["hosts"]:
            inventory = {}
            for index in range(hosts):
                ns = make_host("%s-h%d" % (PREFIX, index), 3)
                hv = host_vars(ns, self.workdir)
                store = os.path.join(self.workdir, ns, "store")
                shutil.rmtree(store, ignore_errors=True)
                shutil.copytree(self.template, store)
                apply_bindings(ns, store, self.workdir, binding_items(3))
                hv["hfw_bindings"] = binding_items(3)
                inventory[ns] = hv

            def once():
                with measured() as counted:
                    proc, recap = run_playbook(self.workdir, PLAYBOOK, {"bench": inventory},
                                               extra_args=["--forks", str(hosts)])
                bad = {h: r for h, r in recap.items() if r["changed"] or r["failed"] or r["unreachable"]}
                if proc.returncode != 0 or bad or len(recap) != hosts:
                    raise RuntimeError("P6 playbook run failed: %s\n%s" % (bad, proc.stdout[-2000:]))
                return counted

            self.row("P6 playbook", "%d host%s" % (hosts, "s" if hosts > 1 else ""),
                     median_of(self.args.runs, once), note="no-op, --forks %d" % hosts, counts=False)
            for ns in inventory:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


PLAYBOOK = """\
- hosts: bench
  gather_facts: false
  tasks:
    - name: Bind clean-traffic to a few NICs
      hypervisor.firewall.guest_nic_filter:
        config_dir: "{{ hfw_config_dir }}"
        lock_file: "{{ hfw_lock_file }}"
        bindings: "{{ hfw_bindings }}"
"""


def child_apply(request):
    """--child: apply N bindings in this process and report its own peak RSS."""
    import resource
    req = json.loads(request)
    counted = apply_bindings(req["ns"], req["store"], req["workdir"], binding_items(req["size"]))
    print(json.dumps(dict(seconds=counted.seconds,
                          maxrss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))


def format_rows(rows):
    header = ("case", "N", "median s", "in tools s", "run() calls", "children", "per-command s (lower bound)",
              "speed-up", "note")
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(r):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is shown")
    parser.add_argument("--quick", action="store_true", help="small N, for a fast smoke run")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases, e.g. P1,P2")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_apply(args.child)
    if os.geteuid() != 0:
        parser.error("run as root: the benchmark builds network namespaces")
    only = [c.strip().upper() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(only) - set(CASES))
    if unknown:
        parser.error("unknown case(s) %s: choose from %s" % (", ".join(unknown), ", ".join(CASES)))
    if "P4" in only and "P1" not in only:
        only.insert(0, "P1")  # P4 reads P1's process counts
    conf = QUICK if args.quick else FULL
    workdir = tempfile.mkdtemp(prefix="hfwo-bench-")
    load_before = "%.2f" % os.getloadavg()[0]
    try:
        bench = Bench(args, conf, workdir)
        for case in CASES:
            if case in only:
                getattr(bench, case.lower())()
                print("done %s" % case, file=sys.stderr, flush=True)
        print("runs per figure: %d (median), %d cores, load average before %s, after %s"
              % (args.runs, os.cpu_count(), load_before, "%.2f" % os.getloadavg()[0]))
        print(format_rows(bench.rows))
        for note in bench.notes:
            print("- " + note)
    finally:
        delete_namespaces()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
