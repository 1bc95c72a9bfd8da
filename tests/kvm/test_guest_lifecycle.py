# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rules follow real guests of a real libvirtd, with the guest_hooks role installed into it.

One lab hypervisor, one scenario in order (each step starts from what the previous one left):
guest web-a starts filtered before its first frame -> a NIC hot-plugged into it gets filtered ->
libvirtd restarts (reconnect) and web-a stays filtered -> web-a is destroyed and its rules go ->
after a libvirtd restart web-b gets web-a's tap name and its own rules -> an unbound guest is
left alone (and shows that every probe passes when nothing filters it).  Every verdict is what
the guest itself saw of the traffic it sent.
"""

import os
import subprocess
import sys
import time

import pytest

from kvm_support import SKIP_REASON, FILTERED, UNFILTERED, bring_up, chains_of, configure_hypervisor, every_frame_was_filtered, \
    guest_battery, jump_count, lab_binding, store_paths
from lab.libvirt_lab import LibvirtLab, interface_xml

pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REAPPLY = os.path.join(ROOT, "bin", "hypervisor-firewall-reapply")
A_MAC, A_IP = "52:54:00:00:00:0a", "192.168.100.10"
A_PLUG_MAC, A_PLUG_IP = "52:54:00:00:01:0a", "192.168.100.11"
B_MAC, B_IP = "52:54:00:00:00:0b", "192.168.100.20"
FREE_MAC, FREE_IP = "52:54:00:00:00:0f", "192.168.100.30"
SPOOF_IP = "192.168.100.99"
SEEN = {}  # what earlier steps found out (taps), for the later ones


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("kvm-lifecycle"))
    with LibvirtLab("hfwkvm%d" % os.getpid(), os.path.join(workdir, "lab")) as lab:
        print("lab guests: %s (%s)" % (lab.domain_type, lab.domain_type_reason))
        configure_hypervisor(lab, workdir, [lab_binding("web-a", A_MAC, A_IP),
                                            lab_binding("web-a", A_PLUG_MAC, A_PLUG_IP),
                                            lab_binding("web-b", B_MAC, B_IP)])
        lab.restart_libvirtd()  # libvirtd reads its hooks when it starts
        config_dir, lock_file = store_paths(workdir, lab)
        # the re-apply watcher, as the reapply role runs it: it places hot-plugged NICs
        watcher = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns, sys.executable, REAPPLY, "--watch", "1", "--no-monitor", "--quiet",
             "--config-dir", config_dir, "--lock-file", lock_file], stdout=subprocess.DEVNULL)
        try:
            yield lab
        finally:
            watcher.terminate()
            watcher.wait()


def wait_for(what, predicate, timeout=60):
    """Poll until predicate() is true; the deadline only bounds a hang, it is not asserted on."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("%s did not happen within %ss" % (what, timeout))
        time.sleep(0.5)


def test_starting_a_guest_installs_its_rules_before_its_first_frame(host):
    guest = host.start_guest("web-a", [interface_xml(A_MAC)])
    [(tap, _mac)] = host.taps("web-a")
    SEEN["web-a tap"] = tap
    assert chains_of(host, tap), "the qemu hook installed no chain for %s" % tap
    bring_up(guest, "eth0", A_IP)
    assert guest_battery(guest, "eth0", A_IP, SPOOF_IP) == FILTERED
    sent, filtered = every_frame_was_filtered(host, tap)
    assert sent > 20 and filtered == sent, "frames from the guest: %d, through its chain: %s" % (sent, filtered)


def test_a_hot_plugged_nic_gets_filtered(host):
    guest = host.channels["web-a"]
    host.virsh("attach-interface", "web-a", "--type", "bridge", "--source", "br0", "--mac", A_PLUG_MAC,
               "--model", "virtio", "--live")
    [tap] = [t for t, mac in host.taps("web-a") if mac == A_PLUG_MAC]
    SEEN["web-a plugged tap"] = tap
    # libvirt runs no hook for attach-interface: the watcher sees the new tap and places it by MAC
    wait_for("rules for the hot-plugged %s" % tap, lambda: jump_count(host, tap) is not None)
    wait_for("the guest's second NIC", lambda: len(guest.run("links")) == 3)
    nic = [line.split()[1] for line in guest.run("links") if line.split()[2] == A_PLUG_MAC][0]
    guest.run("down", "eth0")  # both NICs share the subnet: make the new one the way out
    bring_up(guest, nic, A_PLUG_IP)
    assert guest_battery(guest, nic, A_PLUG_IP, SPOOF_IP) == FILTERED
    guest.run("down", nic)
    guest.run("up", "eth0")


def test_restarting_libvirtd_keeps_running_guests_filtered(host):
    host.restart_libvirtd()
    assert host.running_guests() == ["web-a"]
    for tap in (SEEN["web-a tap"], SEEN["web-a plugged tap"]):
        assert chains_of(host, tap), "reconnect left %s unfiltered" % tap
    guest = host.channels["web-a"]
    assert guest_battery(guest, "eth0", A_IP, SPOOF_IP) == FILTERED
    sent, filtered = every_frame_was_filtered(host, SEEN["web-a tap"])
    assert filtered == sent


def test_destroying_a_guest_removes_its_rules(host):
    host.destroy_guest("web-a")
    for tap in (SEEN["web-a tap"], SEEN["web-a plugged tap"]):
        assert chains_of(host, tap) == [] and jump_count(host, tap) is None


def test_a_guest_that_gets_the_first_ones_tap_gets_its_own_rules(host):
    # with no guest left, a restarted libvirtd hands tap names out from the start again
    host.restart_libvirtd()
    guest = host.start_guest("web-b", [interface_xml(B_MAC)])
    [(tap, _mac)] = host.taps("web-b")
    assert tap == SEEN["web-a tap"], "libvirt gave web-b %s, not web-a's %s" % (tap, SEEN["web-a tap"])
    bring_up(guest, "eth0", B_IP)
    # web-a's rules would drop web-b's own address and let web-a's pass: web-b sends web-a's
    assert guest_battery(guest, "eth0", B_IP, A_IP) == FILTERED
    sent, filtered = every_frame_was_filtered(host, tap)
    assert filtered == sent


def test_an_unbound_guest_is_left_alone(host):
    guest = host.start_guest("free", [interface_xml(FREE_MAC)])
    [(tap, _mac)] = host.taps("free")
    assert chains_of(host, tap) == [] and jump_count(host, tap) is None
    bring_up(guest, "eth0", FREE_IP)
    assert guest_battery(guest, "eth0", FREE_IP, SPOOF_IP) == UNFILTERED
