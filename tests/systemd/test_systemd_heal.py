# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hypervisor and reapply roles on a real systemd: firewall restarts, reloads and a reboot heal.

One booted Debian 12 container (container.py) sits in a lab's hypervisor namespace with two guests
on taps vnet0/vnet1 and a NAT network on br0. Ansible provisions it over SSH with the hypervisor
role (which runs the reapply role: command, oneshot unit, watcher service). For each backend
(xtables, nftables) and each host firewall profile:

- ``persistent``: netfilter-persistent (iptables-persistent's saved rules) and nftables.service;
- ``firewalld``: firewalld with its nftables backend, and libvirt's zones;

each event below is made the way an admin makes it, then spoofed frames probe the guests while
the owned rules are read until they are byte-identical again. After that no spoofed frame may
pass and the whole battery must give the verdicts it gave before the event. The times are
written to .build/systemd/heal-times.md (docs/docsite/rst/reapply.rst quotes a run).
"""

import os
import time

import pytest

from lab import Lab, format_table, run_battery

import heal
from container import Container, can_boot_here
from rootfs import RootBuildError, build_root

ROOT = heal.ROOT
CACHE = os.path.join(ROOT, ".build", "systemd")
RESULTS = os.path.join(CACHE, "heal-times.md")
GUEST_NICS = [dict(portdev="vnet%d" % i, mac="52:54:00:00:00:%02x" % i, filter="clean-traffic",
                   parameters={"IP": "192.168.100.1%d" % i}) for i in range(2)]
NETWORKS = [dict(name="labnet", bridge="br0", mode="nat", ipv4="192.168.100.1/24")]
UNITS = ("hypervisor-firewall-reapply.service", "hypervisor-firewall-watch.service")

PLAY = """
- hosts: hypervisors
  gather_facts: false
  tasks:
    - name: Provision the hypervisor
      ansible.builtin.include_role:
        name: hypervisor.firewall.hypervisor
      vars:
        hypervisor_networks: "{{ hfw_networks }}"
        hypervisor_guest_nics: "{{ hfw_nics }}"
    - name: Filter with this run's backend (kept in the store for the units)
      hypervisor.firewall.guest_nic_filter:
        bindings: "{{ hfw_nics }}"
        exclusive: true
        backend: "{{ hfw_backend }}"
"""

# Later changes of backend or host firewall: what an admin re-runs after them (the network, for
# firewalld's zone, and the NICs with the backend); the whole role runs once, twice for idempotence.
SWITCH_PLAY = """
- hosts: hypervisors
  gather_facts: false
  tasks:
    - name: The virtual network (on a firewalld host its bridge goes to libvirt's zone)
      hypervisor.firewall.virt_network_fw:
        name: "{{ hfw_networks[0].name }}"
        bridge: "{{ hfw_networks[0].bridge }}"
        mode: "{{ hfw_networks[0].mode }}"
        ipv4: "{{ hfw_networks[0].ipv4 }}"
    - name: Filter with this run's backend
      hypervisor.firewall.guest_nic_filter:
        bindings: "{{ hfw_nics }}"
        exclusive: true
        backend: "{{ hfw_backend }}"
"""

PROFILES = {
    "persistent": (["systemctl", "disable", "--now", "firewalld"],
                   ["systemctl", "enable", "--now", "netfilter-persistent", "nftables"]),
    "firewalld": (["systemctl", "disable", "--now", "nftables", "netfilter-persistent"],
                  ["systemctl", "enable", "--now", "firewalld"]),
}
EVENTS = {
    "systemctl restart netfilter-persistent": ["systemctl", "restart", "netfilter-persistent"],
    "systemctl restart nftables": ["systemctl", "restart", "nftables"],
    "firewall-cmd --reload": ["firewall-cmd", "--reload"],
    # firewalld takes its D-Bus name (systemd: started) before it loads its rules, so the restart
    # has completed when firewall-cmd gets an answer, as an admin checks it
    "systemctl restart firewalld": ["sh", "-c", "systemctl restart firewalld && firewall-cmd --state"],
    "reboot": None,
}
MATRIX = [(backend, profile, event)
          for backend, profiles in (("xtables", ("persistent", "firewalld")), ("nftables", ("firewalld", "persistent")))
          for profile in profiles
          for event in (("systemctl restart netfilter-persistent", "systemctl restart nftables", "reboot")
                        if profile == "persistent" else ("firewall-cmd --reload", "systemctl restart firewalld", "reboot"))]

pytestmark = pytest.mark.skipif(can_boot_here() is not None, reason="systemd stage: %s" % can_boot_here())


class Host:
    """The container, its lab and where the run stands (backend, profile, expected state)."""

    def __init__(self, lab, box, playbook):
        self.lab, self.box, self.playbook = lab, box, playbook
        self.backend = self.profile = None
        self.expected = self.verdicts = None
        self.times = []

    def provision(self, backend, profile):
        if (backend, profile) == (self.backend, self.profile):
            return
        if profile != self.profile:
            for argv in PROFILES[profile]:
                self.box.run(argv)
        first = self.backend is None
        _changed, output = self.playbook.run(PLAY if first else SWITCH_PLAY, hfw_backend=backend, hfw_nics=GUEST_NICS,
                                             hfw_networks=NETWORKS)
        # xtables on a firewalld host: the modules say that firewalld's reloads flush it
        assert ("each firewalld reload or restart flushes" in " ".join(output.split())) == (
            backend == "xtables" and profile == "firewalld"), output
        self.backend, self.profile = backend, profile
        if first:  # once is enough to show the roles converge (a run costs minutes on 2 busy CPUs)
            again, output = self.playbook.run(PLAY, hfw_backend=backend, hfw_nics=GUEST_NICS, hfw_networks=NETWORKS)
            assert again == 0, "second run changed %d task(s):\n%s" % (again, output)
        for unit in UNITS:
            assert self.box.run(["systemctl", "is-enabled", unit]).stdout.strip() == "enabled"
        assert self.box.run(["systemctl", "is-active", UNITS[1]]).stdout.strip() == "active"
        self.expected = heal.owned_state(self.lab)
        self.verdicts = run_battery(self.lab)
        for case in heal.SPOOF_CASES:
            assert not any(self.verdicts[case.name].values()), format_table(self.verdicts)
        for case in heal.LEGIT_CASES:
            assert self.verdicts[case.name]["guest"], format_table(self.verdicts)
        if profile == "firewalld":
            self.check_zone()

    def check_zone(self):
        """br0 is in libvirt's zone, kept over reloads; the zone's policy is what guests meet at the
        host: DHCP (and DNS, TFTP, SSH, ICMP) in, every other port rejected; forwarding passes."""
        for flag in ([], ["--permanent"]):
            zone = self.box.run(["firewall-cmd"] + flag + ["--get-zone-of-interface=br0"]).stdout.strip()
            assert zone == "libvirt", "br0 is in zone %r %s" % (zone, flag)
        assert self.verdicts["dhcp-discover"]["host"] and not self.verdicts["ipv4-udp-to-host"]["host"], \
            format_table(self.verdicts)
        assert self.verdicts["ipv4-udp"]["guest"], format_table(self.verdicts)

    def restored_count(self):
        """Per unit: how many times it logged a restore since the container booted."""
        counts = {}
        for unit in UNITS:
            text = self.box.run(["journalctl", "-b", "-u", unit, "-o", "cat", "--no-pager"], check=False).stdout
            counts[unit] = text.count("restored from the store")
        return counts


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    try:
        root = build_root(CACHE)
    except RootBuildError as exc:
        pytest.skip("systemd stage: cannot build the Debian 12 root here: %s" % exc)
    if os.path.exists(RESULTS):
        os.unlink(RESULTS)  # the times of this run only
    work = str(tmp_path_factory.mktemp("systemd"))
    prefix = "hfwsd%d" % os.getpid()
    with Lab(prefix, guests=2) as lab:
        box = Container(root, os.path.join(work, "box"), lab.hv, prefix)
        try:
            with box:
                yield Host(lab, box, heal.Playbook(os.path.join(work, "ansible"), box.inventory_vars()))
        finally:
            box.remove()


def test_the_container_boots_with_its_firewall_services(host):
    box = host.box
    assert box.run(["systemctl", "is-system-running"]).stdout.strip() == "running"
    assert box.run(["systemctl", "is-active", "dbus", "ssh", "firewalld"]).stdout.split() == ["active"] * 3
    assert box.run(["firewall-cmd", "--get-default-zone"]).stdout.strip() == "public"
    assert "libvirt" in box.run(["firewall-cmd", "--get-zones"]).stdout.split()


def test_spoofed_frames_pass_before_any_filter(host):
    """The probe must see an unfiltered guest, or its silence later proves nothing."""
    for argv in PROFILES["persistent"]:
        host.box.run(argv)
    host.profile = "persistent"
    assert heal.spoof_passed(host.lab) == sorted(case.name for case in heal.SPOOF_CASES)


@pytest.mark.parametrize("backend,profile,event", MATRIX, ids=["%s-%s-%s" % (b, p, e.split()[-1]) for b, p, e in MATRIX])
def test_rules_come_back(host, backend, profile, event):
    host.provision(backend, profile)
    lab, box = host.lab, host.box
    before = host.restored_count()
    if event == "reboot":
        # a fresh kernel has no rules at all: the namespace outlives the container, so empty it
        _reboot_secs, asked = box.reboot(between=lambda: lab.exec("hv", ["nft", "flush", "ruleset"]))
        done = time.monotonic()
        before = {unit: 0 for unit in UNITS}
        seen = heal.watch_heal(lab, host.expected)
    else:
        command = box.start(EVENTS[event])
        seen = heal.watch_heal(lab, host.expected, running=lambda: command.poll() is None)
        assert command.wait() == 0, "%s failed: %s" % (event, command.stderr.read())
        command.stderr.close()
        asked = done = None
    after = host.restored_count()
    healers = sorted(unit.split(".", maxsplit=1)[0].replace("hypervisor-firewall-", "") for unit in UNITS
                     if after[unit] > before[unit])

    for _probe in range(3):
        assert heal.spoof_passed(lab) == [], "a spoofed frame passed after the heal"
    verdicts = run_battery(lab)
    assert verdicts == host.verdicts, format_table(host.verdicts) + "\nafter %s:\n" % event + format_table(verdicts)
    if profile == "firewalld":
        host.check_zone()
        # firewalld never touches the nft tables of the nftables backend
        if backend == "nftables":
            assert not seen["broken"] and seen["last_pass"] is None, \
                "%s left a guest unfiltered (last spoofed frame at %s s)" % (event, seen["last_pass"])
    if seen["broken"]:
        assert healers, "the rules were flushed and came back, but neither unit logged a restore"
    host.times.append(dict(backend=backend, profile=profile, event=event, healed=seen["healed"],
                           last_pass=seen["last_pass"], broken=seen["broken"], healers=healers,
                           since_asked=None if asked is None else done - asked, probes=seen["probes"]))
    _write_results(host.times)


def _write_results(times):
    lines = ["| Backend | Host firewall | Event | Seen flushed | Healed after | Last spoofed frame passed at | "
             "Healed by |", "|---|---|---|---|---|---|---|"]
    for row in times:
        event = "`%s`" % row["event"]
        if row["since_asked"] is not None:
            event += " (%.1f s from the request to a booted container)" % row["since_asked"]
        lines.append("| %s | %s | %s | %s | %.2f s | %s | %s |" % (
            row["backend"], row["profile"], event, "yes" if row["broken"] else "no", row["healed"],
            "-" if row["last_pass"] is None else "%.2f s" % row["last_pass"], ", ".join(row["healers"]) or "-"))
    with open(RESULTS, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
