# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adoption from a running libvirtd: its own nwfilter driver filters a real guest (<filterref> in
its <interface>), playbooks/adopt.yml takes the rules over while the guest sends spoofed frames
the whole time, and not one of them passes, during or after the takeover.  Then libvirtd's driver
is switched off as docs/docsite/rst/adopt.rst says (libvirtd restarted without it, its binding
files set aside), and the running guest stays filtered by our rules, which match the store.
"""

import os
import select
import socket
import struct
import sys
import threading
import time

import pytest

from ansible_run import ROOT, host_vars, run_playbook
from kvm_support import SKIP_REASON, FILTERED, bring_up, chains_of, guest_battery, jump_count
from lab import packet_socket
from lab.libvirt_lab import BRIDGE, HOST_IPV4, LibvirtLab, interface_xml

pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")

ADOPT = os.path.join(ROOT, "playbooks", "adopt.yml")
REAPPLY = os.path.join(ROOT, "bin", "hypervisor-firewall-reapply")
MAC, IP = "52:54:00:00:00:4a", "192.168.100.40"
SPOOF_IP = "192.168.100.98"
# libvirt's clean-traffic alone: port 25 is nobody's business here
LIBVIRT_FILTERED = dict(FILTERED, **{"tcp 25": "connected"})


class SourceCounter:
    """Counts the IPv4 packets per source address that reach the hypervisor's bridge (what got
    past the guest's filter), in a thread, from start() to stop()."""

    def __init__(self, ns):
        self.sock = packet_socket(ns, BRIDGE)
        self.counts = {}
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _loop(self):
        while self.running:
            ready, _w, _x = select.select([self.sock], [], [], 0.2)
            if not ready:
                continue
            try:
                frame = self.sock.recv(2048)
            except BlockingIOError:
                continue
            if len(frame) >= 34 and struct.unpack("!H", frame[12:14])[0] == 0x0800:
                source = socket.inet_ntoa(frame[26:30])
                self.counts[source] = self.counts.get(source, 0) + 1

    def stop(self):
        self.running = False
        self.thread.join()
        self.sock.close()
        return dict(self.counts)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("kvm-adopt"))
    with LibvirtLab("hfwkva%d" % os.getpid(), os.path.join(workdir, "lab")) as lab:
        yield lab, workdir


def adopt(lab, workdir, tap, check=False):
    hostvars = dict(host_vars(lab.ns, workdir))
    hostvars.update(adopt_config_dir=hostvars["hfw_config_dir"], adopt_lock_file=hostvars["hfw_lock_file"])
    extra = {"adopt_libvirt_root": lab.libvirt_root(), "adopt_binding_parameters": {tap: {"IP": IP}}}
    proc, recap = run_playbook(workdir, ADOPT, {"hypervisors": {lab.ns: hostvars}}, check=check, extra_vars=extra)
    assert proc.returncode == 0 and recap[lab.ns]["failed"] == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc, recap[lab.ns]


def stream_result(guest, name):
    """{'sent': N, 'replies': M} of a guest's ping stream, from the guest's own count."""
    words = guest.run("stopstream", name)[0].split()
    return {"sent": int(words[1]), "replies": int(words[3])}


def test_libvirtds_own_driver_filters_the_guest(host):
    lab, _workdir = host
    guest = lab.start_guest("legacy", [interface_xml(MAC, filterref=("clean-traffic", {"IP": IP}))])
    [(tap, _mac)] = lab.taps("legacy")
    assert os.listdir(os.path.join(lab.dirs["run"], "nwfilter-binding")) == [tap + ".xml"]
    bring_up(guest, "eth0", IP)
    assert guest_battery(guest, "eth0", IP, SPOOF_IP) == LIBVIRT_FILTERED


def test_adopting_while_the_guest_spoofs_lets_no_spoofed_frame_pass(host):
    lab, workdir = host
    guest = lab.channels["legacy"]
    [(tap, _mac)] = lab.taps("legacy")
    counter = SourceCounter(lab.ns).start()
    guest.run("addr", "eth0", SPOOF_IP + "/32")
    guest.run("stream", "spoofed", SPOOF_IP, HOST_IPV4)
    guest.run("stream", "own", IP, HOST_IPV4)
    time.sleep(2)  # both streams run under libvirtd's rules first
    _proc, check = adopt(lab, workdir, tap, check=True)
    _proc, recap = adopt(lab, workdir, tap)
    assert recap["changed"] >= 1
    time.sleep(2)  # and then under ours
    spoofed = stream_result(guest, "spoofed")
    own = stream_result(guest, "own")
    seen = counter.stop()
    guest.run("deladdr", "eth0", SPOOF_IP + "/32")
    assert spoofed["sent"] > 20 and spoofed["replies"] == 0 and seen.get(SPOOF_IP, 0) == 0, \
        "spoofed packets got through: guest %s, bridge %s" % (spoofed, seen)
    assert own["replies"] > 0 and seen.get(IP, 0) > 0, "the guest's own traffic stopped: %s" % own
    assert chains_of(lab, tap) and jump_count(lab, tap) is not None
    _proc, again = adopt(lab, workdir, tap, check=True)
    assert again["changed"] == 0, "after the takeover the kernel holds exactly the adopted rules"


def test_libvirtds_driver_is_then_switched_off_and_the_guest_stays_filtered(host):
    lab, workdir = host
    [(tap, _mac)] = lab.taps("legacy")
    # docs/docsite/rst/adopt.rst steps 3 and 4: stop the driver (monolithic libvirtd: without its
    # nwfilter driver module), set libvirtd's binding files aside
    lab.stop_libvirtd()
    bindings = os.path.join(lab.dirs["run"], "nwfilter-binding")
    aside = os.path.join(workdir, "nwfilter-binding-aside")
    os.makedirs(aside)
    for name in os.listdir(bindings):
        os.rename(os.path.join(bindings, name), os.path.join(aside, name))
    lab.start_libvirtd(nwfilter=False)
    assert "not supported" in lab.virsh("nwfilter-list", check=False).stderr, "the nwfilter driver still runs"
    assert lab.running_guests() == ["legacy"], "libvirtd's reconnect without its nwfilter driver stopped the guest"
    assert chains_of(lab, tap) and jump_count(lab, tap) is not None
    config_dir = host_vars(lab.ns, workdir)["hfw_config_dir"]
    lock_file = host_vars(lab.ns, workdir)["hfw_lock_file"]
    check = lab.ip_netns([sys.executable, REAPPLY, "--check", "--config-dir", config_dir, "--lock-file", lock_file],
                         check=False)
    assert check.returncode == 0, "the kernel drifted from the store: %s" % (check.stdout + check.stderr)
    assert guest_battery(lab.channels["legacy"], "eth0", IP, SPOOF_IP) == LIBVIRT_FILTERED
