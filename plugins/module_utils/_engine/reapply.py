# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``hypervisor-firewall-reapply``: put the chains we own back from the host store.

A restart of iptables/ip6tables/ebtables/nftables (or netfilter-persistent) flushes the kernel
tables and with them every chain this collection installed.  The store (config_dir) still holds
what the host should have, so re-applying is one reconcile() with the identity mutation.

Exit codes:
  0  the kernel matches the store (it did already, or it does now); --watch stopped by a signal
  1  error (one line on stderr): bad option, missing store, lock timeout, failed apply, ...
  2  --check only: the live chains differ from the store (nothing was changed)

This module must not import Ansible: it runs on hosts from /usr/local/lib/... without it.
"""

from __future__ import annotations

import argparse
import math
import os
import select
import signal
import sys
import time

from .host.defaults import DEFAULT_CONFIG_DIR, DEFAULT_LOCK_FILE
from .errors import EngineError, StoreError
from . import backend as _backend
from . import service as _service
from .host.runner import HostRunner

PROG = "hypervisor-firewall-reapply"
EXIT_OK, EXIT_ERROR, EXIT_DRIFT = 0, 1, 2
# nft events come in bursts (a restart is several transactions): wait for this much silence,
# but never longer than the cap, before looking
EVENT_QUIET, EVENT_CAP = 0.2, 2.0


class UsageError(Exception):
    """A bad command line: reported in one line like every other error (exit 1, not argparse's 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser():
    parser = _Parser(prog=PROG, description="Re-apply the firewall rules stored in the host store.")
    parser.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR, help="host store (default %(default)s)")
    parser.add_argument("--lock-file", default=DEFAULT_LOCK_FILE, help="host lock (default %(default)s)")
    parser.add_argument("--lock-timeout", type=float, default=30.0, help="seconds to wait for the lock")
    parser.add_argument("--check", action="store_true", help="report drift and exit 2 when drifted; change nothing")
    parser.add_argument("--watch", type=float, metavar="SECONDS",
                        help="keep running: look every SECONDS (and on nft events) and re-apply on drift")
    parser.add_argument("--no-monitor", action="store_true", help="with --watch: poll only, ignore nft events")
    parser.add_argument("--quiet", action="store_true", help="print nothing unless something went wrong")
    return parser


def parse_args(argv):
    args = build_parser().parse_args(argv)
    if args.watch is not None and args.check:
        raise UsageError("--check and --watch cannot be combined")
    # float() takes 'nan' and 'inf': a sleep or lock wait on them fails or never ends
    if args.watch is not None and not (0 < args.watch < math.inf):
        raise UsageError("--watch needs a positive number of seconds")
    if not 0 <= args.lock_timeout < math.inf:
        raise UsageError("--lock-timeout needs a number of seconds, 0 or more")
    return args


# ---------------------------------------------------------------- reporting

def describe(outcome, check_mode):
    """Human lines: what was (or would be) restored, or that the kernel is in sync."""
    state = outcome.after
    store = "%d binding%s, %d network%s" % (
        len(state.bindings), "" if len(state.bindings) == 1 else "s",
        len(state.networks), "" if len(state.networks) == 1 else "s")
    if not outcome.rules_changed:
        return ["in sync (%s)" % store]
    verb = "drifted" if check_mode else "restored"
    lines = ["%s from the store (%s):" % (verb, store)]
    for change in outcome.result.tables:
        parts = []
        if change.rewritten:
            parts.append("chains " + " ".join(change.rewritten))
        if change.removed:
            parts.append("stale chains " + " ".join(change.removed))
        if change.hook_changes:
            parts.append("%d jump rule change%s in built-in chains"
                         % (change.hook_changes, "" if change.hook_changes == 1 else "s"))
        lines.append("  %s: %s" % (change.label, "; ".join(parts) or "removed"))
    return lines


def _say(lines, quiet, stream=None):
    if quiet:
        return
    stream = stream or sys.stdout
    for line in lines:
        stream.write(line + "\n")
    stream.flush()


def _warn(warnings):
    for warning in warnings:
        sys.stderr.write("%s: warning: %s\n" % (PROG, warning))
    sys.stderr.flush()


# ---------------------------------------------------------------- one run

def check_store(config_dir):
    """A missing store would mean 'remove every chain we own': refuse, it is almost always a typo."""
    if not os.path.isdir(config_dir):
        raise StoreError(
            "config dir %s does not exist: nothing to re-apply (give --config-dir, or define filters "
            "with the collection first)" % config_dir, path=config_dir)


def reapply_once(args, runner, check_mode):
    check_store(args.config_dir)
    return _service.reconcile(args.config_dir, lambda s: (s, []), runner, check_mode,
                              lock_file=args.lock_file, lock_timeout=args.lock_timeout)


def run_once(args, runner):
    outcome = reapply_once(args, runner, args.check)
    _say(describe(outcome, args.check), args.quiet)
    if not args.quiet:
        _warn(outcome.warnings)
    return EXIT_DRIFT if args.check and outcome.rules_changed else EXIT_OK


# ---------------------------------------------------------------- watch

def store_signature(config_dir):
    """(path, mtime, size) of every store file: a cheap way to notice that a module changed it."""
    found = []
    for root, dirs, files in os.walk(config_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                info = os.stat(path)
            except OSError:
                continue
            found.append((path, info.st_mtime_ns, info.st_size))
    return tuple(found)


class Watcher:
    """Re-applies when the live owned chains stop matching what the store compiles to.

    After every reconcile the desired ruleset is compiled once and kept; each tick then only runs
    the three *-save tools and plans against it.  A store change (a module ran), a change of the
    host's devices or their MACs (a tap appeared: e.g. a NIC hot-plugged with ``virsh
    attach-interface``, for which libvirt runs no hook) or a plan that is not empty triggers a
    full reconcile under the lock, which re-reads everything.
    """

    def __init__(self, args, runner):
        self.args = args
        self.runner = runner
        self.desired = None
        self.signature = None
        self.links = None
        self.last_error = None

    def refresh(self):
        """Full reconcile, then remember what 'in sync' means until the store or the devices change."""
        self.signature = store_signature(self.args.config_dir)
        self.links = self.runner.list_links()
        outcome = reapply_once(self.args, self.runner, check_mode=False)
        self.desired = _service.desired_for_host(self.args.config_dir, outcome.after, self.runner)
        return outcome

    def drifted(self):
        """Every backend is looked at: the chosen one must match, the others must hold nothing."""
        host = self.desired
        return _backend.drifted_all(host.backend, host.desired, self.runner, host.scope)

    def tick(self):
        """One look; returns the Outcome of a reconcile when one ran, else None."""
        if (self.desired is None or store_signature(self.args.config_dir) != self.signature
                or self.runner.list_links() != self.links or self.drifted()):
            return self.refresh()
        return None

    def safe_tick(self):
        """tick() that logs errors once per distinct message and keeps the loop alive."""
        try:
            outcome = self.tick()
        except EngineError as exc:
            self.desired = None  # start over next time
            message = " ".join(str(exc).split())
            if message != self.last_error:
                sys.stderr.write("%s: error: %s\n" % (PROG, message))
                sys.stderr.flush()
            self.last_error = message
            return
        self.last_error = None
        if outcome is not None and outcome.rules_changed:
            _say(["%s %s" % (time.strftime("%Y-%m-%dT%H:%M:%S"), line) for line in describe(outcome, False)],
                 self.args.quiet)
            if not self.args.quiet:
                _warn(outcome.warnings)


class EventSource:
    """``nft monitor`` as a wake-up hint; falls back to plain polling when it is missing or dies."""

    def __init__(self, runner, enabled):
        self.proc = runner.start_monitor() if enabled else None

    def wait(self, timeout):
        """Sleep up to ``timeout``; return early (after the burst settles) when the ruleset changed."""
        if self.proc is None:
            time.sleep(timeout)
            return
        fd = self.proc.stdout.fileno()
        if not self._readable(fd, timeout):
            return
        deadline = time.monotonic() + EVENT_CAP
        while time.monotonic() < deadline and self._readable(fd, EVENT_QUIET):
            pass

    def _readable(self, fd, timeout):
        ready, _w, _x = select.select([fd], [], [], timeout)
        if not ready:
            return False
        if not os.read(fd, 65536):  # nft exited: stop listening, keep polling
            self.close()
            time.sleep(timeout)
            return False
        return True

    def close(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.proc.stdout.close()
            self.proc = None


def _stop(_signum, _frame):
    raise KeyboardInterrupt


def run_watch(args, runner):
    check_store(args.config_dir)
    signal.signal(signal.SIGTERM, _stop)
    watcher = Watcher(args, runner)
    events = EventSource(runner, enabled=not args.no_monitor)
    _say(["watching %s every %ss%s" % (args.config_dir, args.watch, "" if events.proc else " (polling only)")],
         args.quiet)
    try:
        while True:
            watcher.safe_tick()
            events.wait(args.watch)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        events.close()


def main(argv=None, runner=None):
    """Entry point of the command; returns the exit code."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        runner = runner or HostRunner()
        if args.watch is not None:
            return run_watch(args, runner)
        return run_once(args, runner)
    except UsageError as exc:
        sys.stderr.write("%s: usage error: %s (see --help)\n" % (PROG, exc))
    except EngineError as exc:
        sys.stderr.write("%s: error: %s\n" % (PROG, " ".join(str(exc).split())))
    except KeyboardInterrupt:
        sys.stderr.write("%s: interrupted\n" % PROG)
    return EXIT_ERROR
