# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place that runs commands: the *-save / *-restore tools, and the host lock.

``prefix`` runs every tool through a wrapper (``ip netns exec NS``): that is how tests and the
namespace lab reach a "host".  Binaries are resolved to absolute paths up front, so a missing
tool is reported before anything changes.

Tool output is decoded as UTF-8 with ``surrogateescape``: another program's rule may carry any
byte (a Latin-1 comment), and it must reach the parser and go back out unchanged, never crash a run.

Also here: signals_interrupt (a signal during an apply rolls it back) and fault_point, the test
hook that kills the process at a chosen tool call or store rename (docs/docsite/rst/safety.rst).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import signal
import stat
import subprocess
import threading
import time

from ..errors import ApplyError, LockError, ToolMissingError
from .defaults import DEFAULT_LOCK_FILE

# tool key -> (save binary, restore binary) of the xtables tools this runner can run
TOOLS = {
    "eb": ("ebtables-save", "ebtables-restore"),
    "ip4": ("iptables-save", "iptables-restore"),
    "ip6": ("ip6tables-save", "ip6tables-restore"),
}

# what to install, by tool key; the names `iptables-save` etc. follow the host's alternatives
PACKAGES = {
    "eb": "'ebtables' (Debian/Ubuntu) or 'iptables-ebtables' (Fedora/RHEL)",
    "ip4": "'iptables' (Debian/Ubuntu) or 'iptables-nft' (Fedora/RHEL)",
    "ip6": "'iptables' (Debian/Ubuntu) or 'iptables-nft' (Fedora/RHEL)",
}
# ebtables-restore takes no -w; iptables-legacy needs it to wait for the xtables lock
_RESTORE_OPTS = {"eb": ["--noflush"], "ip4": ["--noflush", "-w", "10"], "ip6": ["--noflush", "-w", "10"]}
# lossless for any byte a tool prints; what we write ourselves is always valid UTF-8
ENCODING, DECODE_ERRORS = "utf-8", "surrogateescape"

# fault injection for tests: SIGKILL this process just before the Nth fault point (a command the
# runner starts or a store rename), and/or append one line per fault point to a log file
KILL_AT_ENV = "HFW_TEST_KILL_AT"
FAULT_LOG_ENV = "HFW_TEST_FAULT_LOG"
_FAULTS = {"count": 0}


def fault_point(kind, detail):
    """Count one fault point (``kind`` 'tool' or 'rename'); the test hook may kill us here.

    Without the two environment variables this does nothing.  The log names each point, so a test
    can first count the points of an operation, then kill at each one in turn."""
    kill_at, log = os.environ.get(KILL_AT_ENV), os.environ.get(FAULT_LOG_ENV)
    if not kill_at and not log:
        return
    _FAULTS["count"] += 1
    if log:
        with open(log, "a", encoding=ENCODING, errors=DECODE_ERRORS) as handle:
            handle.write("%d %s %s\n" % (_FAULTS["count"], kind, detail))
    if kill_at == str(_FAULTS["count"]):
        os.kill(os.getpid(), signal.SIGKILL)


class Interrupted(BaseException):
    """A signal arrived while the kernel was being changed (raised by signals_interrupt).

    A BaseException, like KeyboardInterrupt, so no ``except Exception`` between the signal and the
    apply's rollback can swallow it."""

    def __init__(self, signum):
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


class SignalGuard:
    """The state of one signals_interrupt block: signals seen, and whether they still raise."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

    def __init__(self):
        self.received = []
        self.deferring = False
        self.previous = {}

    def handle(self, signum, _frame):
        self.received.append(signum)
        if not self.deferring:
            self.deferring = True
            raise Interrupted(signum)

    def defer(self):
        """From now on signals are only recorded (the rollback must not be interrupted)."""
        self.deferring = True


@contextlib.contextmanager
def signals_interrupt():
    """While the body runs, SIGTERM, SIGHUP and SIGINT raise Interrupted (once), so the apply can
    roll back instead of dying between two tools.  Afterwards the previous handlers are back, and
    a Python handler the process had installed (the watcher's) is called for each signal seen, so
    the process still stops as it meant to.  Outside the main thread signals cannot be caught:
    the body runs unguarded."""
    guard = SignalGuard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    for signum in guard.SIGNALS:
        guard.previous[signum] = signal.signal(signum, guard.handle)
    try:
        yield guard
    finally:
        for signum, handler in guard.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        for signum in dict.fromkeys(guard.received):
            handler = guard.previous[signum]
            if callable(handler) and handler is not signal.default_int_handler:
                handler(signum, None)


class Runner:
    """Runs the xtables tools, optionally through a command prefix and a restricted PATH."""

    def __init__(self, prefix=(), path=None, timeout=120):
        self.prefix = list(prefix)
        self.path = path
        self.timeout = timeout
        self.warnings = []
        self._resolved = {}

    def run(self, argv, data=None):
        """(rc, stdout, stderr) of argv run without a shell, with data on stdin."""
        env = dict(os.environ, LC_ALL="C")
        fault_point("tool", os.path.basename(str(argv[0])))
        try:
            proc = subprocess.run(
                self.prefix + list(argv), input=data, capture_output=True, encoding=ENCODING,
                errors=DECODE_ERRORS, env=env, timeout=self.timeout, check=False,
            )
        except subprocess.TimeoutExpired:
            # subprocess.run killed the tool; the caller re-reads the kernel to learn what it did
            raise ApplyError("%s did not finish within %ss and was killed" % (" ".join(argv), self.timeout),
                             argv=list(argv), timeout=self.timeout) from None
        except OSError as exc:
            # commands found by name at run time (ip, cat, the prefix itself), not by _binary()
            raise ToolMissingError("cannot run %s: %s; install it or fix PATH"
                                   % (" ".join(self.prefix + list(argv)), exc.strerror or exc),
                                   argv=self.prefix + list(argv)) from None
        return proc.returncode, proc.stdout, proc.stderr

    def _binary(self, name, tool):
        if name not in self._resolved:
            found = shutil.which(name, path=self.path)
            if found is None:
                raise ToolMissingError(
                    "%s is not installed (not found in PATH): install the package %s" % (name, PACKAGES[tool]),
                    binary=name,
                    package=PACKAGES[tool],
                )
            self._resolved[name] = found
        return self._resolved[name]

    def which(self, tool):
        """Check that the save and restore binaries of a tool exist; ToolMissingError otherwise."""
        return [self._binary(name, tool) for name in TOOLS[tool]]

    def save(self, tool):
        return self._save(tool, [])

    def save_counters(self, tool):
        """``*-save -c``: the same dump with each rule's packet and byte counters."""
        return self._save(tool, ["-c"])

    def _save(self, tool, options):
        save_bin = self._binary(TOOLS[tool][0], tool)
        rc, out, err = self.run([save_bin] + options)
        if rc != 0:
            raise ApplyError("%s failed (rc %d): %s" % (TOOLS[tool][0], rc, err.strip()), rc=rc, stderr=err)
        # e.g. "# Warning: iptables-legacy tables present": our chains may live in the other variant
        for line in err.splitlines():
            note = line.lstrip("# ").strip()
            if "Warning" in note and note not in self.warnings:
                self.warnings.append(note)
        return out

    def restore(self, tool, payload):
        """(rc, stdout, stderr) of ``*-restore --noflush`` fed with payload."""
        restore_bin = self._binary(TOOLS[tool][1], tool)
        return self.run([restore_bin] + _RESTORE_OPTS[tool], data=payload)

    def nft(self, args, data=None):
        """(rc, stdout, stderr) of ``nft ARGS`` (the nftables backend); ToolMissingError without nft."""
        found = shutil.which("nft", path=self.path)
        if found is None:
            raise ToolMissingError("nft is not installed (not found in PATH): install the package 'nftables' "
                                   "or use backend 'xtables'", binary="nft", package="nftables")
        return self.run([found] + list(args), data=data)

    def start_monitor(self):
        """A running ``nft monitor`` (Popen, one line per ruleset event on stdout), or None when nft
        is not installed.  Only a hint to look sooner: the caller still compares the *-save output."""
        nft = shutil.which("nft", path=self.path)
        if nft is None:
            return None
        return subprocess.Popen(
            self.prefix + [nft, "monitor"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=dict(os.environ, LC_ALL="C"),
        )


def _check_lock_dir(parent, path):
    """The lock's directory must be writable by its owner alone, and that owner root or us: in a
    directory others can write (``/run/lock`` is mode 1777) anyone can create and hold the lock,
    blocking every writer, or plant a link for root to follow."""
    info = os.stat(parent)
    if info.st_uid not in (0, os.geteuid()) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise LockError(
            "the lock file %s is in %s, which %s can write (mode %o, owner uid %d): anyone there could hold or "
            "replace the lock; point lock_file at a directory only root can write, such as %s"
            % (path, parent, "other users" if info.st_mode & stat.S_IWOTH else "its group", stat.S_IMODE(info.st_mode),
               info.st_uid, os.path.dirname(DEFAULT_LOCK_FILE)), path=path)


def open_lock(path):
    """The lock file's descriptor: created private in a private directory, never through a link,
    and refused when it belongs to another user."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, mode=0o755, exist_ok=True)
        _check_lock_dir(parent, path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockError("the lock file %s is a symbolic link: remove it (the lock is never opened through a link)"
                            % path, path=path) from None
        raise LockError("cannot open the lock file %s: %s; point lock_file at a writable path"
                        % (path, exc.strerror or exc), path=path) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        kind = "a file" if stat.S_ISREG(info.st_mode) else "not a file"
        raise LockError("the lock file %s is %s owned by uid %d, not a file of uid %d: remove it (another user "
                        "created it to hold the lock)" % (path, kind, info.st_uid, os.geteuid()), path=path)
    return fd


@contextlib.contextmanager
def host_lock(path, timeout=60.0):
    """Exclusive flock on path, held across read, plan and apply (nft variants take no lock)."""
    fd = open_lock(path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockError(
                        "could not take the lock %s within %ss: another run holds it; wait for it or "
                        "raise the lock timeout" % (path, timeout),
                        path=path,
                    )
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def parse_ip_link(text):
    """{device: lower-case MAC or None} from ``ip -o link show`` output."""
    links = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) < 3:
            continue
        name = parts[1].strip().split("@", 1)[0]
        words = parts[2].split()
        mac = None
        for kind, value in zip(words, words[1:]):
            if kind == "link/ether":
                mac = value.lower()
                break
        links[name] = mac
    return links


class HostRunner(Runner):
    """A Runner that also answers questions about the host it runs on."""

    def list_devices(self):
        """Network devices of the host (through the prefix, so a namespace sees its own)."""
        return set(self.list_links())

    def list_links(self):
        """{device: MAC or None} of the host's devices (``ip -o link``; None for devices without one)."""
        rc, out, err = self.run(["ip", "-o", "link", "show"])
        if rc != 0:
            raise ApplyError("ip link show failed (rc %d): %s" % (rc, err.strip()), rc=rc, stderr=err)
        return parse_ip_link(out)

    def libvirt_bound_devices(self, binding_dir):
        """Devices whose filters libvirtd's own nwfilter driver applies (its binding files)."""
        return {name[:-4] for name in _listdir(binding_dir) if name.endswith(".xml")}

    def firewalld_running(self):
        """True when ``firewall-cmd --state`` says firewalld runs; False when it is not installed."""
        found = shutil.which("firewall-cmd", path=self.path)
        if found is None:
            return False
        rc, out, _err = self.run([found, "--state"])
        return rc == 0 and out.strip() == "running"

    def _firewall_cmd(self, args, what):
        found = shutil.which("firewall-cmd", path=self.path)
        if found is None:
            raise ToolMissingError("firewall-cmd is not installed, but firewalld runs: install firewalld's "
                                   "command-line tool", tool="firewall-cmd")
        rc, out, err = self.run([found] + list(args))
        if rc != 0 and what:
            raise ApplyError("firewall-cmd %s failed (rc %d): %s; %s" % (" ".join(args), rc, err.strip() or out.strip(), what),
                             rc=rc, stderr=err)
        return rc, out

    def firewalld_zones(self):
        """The zones firewalld knows (runtime)."""
        return set(self._firewall_cmd(["--get-zones"], "check that firewalld answers on D-Bus")[1].split())

    def firewalld_zone_of(self, interface, permanent=False):
        """The zone ``interface`` is bound to (runtime or permanent configuration), or None."""
        args = (["--permanent"] if permanent else []) + ["--get-zone-of-interface=" + interface]
        rc, out = self._firewall_cmd(args, None)
        return out.strip() if rc == 0 and out.strip() else None

    def firewalld_change_zone(self, zone, interface, permanent=False):
        args = (["--permanent"] if permanent else []) + ["--zone=" + zone, "--change-interface=" + interface]
        self._firewall_cmd(args, "put %s in zone %s by hand or fix firewalld" % (interface, zone))

    def firewalld_remove_interface(self, zone, interface, permanent=False):
        args = (["--permanent"] if permanent else []) + ["--zone=" + zone, "--remove-interface=" + interface]
        self._firewall_cmd(args, "take %s out of zone %s by hand or fix firewalld" % (interface, zone))

    def tc_csum_available(self):
        """Whether ``tc ... action csum`` works (CONFIG_NET_ACT_CSUM); False without ``tc``.

        ``tc actions list`` succeeds even for kinds the kernel lacks, so a standalone action (bound
        to no filter, so it touches no traffic) is added under a fixed index and deleted again."""
        found = shutil.which("tc", path=self.path)
        if found is None:
            return False
        index = "65000"
        rc, _out, _err = self.run([found, "actions", "add", "action", "csum", "udp", "index", index])
        if rc != 0:
            return False
        self.run([found, "actions", "del", "action", "csum", "index", index])
        return True

    def bridge_nf_disabled(self):
        """Which of the bridge-netfilter sysctls are 0 (iptables would never see bridged frames)."""
        off = []
        for key in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables"):
            rc, out, _err = self.run(["cat", "/proc/sys/net/bridge/" + key])
            if rc == 0 and out.strip() == "0":
                off.append("net.bridge." + key)
        return off
