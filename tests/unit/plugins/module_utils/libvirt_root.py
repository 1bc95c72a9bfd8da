# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A temporary root laid out like a libvirt host's, for adoption tests.

Filters are libvirt's own (/usr/share/libvirt/nwfilter, or the copies in roles/default_filters),
written the way libvirtd keeps them in /etc/libvirt/nwfilter: with the auto-generated warning and
a <uuid>. Bindings are written the way libvirtd keeps them in /run/libvirt/nwfilter-binding.
"""

import os
import re
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures", "adopt")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
LIBVIRT_FILTERS = "/usr/share/libvirt/nwfilter"
FALLBACK_FILTERS = os.path.join(REPO, "roles", "default_filters", "files")
OWNER_UUID_NS = uuid.UUID("6f1f6c0e-8d4b-4a5e-9c1d-2b3a4c5d6e7f")

WARNING = """<!--
WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE
OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:
  virsh %s %s
or other application using the libvirt API.
-->

"""


def filter_source_dir():
    return LIBVIRT_FILTERS if os.path.isdir(LIBVIRT_FILTERS) else FALLBACK_FILTERS


def filter_uuid(name):
    """A fixed uuid per filter name, so a test can tell libvirt's uuid from one we made up."""
    return str(uuid.uuid5(OWNER_UUID_NS, "filter/" + name))


def libvirt_filter_text(path):
    text = open(path, encoding="utf-8").read()
    name = re.search(r"<filter\s+name=['\"]([^'\"]+)", text).group(1)
    opening = re.search(r"<filter\b[^>]*>", text)
    with_uuid = text[:opening.end()] + "\n  <uuid>%s</uuid>" % filter_uuid(name) + text[opening.end():]
    return name, WARNING % ("nwfilter-edit", name) + with_uuid


def binding_text(portdev, mac, filter_name, params=(), owner="guest0"):
    """A <filterbinding> as libvirtd writes it: owner, portdev, mac, filterref with parameters."""
    lines = [
        "<filterbinding>", "  <owner>", "    <name>%s</name>" % owner,
        "    <uuid>%s</uuid>" % uuid.uuid5(OWNER_UUID_NS, "domain/" + owner), "  </owner>",
        "  <portdev name='%s'/>" % portdev, "  <mac address='%s'/>" % mac,
        "  <filterref filter='%s'>" % filter_name,
    ]
    lines += ["    <parameter name='%s' value='%s'/>" % pair for pair in params]
    lines += ["  </filterref>", "</filterbinding>"]
    return WARNING % ("nwfilter-binding-edit", portdev) + "\n".join(lines) + "\n"


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def fixture(name):
    return open(os.path.join(FIXTURES, name), encoding="utf-8").read()


def make_root(root, bindings=(), networks=True):
    """Lay out ``root``: every libvirt filter, ``bindings`` ((portdev, mac, filter, params), ...),
    and with ``networks``: default (running), routed (autostart, stopped), host-bridge (bridge
    mode, autostart) and spare (neither). Returns the filter names written."""
    names = []
    source = filter_source_dir()
    for entry in sorted(os.listdir(source)):
        if entry.endswith(".xml"):
            name, text = libvirt_filter_text(os.path.join(source, entry))
            _write(os.path.join(root, "etc/libvirt/nwfilter", name + ".xml"), text)
            names.append(name)
    os.makedirs(os.path.join(root, "run/libvirt/nwfilter-binding"), exist_ok=True)
    for index, (portdev, mac, filter_name, params) in enumerate(bindings):
        _write(os.path.join(root, "run/libvirt/nwfilter-binding", portdev + ".xml"),
               binding_text(portdev, mac, filter_name, params, owner="guest%d" % index))
    if networks:
        netdir = os.path.join(root, "etc/libvirt/qemu/networks")
        for name in ("default", "routed", "host-bridge", "spare"):
            _write(os.path.join(netdir, name + ".xml"), fixture("network-%s.xml" % name))
        os.makedirs(os.path.join(netdir, "autostart"), exist_ok=True)
        for name in ("default", "routed", "host-bridge"):
            # libvirt links to the absolute path on the real host: dangling under a test root
            os.symlink("/etc/libvirt/qemu/networks/%s.xml" % name, os.path.join(netdir, "autostart", name + ".xml"))
        _write(os.path.join(root, "run/libvirt/network/default.xml"), fixture("network-default-status.xml"))
    return names
