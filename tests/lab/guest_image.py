"""The lab guest's boot files: Debian's kernel and an initramfs of busybox-static, the virtio NIC
modules and our init script (tests/lab/guest/init).  No disk image.

The initramfs is written once per content (kernel release, busybox, modules, scripts) into the
ignored .build/kvm-lab/ folder and reused; ``guest_boot_files()`` returns (kernel, initramfs).
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import os
import platform
import stat

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE_DIR = os.path.join(ROOT, ".build", "kvm-lab")
SCRIPT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest")
BUSYBOX = "/bin/busybox"
# The NIC driver; modules.dep adds what it needs (virtio, virtio_ring, failover, ...).
MODULES = ("kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/net/virtio_net.ko")
APPLETS = ("sh", "mount", "insmod", "ip", "ping", "arping", "udhcpc", "nc", "stty", "sed", "cat",
           "sleep", "kill", "rm", "grep", "poweroff", "true")


class GuestImageError(RuntimeError):
    """Something the guest needs is missing on this machine; the message names the package."""


def find_kernel():
    """(path of the newest /boot/vmlinuz-*, its release) of Debian's linux-image-amd64."""
    kernels = sorted(glob.glob("/boot/vmlinuz-*"), key=_version_key)
    for path in reversed(kernels):
        release = os.path.basename(path)[len("vmlinuz-"):]
        if os.path.isfile(os.path.join("/lib/modules", release, "modules.dep")) and os.access(path, os.R_OK):
            return path, release
    raise GuestImageError("no readable /boot/vmlinuz-* with modules in /lib/modules: apt-get install linux-image-amd64")


def _version_key(path):
    return [int(part) if part.isdigit() else part for part in
            os.path.basename(path).replace("-", ".").split(".")]


def module_order(release, wanted=MODULES):
    """The .ko paths (relative to /lib/modules/RELEASE) to load, dependencies first."""
    deps = {}
    with open(os.path.join("/lib/modules", release, "modules.dep"), encoding="utf-8") as handle:
        for line in handle:
            name, _sep, rest = line.partition(":")
            deps[name.strip()] = rest.split()
    order = []

    def visit(name):
        if name in order:
            return
        if name not in deps:
            raise GuestImageError("kernel %s has no module %s (is it built in?)" % (release, name))
        # modules.dep lists every dependency, deepest last: load from the end
        for dep in reversed(deps[name]):
            visit(dep)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


class CpioWriter:
    """A newc ("070701") cpio archive, the format the kernel unpacks as an initramfs."""

    def __init__(self):
        self.out = io.BytesIO()
        self.inode = 1

    def _entry(self, name, mode, data=b"", nlink=1):
        fields = (self.inode, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
        self.inode += 1
        header = b"070701" + b"".join(b"%08x" % value for value in fields)
        self.out.write(header + name.encode() + b"\0")
        self._pad()
        self.out.write(data)
        self._pad()

    def _pad(self):
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def directory(self, name):
        self._entry(name, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name, data, mode=0o644):
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def build_initramfs(release):
    """The gzip-compressed initramfs bytes for kernel ``release``."""
    if not os.path.isfile(BUSYBOX):
        raise GuestImageError("%s missing: apt-get install busybox-static" % BUSYBOX)
    modules = module_order(release)
    cpio = CpioWriter()
    for name in ("bin", "dev", "proc", "sys", "tmp", "etc", "lib", "lib/modules"):
        cpio.directory(name)
    cpio.file("bin/busybox", _read(BUSYBOX), 0o755)
    for applet in APPLETS:
        cpio.symlink("bin/" + applet, "busybox")
    cpio.file("init", _read(os.path.join(SCRIPT_DIR, "init")), 0o755)
    cpio.file("bin/dhcp-event", _read(os.path.join(SCRIPT_DIR, "dhcp-event")), 0o755)
    for module in modules:
        cpio.file("lib/modules/" + os.path.basename(module), _read(os.path.join("/lib/modules", release, module)))
    cpio.file("etc/modules", "".join(os.path.basename(m) + "\n" for m in modules).encode())
    return gzip.compress(cpio.finish(), compresslevel=6, mtime=0)


def _content_key(release):
    digest = hashlib.sha256(release.encode())
    for path in [BUSYBOX] + sorted(glob.glob(os.path.join(SCRIPT_DIR, "*"))) + [__file__]:
        digest.update(_read(path))
    return digest.hexdigest()[:16]


def guest_boot_files():
    """(kernel path, initramfs path); builds the initramfs into .build/kvm-lab/ when needed."""
    if platform.machine() != "x86_64":
        raise GuestImageError("the lab guest is x86_64 only (this machine is %s)" % platform.machine())
    kernel, release = find_kernel()
    path = os.path.join(CACHE_DIR, "initramfs-%s-%s.cpio.gz" % (release, _content_key(release)))
    if not os.path.isfile(path):
        os.makedirs(CACHE_DIR, exist_ok=True)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "wb") as handle:
            handle.write(build_initramfs(release))
        os.replace(tmp, path)
    return kernel, path
