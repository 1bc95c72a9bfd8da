"""Network namespaces for packet tests: the lab topology and per-thread namespace switching.

Topology (names are ``<prefix>-<role>``)::

    <prefix>-g0  eth0 ──veth── vnet0 ┐
    <prefix>-g1  eth0 ──veth── vnet1 ┼─ br0  <prefix>-hv ── uplink0 ──veth── eth0  <prefix>-lan
                                ...  ┘                       (only with lan=True)

Sockets opened while the calling thread sits in a namespace stay bound to that namespace after
the thread switches back, so one process can send and receive in every namespace without
spawning a helper per frame.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import socket
import subprocess
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
NETNS_DIR = "/run/netns"

BRIDGE = "br0"
BRIDGE_MAC = "52:54:00:ff:00:01"
HOST_IPV4 = "192.168.100.1"
HOST_IPV6 = "fd00:100::1"
UPLINK = "uplink0"
UPLINK_MAC = "52:54:00:99:00:01"
UPLINK_HV_IPV4 = "10.99.0.1"
UPLINK_LAN_IPV4 = "10.99.0.2"
UPLINK_HV_IPV6 = "fd00:99::1"
UPLINK_LAN_IPV6 = "fd00:99::2"
LAN_MAC = "52:54:00:99:00:02"

# Leaves room for "-lan" and "-g99" inside the kernel's limit for /run/netns file names.
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_]{1,40}$")

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns(CLONE_NEWNET) failed: %s" % os.strerror(err))


@contextlib.contextmanager
def in_netns(name):
    """Run the body with the calling thread in network namespace ``name`` (from ``ip netns``)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def packet_socket(ns, ifname):
    """A non-blocking AF_PACKET socket bound to ``ifname`` in namespace ``ns`` (all ethertypes)."""
    with in_netns(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.bind((ifname, ETH_P_ALL))
        except OSError:
            sock.close()
            raise
    sock.setblocking(False)
    return sock


def udp_socket(ns, port, family=socket.AF_INET):
    """A non-blocking UDP socket on the wildcard address and ``port`` inside namespace ``ns``."""
    return _inet_socket(ns, family, socket.SOCK_DGRAM, port)


def tcp_listener(ns, port, family=socket.AF_INET):
    """A non-blocking listening TCP socket on the wildcard address and ``port`` in ``ns``."""
    sock = _inet_socket(ns, family, socket.SOCK_STREAM, port)
    sock.listen(16)
    return sock


def _inet_socket(ns, family, kind, port):
    with in_netns(ns):
        sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # Lets an IPv4 socket share the port number with this one.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def write_sysctl(ns, key, value):
    """Set ``key`` (dotted, e.g. net.ipv4.ip_forward) inside ``ns``; /proc/sys/net follows the
    namespace of the thread that opens the file."""
    path = "/proc/sys/" + key.replace(".", "/")
    with in_netns(ns):
        with open(path, "w", encoding="ascii") as handle:
            handle.write(str(value))


def read_sysctl(ns, key):
    path = "/proc/sys/" + key.replace(".", "/")
    with in_netns(ns):
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()


def list_namespaces():
    """Names of every namespace ``ip netns`` knows, sorted."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def cleanup_prefix(prefix):
    """Delete every namespace named ``<prefix>-*``; returns the names it deleted."""
    gone = [name for name in list_namespaces() if name.startswith(prefix + "-")]
    for name in gone:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)
    return gone


@dataclass(frozen=True)
class Guest:
    """One guest: its namespace, its tap-like bridge port and its fixed addresses."""

    index: int
    ns: str
    tap: str
    mac: str
    ipv4: str
    ipv6: str
    ifname: str = "eth0"


class LabError(RuntimeError):
    """A lab command failed; the message carries the command and its stderr."""


class Lab:
    """Hypervisor namespace with bridge br0, ``guests`` guest namespaces and optionally a routed
    LAN namespace behind an uplink (``lan=True``). Use as a context manager: every namespace is
    deleted on exit, also when setup or the body raises."""

    def __init__(self, prefix, guests=2, lan=False):
        if not _PREFIX_RE.match(prefix):
            raise ValueError("lab prefix %r: use 1-40 letters, digits or '_'" % prefix)
        if not 1 <= guests <= 9:
            raise ValueError("lab guests=%r: use 1 to 9 guests" % guests)
        self.prefix = prefix
        self.hv = prefix + "-hv"
        self.lan = prefix + "-lan" if lan else None
        self.guests = [_guest(prefix, i) for i in range(guests)]
        self.bridge = BRIDGE
        self.bridge_mac = BRIDGE_MAC
        self.host_ipv4 = HOST_IPV4
        self.host_ipv6 = HOST_IPV6

    # -- naming -------------------------------------------------------------------------
    @property
    def namespaces(self):
        names = [self.hv] + [g.ns for g in self.guests]
        return names + ([self.lan] if self.lan else [])

    @property
    def hv_prefix(self):
        """argv prefix that runs a command in the hypervisor namespace."""
        return ["ip", "netns", "exec", self.hv]

    def ns(self, role):
        """Full namespace name of a role: 'hv', 'lan', 'g0', 'g1', ... (full names pass through)."""
        if role in self.namespaces:
            return role
        if role == "hv":
            return self.hv
        if role == "lan" and self.lan:
            return self.lan
        if role.startswith("g") and role[1:].isdigit() and int(role[1:]) < len(self.guests):
            return self.guests[int(role[1:])].ns
        raise KeyError("lab %s has no namespace role %r" % (self.prefix, role))

    # -- commands -----------------------------------------------------------------------
    def exec(self, ns, argv, check=True, input=None):
        """Run argv (a list, no shell) in namespace role/name ``ns``; returns CompletedProcess
        with text output. ``check`` raises LabError naming the command and its stderr."""
        full = ["ip", "netns", "exec", self.ns(ns)] + list(argv)
        proc = subprocess.run(full, input=input, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise LabError("%s failed (rc=%d): %s" % (" ".join(full), proc.returncode,
                                                      proc.stderr.strip()))
        return proc

    def _ip(self, ns, *args):
        self.exec(ns, ["ip"] + list(args))

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self):
        cleanup_prefix(self.prefix)
        try:
            self._build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def teardown(self):
        """Delete every namespace of this lab (and any leftover with the prefix)."""
        cleanup_prefix(self.prefix)

    def _build(self):
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
            _no_dad(name)
            self._ip(name, "link", "set", "lo", "up")
        self._build_bridge()
        for guest in self.guests:
            self._build_guest(guest)
        if self.lan:
            self._build_uplink()

    def _build_bridge(self):
        self._ip(self.hv, "link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge",
                 "stp_state", "0", "forward_delay", "0")
        self._ip(self.hv, "addr", "add", HOST_IPV4 + "/24", "dev", BRIDGE)
        self._ip(self.hv, "addr", "add", HOST_IPV6 + "/64", "dev", BRIDGE, "nodad")
        self._ip(self.hv, "link", "set", BRIDGE, "up")
        write_sysctl(self.hv, "net.bridge.bridge-nf-call-iptables", 1)
        write_sysctl(self.hv, "net.bridge.bridge-nf-call-ip6tables", 1)

    def _build_guest(self, guest):
        self._ip(self.hv, "link", "add", guest.tap, "type", "veth",
                 "peer", "name", guest.ifname, "netns", guest.ns)
        self._ip(self.hv, "link", "set", guest.tap, "master", BRIDGE, "up")
        self._ip(guest.ns, "link", "set", guest.ifname, "address", guest.mac, "up")
        self._ip(guest.ns, "addr", "add", guest.ipv4 + "/24", "dev", guest.ifname)
        self._ip(guest.ns, "addr", "add", guest.ipv6 + "/64", "dev", guest.ifname, "nodad")
        self._ip(guest.ns, "route", "add", "default", "via", HOST_IPV4)
        self._ip(guest.ns, "-6", "route", "add", "default", "via", HOST_IPV6)

    def _build_uplink(self):
        self._ip(self.hv, "link", "add", UPLINK, "address", UPLINK_MAC, "type", "veth",
                 "peer", "name", "eth0", "netns", self.lan)
        self._ip(self.hv, "addr", "add", UPLINK_HV_IPV4 + "/24", "dev", UPLINK)
        self._ip(self.hv, "addr", "add", UPLINK_HV_IPV6 + "/64", "dev", UPLINK, "nodad")
        self._ip(self.hv, "link", "set", UPLINK, "up")
        self._ip(self.lan, "link", "set", "eth0", "address", LAN_MAC, "up")
        self._ip(self.lan, "addr", "add", UPLINK_LAN_IPV4 + "/24", "dev", "eth0")
        self._ip(self.lan, "addr", "add", UPLINK_LAN_IPV6 + "/64", "dev", "eth0", "nodad")
        self._ip(self.lan, "route", "add", "default", "via", UPLINK_HV_IPV4)
        self._ip(self.lan, "-6", "route", "add", "default", "via", UPLINK_HV_IPV6)
        write_sysctl(self.hv, "net.ipv4.ip_forward", 1)
        write_sysctl(self.hv, "net.ipv6.conf.all.forwarding", 1)


def _guest(prefix, index):
    return Guest(index=index, ns="%s-g%d" % (prefix, index), tap="vnet%d" % index,
                 mac="52:54:00:00:00:%02x" % index, ipv4="192.168.100.1%d" % index,
                 ipv6="fd00:100::1%d" % index)


def _no_dad(ns):
    # Addresses also carry "nodad"; this covers link-local addresses created on link up.
    for scope in ("all", "default"):
        write_sysctl(ns, "net.ipv6.conf.%s.accept_dad" % scope, 0)
