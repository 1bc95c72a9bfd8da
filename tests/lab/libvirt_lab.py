"""A real lab hypervisor: a private libvirtd in a network namespace running small guests.

Topology (namespace ``<prefix>-hv``)::

    guest g0 (qemu) eth0 ── tap vnetN ┐
    guest g1 (qemu) eth0 ── tap vnetM ┴─ br0 192.168.100.1/24 (udhcpd, TCP listeners on 25, 80)

libvirtd runs inside that namespace through tests/lab/libvirtd-sandbox: its /etc/libvirt,
/run/libvirt, /var/lib/libvirt and /var/log/libvirt are directories of the lab's work dir, /run
and /var are otherwise empty (no D-Bus, no systemd, nothing of the machine's libvirt).  The
qemu driver runs guests as root without a security driver, cgroups or per-guest namespaces.
Clients reach it with ``virsh -c lab.uri``.  Guests are transient domains; libvirt names their
taps.  Each guest answers commands on its second serial port (``GuestChannel``).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

from . import guest_image
from .netns import cleanup_prefix, tcp_listener, write_sysctl

LAB_DIR = os.path.dirname(os.path.abspath(__file__))
SANDBOX = os.path.join(LAB_DIR, "libvirtd-sandbox")
PACKAGES = {"libvirtd": "libvirt-daemon", "qemu-system-x86_64": "qemu-system-x86",
            "virsh": "libvirt-clients", "unshare": "util-linux", "ip": "iproute2",
            "busybox": "busybox-static", "ebtables": "ebtables"}
QEMU = "/usr/bin/qemu-system-x86_64"
STOCK_FILTERS = "/etc/libvirt/nwfilter"
DRIVER_DIR = "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver"
CAPS_CACHE = os.path.join(guest_image.CACHE_DIR, "libvirt-cache")

BRIDGE = "br0"
BRIDGE_MAC = "52:54:00:ff:00:01"
HOST_IPV4 = "192.168.100.1"
DHCP_RANGE = ("192.168.100.200", "192.168.100.220")
LISTEN_PORTS = (25, 80)
KVM_PROBE_SECONDS = 30

LIBVIRTD_CONF = """\
# the lab's private libvirtd (tests/lab/libvirt_lab.py)
unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""
# root, no security driver, no cgroups, no per-guest mount namespace: this sandbox has none of
# what they need; the guests are the lab's own throwaway VMs.
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""

DOMAIN_XML = """\
<domain type='{domain_type}'>
  <name>{name}</name>
  <memory unit='MiB'>160</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{qemu}</emulator>
{interfaces}
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <serial type='unix'><source mode='bind' path='{channel}'/><target port='1'/></serial>
    <controller type='usb' model='none'/>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
"""

INTERFACE_XML = """\
<interface type='bridge'>
  <mac address='{mac}'/>
  <source bridge='{bridge}'/>
  <model type='virtio'/>
  <rom bar='off'/>{filterref}
</interface>"""


class LibvirtLabError(RuntimeError):
    """A lab step failed; the message says which and carries the tool's output."""


def missing_tools():
    """Packages whose commands this machine lacks (empty when the lab can run)."""
    return sorted({pkg for cmd, pkg in PACKAGES.items() if not shutil.which(cmd)})


def kvm_usable():
    """True when /dev/kvm opens read-write (a KVM guest can start)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def _boot_id():
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
        return handle.read().strip()


def probe_kvm_boot(timeout=KVM_PROBE_SECONDS):
    """Seconds a lab guest took to boot under KVM (qemu alone, no libvirt), or None when it did
    not answer within ``timeout`` (e.g. nested virtualisation that traps every instruction)."""
    kernel, initrd = guest_image.guest_boot_files()
    workdir = tempfile.mkdtemp(prefix="hfw-kvm-probe-")
    channel_path = os.path.join(workdir, "channel")
    argv = [QEMU, "-accel", "kvm", "-m", "160", "-display", "none", "-monitor", "none", "-no-reboot",
            "-nodefaults", "-net", "none", "-kernel", kernel, "-initrd", initrd,
            "-append", "console=ttyS0 quiet panic=-1",
            "-serial", "file:" + os.path.join(workdir, "console"),
            "-serial", "unix:%s,server=on,wait=off" % channel_path]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        GuestChannel(channel_path, "kvm-probe").connect(timeout)
        return round(time.monotonic() - start, 1)
    except LibvirtLabError:
        return None
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def choose_domain_type():
    """('kvm' or 'qemu', why): KVM when /dev/kvm works and a guest boots under it in time,
    else TCG.  HFW_LAB_DOMAIN_TYPE=kvm|qemu overrides; the probe's answer is kept per boot."""
    forced = os.environ.get("HFW_LAB_DOMAIN_TYPE")
    if forced in ("kvm", "qemu"):
        return forced, "HFW_LAB_DOMAIN_TYPE=%s" % forced
    if not kvm_usable():
        return "qemu", "/dev/kvm cannot be opened"
    cache = os.path.join(guest_image.CACHE_DIR, "kvm-probe-%s.json" % _boot_id())
    try:
        with open(cache, encoding="utf-8") as handle:
            seconds = json.load(handle)["seconds"]
    except (OSError, ValueError, KeyError):
        seconds = probe_kvm_boot()
        os.makedirs(guest_image.CACHE_DIR, exist_ok=True)
        with open(cache, "w", encoding="utf-8") as handle:
            json.dump({"seconds": seconds}, handle)
    if seconds is None:
        return "qemu", ("/dev/kvm opens, but a lab guest did not boot under KVM within %ss (nested "
                        "virtualisation without hardware support?): guests run under TCG" % KVM_PROBE_SECONDS)
    return "kvm", "a lab guest boots under KVM in %ss" % seconds


def interface_xml(mac, filterref=None, bridge=BRIDGE):
    """One guest NIC on the lab bridge; ``filterref`` = (filter, {name: value or [values]})
    makes libvirt's own nwfilter driver filter it."""
    ref = ""
    if filterref:
        name, params = filterref
        lines = ["<filterref filter='%s'>" % name]
        for key, values in sorted(params.items()):
            for value in values if isinstance(values, list) else [values]:
                lines.append("  <parameter name='%s' value='%s'/>" % (key, value))
        lines.append("</filterref>")
        ref = "\n  " + "\n  ".join(lines)
    return INTERFACE_XML.format(mac=mac, bridge=bridge, filterref=ref)


class GuestChannel:
    """The command channel of one guest (its ttyS1, a unix socket libvirt's qemu listens on)."""

    def __init__(self, path, name):
        self.path = path
        self.name = name
        self.sock = None
        self.buffer = b""
        self.next_id = 1

    def connect(self, timeout):
        """Wait for qemu's socket and the guest's "guest ready" line."""
        deadline = time.monotonic() + timeout
        while self.sock is None:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(self.path)
                self.sock = sock
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise LibvirtLabError("guest %s: no channel socket %s after %ss" % (self.name, self.path, timeout))
                time.sleep(0.1)
        self._read_line(lambda line: line == "guest ready", deadline)

    def _read_line(self, wanted, deadline):
        while True:
            while b"\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\n", 1)
                line = raw.decode("utf-8", "replace").strip("\r")
                if wanted(line):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise LibvirtLabError("guest %s: no answer on its channel in time (got %r)"
                                      % (self.name, self.buffer[-200:]))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                raise LibvirtLabError("guest %s: its channel closed (the guest stopped)" % self.name)
            self.buffer += data

    def run(self, command, *args, timeout=60):
        """Run one guest command; returns its answer lines (without the id).  A non-zero
        status raises LibvirtLabError."""
        ident = str(self.next_id)
        self.next_id += 1
        words = [command] + [str(a) for a in args]
        self.sock.sendall(("%s %s\n" % (ident, " ".join(words))).encode())
        deadline = time.monotonic() + timeout
        lines = []
        while True:
            line = self._read_line(lambda l: l.startswith(ident + " "), deadline)[len(ident) + 1:]
            if line.startswith("rc "):
                if line != "rc 0":
                    raise LibvirtLabError("guest %s: %s failed (%s): %s" % (self.name, " ".join(words), line, lines))
                return lines
            lines.append(line)

    def value(self, command, *args, key, timeout=60):
        """The number after ``key`` in the answer (e.g. key='replies')."""
        for line in self.run(command, *args, timeout=timeout):
            words = line.split()
            if key in words and words.index(key) + 1 < len(words):
                return int(words[words.index(key) + 1])
        raise LibvirtLabError("guest %s: %s gave no %r" % (self.name, command, key))

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class LibvirtLab:
    """The hypervisor namespace, its bridge and services, and a private libvirtd.

    Use as a context manager; teardown destroys every guest, stops libvirtd and deletes the
    namespace, also when setup or the body raises.  ``domain_type`` is 'kvm' or 'qemu' (TCG);
    by default choose_domain_type() decides."""

    def __init__(self, prefix, workdir, domain_type=None):
        self.prefix = prefix
        self.ns = prefix + "-hv"
        self.workdir = os.path.abspath(workdir)
        if domain_type is None:
            domain_type, self.domain_type_reason = choose_domain_type()
        else:
            self.domain_type_reason = "asked for"
        self.domain_type = domain_type
        self.dirs = {name: os.path.join(self.workdir, name) for name in ("etc", "run", "lib", "log", "guests")}
        self.hooks_dir = os.path.join(self.dirs["etc"], "hooks")
        self.socket = os.path.join(self.dirs["run"], "libvirt-sock")
        self.uri = "qemu+unix:///system?socket=" + self.socket
        self.daemon = None
        self.services = []
        self.listeners = []
        self.channels = {}
        self.kernel, self.initrd = guest_image.guest_boot_files()

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self):
        missing = missing_tools()
        if missing:
            raise LibvirtLabError("the lab needs: apt-get install %s" % " ".join(missing))
        cleanup_prefix(self.prefix)
        try:
            self._build_namespace()
            self._write_config()
            self.start_libvirtd()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def ip_netns(self, argv, check=True, input=None):
        """Run argv (no shell) in the hypervisor namespace."""
        proc = subprocess.run(["ip", "netns", "exec", self.ns] + list(argv), input=input,
                              capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise LibvirtLabError("%s failed (rc=%d): %s" % (" ".join(argv), proc.returncode, proc.stderr.strip()))
        return proc

    def _build_namespace(self):
        subprocess.run(["ip", "netns", "add", self.ns], check=True, capture_output=True)
        for key in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
            write_sysctl(self.ns, key, 0)
        self.ip_netns(["ip", "link", "set", "lo", "up"])
        self.ip_netns(["ip", "link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge",
                       "stp_state", "0", "forward_delay", "0"])
        self.ip_netns(["ip", "addr", "add", HOST_IPV4 + "/24", "dev", BRIDGE])
        self.ip_netns(["ip", "link", "set", BRIDGE, "up"])
        write_sysctl(self.ns, "net.bridge.bridge-nf-call-iptables", 1)
        write_sysctl(self.ns, "net.bridge.bridge-nf-call-ip6tables", 1)
        for port in LISTEN_PORTS:
            self.listeners.append(tcp_listener(self.ns, port))
        self._start_dhcp_server()

    def _start_dhcp_server(self):
        os.makedirs(self.dirs["run"], exist_ok=True)
        conf = os.path.join(self.workdir, "udhcpd.conf")
        with open(conf, "w", encoding="ascii") as handle:
            handle.write("interface %s\nstart %s\nend %s\nlease_file %s\npidfile %s\n"
                         "option subnet 255.255.255.0\noption router %s\n" % (
                             BRIDGE, DHCP_RANGE[0], DHCP_RANGE[1], os.path.join(self.workdir, "udhcpd.leases"),
                             os.path.join(self.workdir, "udhcpd.pid"), HOST_IPV4))
        open(os.path.join(self.workdir, "udhcpd.leases"), "w").close()
        self.services.append(subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "busybox", "udhcpd", "-f", conf],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def _write_config(self):
        for path in list(self.dirs.values()) + [self.hooks_dir, os.path.join(self.dirs["etc"], "nwfilter"), CAPS_CACHE]:
            os.makedirs(path, exist_ok=True)
        with open(os.path.join(self.dirs["etc"], "libvirtd.conf"), "w", encoding="ascii") as handle:
            handle.write(LIBVIRTD_CONF)
        with open(os.path.join(self.dirs["etc"], "qemu.conf"), "w", encoding="ascii") as handle:
            handle.write(QEMU_CONF)
        # libvirt's stock filters (clean-traffic and friends), for guests its own driver filters
        for path in glob.glob(os.path.join(STOCK_FILTERS, "*.xml")):
            shutil.copy(path, os.path.join(self.dirs["etc"], "nwfilter"))

    def _driver_dir_without_nwfilter(self):
        """A driver directory with every libvirt connection driver but nwfilter (symlinks): the
        lab's stand-in for removing the nwfilter driver package from a monolithic libvirtd."""
        path = os.path.join(self.workdir, "drivers-without-nwfilter")
        if not os.path.isdir(path):
            os.makedirs(path)
            for module in glob.glob(os.path.join(DRIVER_DIR, "libvirt_driver_*.so")):
                if os.path.basename(module) != "libvirt_driver_nwfilter.so":
                    os.symlink(module, os.path.join(path, os.path.basename(module)))
        return path

    def start_libvirtd(self, timeout=60, nwfilter=True):
        """Start the private libvirtd and wait until it answers; ``nwfilter=False`` starts it
        without its nwfilter driver."""
        log = open(os.path.join(self.dirs["log"], "libvirtd.stderr"), "a", encoding="utf-8")
        env = dict(os.environ)
        if not nwfilter:
            env["LIBVIRT_DRIVER_DIR"] = self._driver_dir_without_nwfilter()
        self.daemon = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--propagation", "private", "--",
             SANDBOX, self.workdir, CAPS_CACHE], stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.daemon.poll() is not None:
                raise LibvirtLabError("libvirtd exited (rc=%s): see %s" % (self.daemon.returncode, self.dirs["log"]))
            if os.path.exists(self.socket) and self.virsh("version", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise LibvirtLabError("libvirtd did not answer within %ss: see %s" % (timeout, self.dirs["log"]))
            time.sleep(0.2)

    def stop_libvirtd(self):
        """Stop libvirtd; its guests keep running (as after `systemctl stop libvirtd`)."""
        if self.daemon is None:
            return
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        self.daemon = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)

    def restart_libvirtd(self, nwfilter=True):
        """Stop and start libvirtd: running guests go through the qemu hook's ``reconnect``."""
        self.stop_libvirtd()
        self.start_libvirtd(nwfilter=nwfilter)

    def teardown(self):
        for channel in self.channels.values():
            channel.close()
        self.channels.clear()
        if self.daemon is not None and self.daemon.poll() is None:
            for name in self.running_guests():
                self.virsh("destroy", name, check=False)
        self.stop_libvirtd()
        self._kill_leftover_guests()
        for proc in self.services:
            proc.terminate()
            proc.wait()
        self.services.clear()
        for sock in self.listeners:
            sock.close()
        self.listeners.clear()
        cleanup_prefix(self.prefix)

    def _kill_leftover_guests(self):
        """qemu processes this lab started that libvirt did not stop (their pid files)."""
        for path in glob.glob(os.path.join(self.dirs["run"], "qemu", "*.pid")):
            with contextlib.suppress(OSError, ValueError):
                with open(path, encoding="ascii") as handle:
                    os.kill(int(handle.read().strip()), signal.SIGKILL)

    # -- libvirt --------------------------------------------------------------------------
    def virsh(self, *args, check=True, input=None, timeout=120):
        proc = subprocess.run(["virsh", "-q", "-c", self.uri] + list(args), input=input, capture_output=True,
                              text=True, check=False, timeout=timeout)
        if check and proc.returncode != 0:
            raise LibvirtLabError("virsh %s failed (rc=%d): %s" % (" ".join(args), proc.returncode,
                                                                   (proc.stderr or proc.stdout).strip()))
        return proc

    def running_guests(self):
        proc = self.virsh("list", "--name", check=False)
        return [line.strip() for line in proc.stdout.splitlines() if line.strip()]

    def domain_xml(self, name, interfaces):
        guests = self.dirs["guests"]
        return DOMAIN_XML.format(
            domain_type=self.domain_type, name=name, kernel=self.kernel, initrd=self.initrd, qemu=QEMU,
            interfaces="\n".join("    " + line for xml in interfaces for line in xml.splitlines()),
            console=os.path.join(guests, name + ".console"), channel=os.path.join(guests, name + ".sock"))

    def start_guest(self, name, interfaces, boot_timeout=180):
        """Create a transient guest with the given <interface> XMLs, wait for its init, return
        its GuestChannel."""
        path = os.path.join(self.dirs["guests"], name + ".xml")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.dirs["guests"], name + ".sock"))
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(self.domain_xml(name, interfaces))
        self.virsh("create", path)
        channel = GuestChannel(os.path.join(self.dirs["guests"], name + ".sock"), name)
        self.channels[name] = channel
        channel.connect(boot_timeout)
        return channel

    def destroy_guest(self, name):
        channel = self.channels.pop(name, None)
        if channel:
            channel.close()
        self.virsh("destroy", name)

    def taps(self, name):
        """[(tap, mac)] of a running guest, from libvirt's live XML."""
        root = ET.fromstring(self.virsh("dumpxml", name).stdout)
        return [(i.find("target").get("dev"), i.find("mac").get("address"))
                for i in root.iter("interface") if i.find("target") is not None]

    def libvirt_root(self):
        """A directory laid out like / for libvirt_adopt: etc/libvirt and run/libvirt are the
        private libvirtd's (symlinks to the lab's directories)."""
        root = os.path.join(self.workdir, "root")
        for sub, target in (("etc", self.dirs["etc"]), ("run", self.dirs["run"])):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
            link = os.path.join(root, sub, "libvirt")
            if not os.path.islink(link):
                os.symlink(target, link)
        return root

    def console_text(self, name):
        with open(os.path.join(self.dirs["guests"], name + ".console"), encoding="utf-8", errors="replace") as h:
            return h.read()
