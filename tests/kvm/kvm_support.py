"""What the kvm tests share: the lab hypervisor's playbook run, the guest's own probe battery and
the kernel counters that show no frame slipped past the rules."""

from __future__ import annotations

import os
import re

from ansible_run import ROOT, host_vars, run_playbook
from lab import libvirt_lab
from lab.libvirt_lab import HOST_IPV4

PLAYBOOK = os.path.join(ROOT, "tests", "kvm", "playbooks", "lab_hypervisor.yml")
# clean-traffic and what it references
CLEAN_TRAFFIC_FILTERS = ["allow-incoming-ipv4", "clean-traffic", "no-arp-ip-spoofing", "no-arp-mac-spoofing",
                         "no-arp-spoofing", "no-ip-spoofing", "no-mac-spoofing", "no-other-l2-traffic",
                         "no-other-rarp-traffic", "qemu-announce-self", "qemu-announce-self-rarp"]
# clean-traffic plus libvirt's no-spamming example: TCP to port 25 from the guest is dropped
LAB_FILTER = """<filter name='lab-guest' chain='root'>
  <filterref filter='clean-traffic'/>
  <rule action='drop' direction='out' priority='100'><tcp dstportstart='25'/></rule>
</filter>"""
SPOOF_MAC = "52:54:00:de:ad:01"

# What the guest sees when its NIC is filtered by lab-guest, and when nothing filters it
FILTERED = {"ping": 2, "spoofed-ip ping": 0, "spoofed-ip arp": 0, "spoofed-mac ping": 0,
            "dhcp lease": True, "tcp 80": "connected", "tcp 25": "no connection"}
UNFILTERED = {"ping": 2, "spoofed-ip ping": 2, "spoofed-ip arp": 2, "spoofed-mac ping": 2,
              "dhcp lease": True, "tcp 80": "connected", "tcp 25": "connected"}


def skip_reason():
    """Why the kvm stage cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, libvirtd)"
    if not os.path.exists("/dev/kvm"):
        return "no /dev/kvm on this machine"
    missing = libvirt_lab.missing_tools()
    if missing:
        return "needs the packages %s (tests/run setup installs them)" % " ".join(missing)
    return None


SKIP_REASON = skip_reason()


def lab_binding(domain, mac, ip):
    return {"domain": domain, "mac": mac, "filter": "lab-guest", "parameters": {"IP": ip}}


def configure_hypervisor(lab, workdir, bindings):
    """Run tests/kvm/playbooks/lab_hypervisor.yml against the lab; returns the changed count."""
    hostvars = dict(host_vars(lab.ns, workdir), lab_dir=lab.workdir, lab_hooks_dir=lab.hooks_dir,
                    lab_filter_names=CLEAN_TRAFFIC_FILTERS, lab_extra_filters=[LAB_FILTER], lab_bindings=bindings)
    proc, recap = run_playbook(workdir, PLAYBOOK, {"lab": {lab.ns: hostvars}})
    assert proc.returncode == 0 and recap[lab.ns]["failed"] == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return recap[lab.ns]["changed"]


def store_paths(workdir, lab):
    hv = host_vars(lab.ns, workdir)
    return hv["hfw_config_dir"], hv["hfw_lock_file"]


def bring_up(channel, nic, ip):
    channel.run("up", nic)
    channel.run("addr", nic, ip + "/24")


def guest_battery(channel, nic, ip, spoof_ip, target=HOST_IPV4):
    """Legitimate and spoofed traffic sent by the guest itself from ``nic`` (address ``ip``);
    returns what the guest saw of each probe (replies, lease, connection)."""
    seen = {"ping": channel.value("ping", 2, ip, target, key="replies")}
    channel.run("addr", nic, spoof_ip + "/32")
    seen["spoofed-ip ping"] = channel.value("ping", 2, spoof_ip, target, key="replies")
    seen["spoofed-ip arp"] = channel.value("arping", 2, nic, spoof_ip, target, key="replies")
    channel.run("deladdr", nic, spoof_ip + "/32")
    mac = dict(line.split()[1:] for line in channel.run("links"))[nic]
    channel.run("setmac", nic, SPOOF_MAC)
    seen["spoofed-mac ping"] = channel.value("ping", 2, ip, target, key="replies")
    channel.run("setmac", nic, mac)
    seen["dhcp lease"] = any(line.startswith("lease ") for line in channel.run("dhcp", nic))
    seen["tcp 80"] = channel.run("tcp", target, 80)[0]
    seen["tcp 25"] = channel.run("tcp", target, 25)[0]
    return seen


def ebtables_lines(lab, table="nat"):
    return lab.ip_netns(["ebtables", "-t", table, "-L", "--Lc"]).stdout.splitlines()


def jump_count(lab, tap):
    """Frames counted by the PREROUTING jump of ``tap`` into its filter chain (None: no jump)."""
    for line in ebtables_lines(lab):
        match = re.match(r"^-i %s -j \S+ , pcnt = (\d+)" % re.escape(tap), line)
        if match:
            return int(match.group(1))
    return None


def tap_rx_packets(lab, tap):
    """Frames the guest sent into its tap since libvirt created it (the tap's receive counter)."""
    return int(lab.ip_netns(["cat", "/sys/class/net/%s/statistics/rx_packets" % tap]).stdout)


def every_frame_was_filtered(lab, tap):
    """(tap rx, jump count) read while the guest is quiet; equal means every frame the guest
    ever sent went through its chain, so the rules were there before its first frame."""
    for _attempt in range(5):
        before = tap_rx_packets(lab, tap)
        jumped = jump_count(lab, tap)
        if tap_rx_packets(lab, tap) == before:
            return before, jumped
    raise AssertionError("the guest on %s never stopped sending" % tap)


def chains_of(lab, tap):
    """Our ebtables and iptables chains named after ``tap`` (libvirt's names: libvirt-I-vnet0, ...)."""
    names = []
    for table in ("nat",):
        names += [line.split()[2].rstrip(",") for line in ebtables_lines(lab, table)
                  if line.startswith("Bridge chain:") and tap in line]
    saved = lab.ip_netns(["iptables-save", "-t", "filter"]).stdout
    names += [line[1:].split()[0] for line in saved.splitlines() if line.startswith(":") and tap in line]
    return sorted(names)
