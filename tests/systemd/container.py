"""A booted Debian 12 container whose network namespace is a lab's hypervisor namespace.

``systemd-nspawn --boot --register=no --keep-unit`` runs the cached root (rootfs.py) through an
overlay, so the cache stays pristine and a reboot keeps what the run wrote (store, units), as a
disk does. There is no systemd on the machine running the tests: ``--register=no`` and
``--keep-unit`` keep nspawn from asking for machined and a transient scope. The container joins
the lab's ``<prefix>-hv`` namespace (bridge br0, guest taps vnet0/vnet1); nspawn drops
CAP_NET_ADMIN for a namespace it did not create itself, so it is given back explicitly.

Ansible reaches the container over SSH, as an admin's does, with a key generated per run: the
``ssh`` it runs is a wrapper that enters the hypervisor namespace, where sshd listens on
127.0.0.1. That needs no other collection and no address in the machine's own namespace.
Test steps that only look (``*-save``, ``nft list``) run in the namespace from outside; commands
an admin types on the host (``systemctl restart ...``) run inside with ``nsenter``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

REBOOT_EXIT = 133  # what systemd-nspawn returns when the container's init asks for a reboot
BOOT_TIMEOUT = 120


class ContainerError(RuntimeError):
    """The container did not boot, answer or stop; the message names the step and the console log."""


class Container:
    """Use as a context manager: mounts the overlay, boots, and on exit powers off and unmounts."""

    def __init__(self, root, workdir, netns, name):
        self.root = root
        self.workdir = workdir
        self.netns = netns
        self.name = name
        self.merged = os.path.join(workdir, "merged")
        self.key = os.path.join(workdir, "id_ed25519")
        self.ssh_wrapper = os.path.join(workdir, "ssh-in-netns")
        self.console = os.path.join(workdir, "console.log")
        self.proc = None
        self._console = None
        self._mounted = False

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self):
        try:
            self._prepare()
            self.boot()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def _prepare(self):
        for sub in ("upper", "work", "merged"):
            os.makedirs(os.path.join(self.workdir, sub), exist_ok=True)
        options = "lowerdir=%s,upperdir=%s,workdir=%s" % (
            self.root, os.path.join(self.workdir, "upper"), os.path.join(self.workdir, "work"))
        _check(["mount", "-t", "overlay", "overlay", "-o", options, self.merged], "mount the overlay")
        self._mounted = True
        _check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hfw-systemd-test", "-f", self.key],
               "generate the SSH key")
        ssh_dir = os.path.join(self.merged, "root", ".ssh")
        os.makedirs(ssh_dir, mode=0o700, exist_ok=True)
        with open(self.key + ".pub", encoding="ascii") as pub, \
                open(os.path.join(ssh_dir, "authorized_keys"), "w", encoding="ascii") as out:
            out.write(pub.read())
        os.chmod(os.path.join(ssh_dir, "authorized_keys"), 0o600)
        with open(self.ssh_wrapper, "w", encoding="ascii") as handle:
            handle.write('#!/bin/sh\nexec ip netns exec %s ssh "$@"\n' % self.netns)
        os.chmod(self.ssh_wrapper, 0o755)

    def boot(self):
        """Start the container and wait until systemd says the boot finished; returns seconds."""
        start = time.monotonic()
        self._console = open(self.console, "a", encoding="utf-8")
        argv = ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--console=passive",
                "--link-journal=no", "--capability=CAP_NET_ADMIN",
                "--network-namespace-path=/run/netns/" + self.netns, "-M", self.name, "-D", self.merged]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._console,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = start + BOOT_TIMEOUT
        state = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ContainerError("systemd-nspawn exited with %d while booting; see %s"
                                     % (self.proc.returncode, self.console))
            if self.leader() is not None:
                done = self.run(["systemctl", "is-system-running"], check=False)
                state = done.stdout.strip()
                if state in ("running", "degraded"):
                    break
            time.sleep(0.1)
        else:
            raise ContainerError("the container did not finish booting within %ds (last state %r); see %s"
                                 % (BOOT_TIMEOUT, state, self.console))
        if state == "degraded":
            failed = self.run(["systemctl", "--failed", "--no-legend", "--plain"], check=False).stdout
            raise ContainerError("the container booted degraded, failed units:\n%s" % failed)
        return time.monotonic() - start

    def leader(self):
        """PID (in our namespace) of the container's init, or None before nspawn started it."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid), encoding="ascii") as handle:
                children = handle.read().split()
        except OSError:
            return None
        for pid in children:
            try:
                with open("/proc/%s/comm" % pid, encoding="ascii") as handle:
                    if handle.read().strip() == "systemd":
                        return int(pid)
            except OSError:
                continue
        return None

    def wait_stopped(self, timeout=60):
        """Wait for nspawn to exit (after a poweroff or reboot inside); returns its exit code."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ContainerError("the container did not stop within %ds; see %s" % (timeout, self.console)) from None
        self._console.close()
        return rc

    def reboot(self, between=None):
        """``systemctl reboot`` inside; nspawn exits (a container cannot restart its kernel), then
        ``between()`` runs (what a fresh kernel forgets) and the container boots again.
        Returns (seconds until the boot finished, monotonic time the reboot was asked for)."""
        asked = time.monotonic()
        self.run(["systemctl", "reboot"], check=False)
        rc = self.wait_stopped()
        if rc != REBOOT_EXIT:
            raise ContainerError("systemd-nspawn exited with %d, not %d, on a reboot; see %s"
                                 % (rc, REBOOT_EXIT, self.console))
        if between is not None:
            between()
        self.boot()
        return time.monotonic() - asked, asked

    def teardown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn asks the container's init to power off
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self._console is not None and not self._console.closed:
            self._console.close()
        if self._mounted:
            subprocess.run(["umount", self.merged], check=False, capture_output=True)
            self._mounted = False

    def remove(self):
        """Delete the run's overlay layers (after teardown)."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- commands -----------------------------------------------------------------------
    def run(self, argv, check=True, input=None, timeout=120):
        """Run argv inside the container (all its namespaces); CompletedProcess with text output."""
        leader = self.leader()
        if leader is None:
            raise ContainerError("the container is not running; see %s" % self.console)
        full = ["nsenter", "--target", str(leader), "--mount", "--uts", "--ipc", "--net", "--pid", "--"] + list(argv)
        proc = subprocess.run(full, input=input, capture_output=True, text=True, check=False, timeout=timeout)
        if check and proc.returncode != 0:
            raise ContainerError("%s failed in the container (rc %d): %s%s"
                                 % (" ".join(argv), proc.returncode, proc.stderr.strip(), proc.stdout.strip()))
        return proc

    def start(self, argv):
        """Start argv inside the container without waiting; returns the Popen (output discarded)."""
        leader = self.leader()
        if leader is None:
            raise ContainerError("the container is not running; see %s" % self.console)
        full = ["nsenter", "--target", str(leader), "--mount", "--uts", "--ipc", "--net", "--pid", "--"] + list(argv)
        return subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)

    def inventory_vars(self):
        """Ansible host variables that reach this container over SSH."""
        return {
            "ansible_host": "127.0.0.1",
            "ansible_user": "root",
            "ansible_ssh_private_key_file": self.key,
            "ansible_ssh_executable": self.ssh_wrapper,
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            "ansible_ssh_transfer_method": "piped",
            "ansible_control_path_dir": os.path.join(self.workdir, "cp"),
            "ansible_python_interpreter": "/usr/bin/python3",
        }


def _check(argv, what):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ContainerError("cannot %s: %s failed (rc %d): %s" % (what, argv[0], proc.returncode, proc.stderr.strip()))


def can_boot_here():
    """None when this machine can boot the container, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn, overlay mounts, network namespaces)"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "ssh", "ssh-keygen", "ip", "nft"):
        if shutil.which(tool) is None:
            return "%s is not installed (tests/run setup installs it)" % tool
    with open("/proc/filesystems", encoding="ascii") as handle:
        if "overlay" not in handle.read():
            return "the kernel has no overlay filesystem"
    return None
