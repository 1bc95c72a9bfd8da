"""The Debian 12 root the systemd stage boots: built once with debootstrap, cached under .build/.

Everything a run needs is installed here, so a cached run is offline: systemd with D-Bus and
logind, sshd (Ansible comes in over SSH, as an admin's does), firewalld (nftables backend),
netfilter-persistent with iptables-persistent, nftables.service, the engine's Python libraries,
python3-apt for Ansible's package module, and libvirt's firewalld zones and policies taken from
Debian's libvirt-daemon-system package (only those files: the zones libvirt puts its bridges in).

The cache key covers the suite, the mirror, the package list and BUILD_VERSION (bump it when
``_configure`` changes), so a changed recipe builds a new root next to the old one.

``python3 tests/systemd/rootfs.py DIR`` builds (or finds) the root ahead of a run.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

SUITE = "bookworm"
BUILD_VERSION = 1
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "openssh-server", "python3", "python3-apt",
    "python3-lxml", "python3-netaddr", "iproute2", "iptables", "ebtables", "nftables", "ipset",
    "firewalld", "netfilter-persistent", "iptables-persistent", "procps",
)
# libvirt's own firewalld files, from the package that ships them on a Debian hypervisor
LIBVIRT_ZONE_PACKAGE = "libvirt-daemon-system"
LIBVIRT_ZONE_FILES = ("zones/libvirt.xml", "zones/libvirt-routed.xml", "policies/libvirt-to-host.xml",
                      "policies/libvirt-routed-in.xml", "policies/libvirt-routed-out.xml")
DONE = ".hfw-root-complete"
SOURCES = ("/etc/apt/sources.list",) + tuple(sorted(glob.glob("/etc/apt/sources.list.d/*")))

# An admin's saved rules, as iptables-save writes them: restoring them (netfilter-persistent
# start) replaces every table named here, which is what flushes our chains on a restart.
RULES_V4 = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "admin: ssh" -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
"""
RULES_V6 = RULES_V4.replace("admin: ssh", "admin: ssh6")


class RootBuildError(RuntimeError):
    """The root cannot be built here; the message says why (the stage skips with it)."""


def mirror_from_sources(texts, suite=SUITE):
    """The first Debian mirror URI in apt's sources (one-line or deb822 form) serving ``suite``."""
    for text in texts:
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 3 and words[0] == "deb":
                uri_at = 2 if words[1].startswith("[") else 1
                while uri_at < len(words) and not re.match(r"^[a-z]+://", words[uri_at]):
                    uri_at += 1
                if uri_at + 1 < len(words) and words[uri_at + 1] == suite:
                    return words[uri_at]
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                match = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
                if match:
                    fields[match.group(1).lower()] = match.group(2).split()
            if "deb" in fields.get("types", []) and suite in fields.get("suites", []) and fields.get("uris"):
                return fields["uris"][0]
    return None


def cache_key(mirror, suite=SUITE, packages=PACKAGES):
    text = "\n".join([str(BUILD_VERSION), suite, mirror] + sorted(packages))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _read_sources(paths):
    texts = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                texts.append(handle.read())
        except OSError:
            continue
    return texts


def _run(argv, log, **kwargs):
    log.write("+ %s\n" % " ".join(argv))
    log.flush()
    proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False, **kwargs)
    if proc.returncode != 0:
        raise RootBuildError("%s failed (rc %d); see %s" % (argv[0], proc.returncode, log.name))


def _write(root, path, text, mode=0o644):
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(full, mode)


def _configure(root, log):
    _write(root, "/etc/hostname", "hfw-systemd\n")
    _write(root, "/etc/ssh/sshd_config.d/hfw-test.conf",
           "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n")
    _write(root, "/etc/iptables/rules.v4", RULES_V4, 0o640)
    _write(root, "/etc/iptables/rules.v6", RULES_V6, 0o640)
    # libvirt's zone files, extracted from its Debian package (no libvirtd: only what firewalld reads)
    with tempfile.TemporaryDirectory(dir=os.path.join(root, "tmp")) as work:
        inside = "/" + os.path.relpath(work, root)
        _run(["chroot", root, "sh", "-c", 'cd "$1" && apt-get download -q "$2"', "sh", inside,
              LIBVIRT_ZONE_PACKAGE], log)
        debs = glob.glob(os.path.join(work, LIBVIRT_ZONE_PACKAGE + "_*.deb"))
        if len(debs) != 1:
            raise RootBuildError("apt-get download %s gave %r" % (LIBVIRT_ZONE_PACKAGE, debs))
        _run(["dpkg-deb", "-x", debs[0], os.path.join(work, "x")], log)
        for name in LIBVIRT_ZONE_FILES:
            target = os.path.join(root, "usr/lib/firewalld", name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(work, "x/usr/lib/firewalld", name), target)
    _run(["chroot", root, "apt-get", "clean"], log)


def build_root(cache_dir, log_path=None):
    """Path of a complete root under ``cache_dir``, building it first when missing."""
    mirror = mirror_from_sources(_read_sources(SOURCES))
    if mirror is None:
        raise RootBuildError("no Debian mirror for %s in %s" % (SUITE, ", ".join(SOURCES)))
    root = os.path.join(cache_dir, "debian12-" + cache_key(mirror))
    if os.path.exists(os.path.join(root, DONE)):
        return root
    if shutil.which("debootstrap") is None:
        raise RootBuildError("debootstrap is not installed (tests/run setup installs it)")
    os.makedirs(cache_dir, exist_ok=True)
    partial = root + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    log_path = log_path or root + ".log"
    with open(log_path, "w", encoding="utf-8") as log:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        _run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, partial, mirror],
             log, env=env)
        _configure(partial, log)
    with open(os.path.join(partial, DONE), "w", encoding="utf-8") as handle:
        handle.write("%s %s\n" % (SUITE, mirror))
    shutil.rmtree(root, ignore_errors=True)
    os.rename(partial, root)
    return root


if __name__ == "__main__":
    print(build_root(sys.argv[1]))
