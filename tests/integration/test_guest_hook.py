# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bin/hypervisor-firewall-qemu-hook called the way libvirt calls it, around taps that come and go.

Guest slot g0 of a lab is played by two guests in turn on the same tap name vnet0, as libvirt
hands names out again: guest A (IP .10) starts, stops; guest B (IP .20) starts on vnet0.  Each
gets its own filter and never the other's, proven with frames sent from the guest namespace and
looked for on g1 (unfiltered).  libvirt creates the tap (MAC fe:... of the guest's MAC), then runs
``start begin``; ``stopped`` runs before the tap is deleted.
"""

import os
import select
import shutil
import subprocess
import sys
import time

import pytest

from lab import Lab, packet_socket
from lab import frames as F

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import transitions as _ops  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner, host_lock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOOK = os.path.join(ROOT, "bin", "hypervisor-firewall-qemu-hook")
FILTER_DIR = os.path.join(ROOT, "roles", "default_filters", "files")
MAC_A, IP_A = "52:54:00:00:00:0a", "192.168.100.10"
MAC_B, IP_B = "52:54:00:00:00:0b", "192.168.100.20"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(b) for b in ("ip", "nft", "iptables", "ebtables")),
    reason="needs root, iproute2, nft, iptables and ebtables (network namespaces)")

DOMAIN_XML = """<domain type='kvm' id='7'>
  <name>{name}</name>
  <uuid>6f1c2c3a-0d7e-4f57-9d5e-{suffix}</uuid>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='bridge'>
      <mac address='{mac}'/>
      <source bridge='br0'/>
      <target dev='{tap}'/>
      <model type='virtio'/>
      <alias name='net0'/>
    </interface>
  </devices>
</domain>
"""


@pytest.fixture
def host(tmp_path):
    """A lab whose g0 has no tap yet; the store binds guests A and B by domain and MAC."""
    store, lock = str(tmp_path / "store"), str(tmp_path / "lock")
    conf = tmp_path / "hook.conf"
    conf.write_text("config_dir = %s\nlock_file = %s\nlock_timeout = 2\n" % (store, lock))
    params = dict(config_dir=store, lock_file=lock, lock_timeout=10)
    with Lab("hfwhfws_gh%d" % os.getpid(), guests=2) as lab:
        lab.exec("hv", ["ip", "link", "del", "vnet0"])
        runner = HostRunner(prefix=lab.hv_prefix)
        _service.reconcile(store, lambda s: (define_filters(s), []), runner, False, lock_file=lock)
        bindings = [dict(domain="guest-a", mac=MAC_A, filter="clean-traffic", parameters={"IP": IP_A}),
                    dict(domain="guest-b", mac=MAC_B, filter="clean-traffic", parameters={"IP": IP_B})]
        result = _actions.guest_nic_filter(dict(params, bindings=bindings, state="present"), False, runner=runner)
        assert result["rebuilt_devices"] == [], "no guest runs: no rules yet"
        yield lab, params, str(conf), runner


def define_filters(state):
    for name in sorted(os.listdir(FILTER_DIR)):
        with open(os.path.join(FILTER_DIR, name), encoding="utf-8") as handle:
            state = _ops.define_filter(state, _filterxml.parse_filter_xml(handle.read())[0])
    return state


def plug(lab, mac, ip):
    """What libvirt does before 'start begin': a tap vnet0 (MAC fe:...) on br0; the guest's NIC behind it."""
    g0 = lab.guests[0].ns
    lab.exec("hv", ["ip", "link", "add", "vnet0", "type", "veth", "peer", "name", "eth0", "netns", g0])
    lab.exec("hv", ["ip", "link", "set", "vnet0", "address", "fe" + mac[2:], "master", lab.bridge, "up"])
    lab.exec("g0", ["ip", "link", "set", "eth0", "address", mac, "up"])
    lab.exec("g0", ["ip", "addr", "add", ip + "/24", "dev", "eth0"])


def unplug(lab):
    lab.exec("hv", ["ip", "link", "del", "vnet0"])


def hook(lab, conf, domain, op, sub="begin", mac=MAC_A, tap="vnet0"):
    xml = DOMAIN_XML.format(name=domain, suffix="%012d" % len(domain), mac=mac, tap=tap)
    env = dict(os.environ, HYPERVISOR_FIREWALL_HOOK_CONF=conf)
    argv = ["ip", "netns", "exec", lab.hv, sys.executable, HOOK, domain, op, sub, "-"]
    started = time.monotonic()
    proc = subprocess.run(argv, input=xml, capture_output=True, text=True, env=env, check=False)
    proc.elapsed = time.monotonic() - started
    assert proc.stdout == "", "the hook must never write to stdout (libvirt reads it as domain XML)"
    return proc


def eb_chains(lab):
    out = lab.exec("hv", ["ebtables-save"]).stdout
    return sorted(line.split()[0][1:] for line in out.splitlines() if line.startswith(":") and "vnet0" in line)


def delivered(lab, src_mac, src_ip):
    """True when a UDP frame from g0 (given source MAC/IP) reaches g1."""
    peer = lab.guests[1]
    return arrives((lab.guests[0].ns, "eth0"), (peer.ns, peer.ifname),
                   lambda marker: F.ipv4_udp(src_mac, peer.mac, src_ip, peer.ipv4, 40000, 41000, marker))


def g1_reaches_g0(lab, g1):
    g0 = lab.guests[0]
    return arrives((g1.ns, g1.ifname), (g0.ns, "eth0"),
                   lambda marker: F.ipv4_udp(g1.mac, MAC_A, g1.ipv4, IP_A, 40000, 41001, marker))


def arrives(source, sink, build):
    """True when the frame ``build(marker)`` sent on ``source`` (ns, ifname) shows up on ``sink`` within 0.5 s."""
    marker = F.new_marker()
    rx = packet_socket(*sink)
    tx = packet_socket(*source)
    try:
        tx.send(build(marker))
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if select.select([rx], [], [], deadline - time.monotonic())[0]:
                try:
                    while True:
                        if marker in rx.recv(65535):
                            return True
                except BlockingIOError:
                    pass
        return False
    finally:
        rx.close()
        tx.close()


def gathered(params, runner):
    result = _actions.guest_nic_filter(dict(params, state="gathered"), False, runner=runner)
    return {item["guest"]: item["tap"] for item in result["gathered"]}


def test_rules_follow_the_guest_and_a_second_guest_on_the_same_tap_gets_its_own(host):
    lab, params, conf, runner = host
    assert gathered(params, runner) == {"guest-a": "not running", "guest-b": "not running"}

    plug(lab, MAC_A, IP_A)
    assert delivered(lab, MAC_A, "192.168.100.99"), "an unbound tap is open: the spoof check below needs rules"
    started = hook(lab, conf, "guest-a", "start")
    assert started.returncode == 0, started.stderr
    assert started.elapsed < 5
    assert "libvirt-I-vnet0" in eb_chains(lab)
    assert gathered(params, runner) == {"guest-a": "vnet0", "guest-b": "not running"}
    assert delivered(lab, MAC_A, IP_A)
    assert not delivered(lab, MAC_A, "192.168.100.99"), "guest A's filter must drop a spoofed source"
    assert hook(lab, conf, "guest-a", "started").returncode == 0

    # libvirt runs 'stopped' while the tap still exists: the rules go with the guest, not the tap
    assert hook(lab, conf, "guest-a", "stopped", "end").returncode == 0
    assert eb_chains(lab) == []
    unplug(lab)
    assert hook(lab, conf, "guest-a", "release", "end").returncode == 0
    assert gathered(params, runner)["guest-a"] == "not running"

    plug(lab, MAC_B, IP_B)
    assert hook(lab, conf, "guest-b", "start", mac=MAC_B).returncode == 0
    assert gathered(params, runner) == {"guest-a": "not running", "guest-b": "vnet0"}
    assert delivered(lab, MAC_B, IP_B), "guest B's own address must pass"
    assert not delivered(lab, MAC_B, IP_A), "guest A's address must not pass on B's tap"
    assert not delivered(lab, MAC_A, IP_A), "guest A's MAC must not pass on B's tap"

    assert hook(lab, conf, "guest-b", "stopped", "end", mac=MAC_B).returncode == 0
    assert eb_chains(lab) == []
    assert delivered(lab, MAC_B, "192.168.100.99"), "the tap is unbound again and libvirt leaves it open"


def reconcile_unchanged(params, runner):
    """A writer's run that changes no definition: it places the host's bindings on today's taps."""
    _service.reconcile(params["config_dir"], lambda state: (state, []), runner, False,
                       lock_file=params["lock_file"], lock_timeout=params["lock_timeout"])


def test_a_stale_map_entry_never_puts_a_guest_on_another_guests_tap(host):
    lab, params, conf, runner = host
    plug(lab, MAC_A, IP_A)
    assert hook(lab, conf, "guest-a", "start").returncode == 0
    unplug(lab)  # guest A vanished without its 'stopped' hook (libvirtd crashed)
    plug(lab, "52:54:00:00:00:0c", IP_B)  # a guest this host store knows nothing about takes vnet0
    reconcile_unchanged(params, runner)
    assert eb_chains(lab) == []
    assert gathered(params, runner) == {"guest-a": "unplaced", "guest-b": "not running"}
    unplug(lab)
    # guest B started by a libvirtd without the hook: found by its tap's MAC (fe + the guest's MAC)
    plug(lab, MAC_B, IP_B)
    reconcile_unchanged(params, runner)
    assert gathered(params, runner) == {"guest-a": "unplaced", "guest-b": "vnet0"}
    assert delivered(lab, MAC_B, IP_B)
    assert not delivered(lab, MAC_B, IP_A)


def test_start_fails_closed_when_the_rules_cannot_be_applied_and_open_when_asked(host, tmp_path):
    lab, params, conf, runner = host
    plug(lab, MAC_A, IP_A)
    with host_lock(params["lock_file"], 5):
        refused = hook(lab, conf, "guest-a", "start")
        assert refused.returncode == 1
        assert "could not take the lock" in refused.stderr
        assert refused.elapsed < 8, "the lock timeout of the hook config (2 s) bounds the wait"
        # libvirt kills a guest whose reconnect hook fails: never fail there
        assert hook(lab, conf, "guest-a", "reconnect").returncode == 0
        open_conf = tmp_path / "open.conf"
        open_conf.write_text(open(conf).read() + "fail_open = yes\n")
        let_through = hook(lab, str(open_conf), "guest-a", "start")
        assert let_through.returncode == 0
        assert "warning:" in let_through.stderr and "fail_open" in let_through.stderr
    assert hook(lab, conf, "guest-a", "start").returncode == 0
    assert "libvirt-I-vnet0" in eb_chains(lab)


def unbound_drop_rules(lab):
    """Our fail-closed rule as each backend writes it."""
    eb = [line for line in lab.exec("hv", ["ebtables-save"]).stdout.splitlines() if "vnet+" in line]
    nft = lab.exec("hv", ["nft", "list", "table", "bridge", "hfw_nwfilter"], check=False).stdout
    return eb + [line.strip() for line in nft.splitlines() if '"vnet*"' in line]


@pytest.mark.parametrize("backend, rule", [
    ("xtables", "-A PREROUTING -i vnet+ -j DROP"),
    ("nftables", 'iifname "vnet*" iifname != @bound_taps drop'),
])
def test_drop_unbound_taps_drops_unbound_guests_only(host, backend, rule):
    lab, params, conf, runner = host
    params = dict(params, backend=backend)
    plug(lab, MAC_A, IP_A)
    assert hook(lab, conf, "guest-a", "start").returncode == 0
    g1 = lab.guests[1]
    out = _actions.guest_nic_filter(dict(params, state="present", bindings=[], drop_unbound_taps=True), False,
                                    runner=runner)
    assert out["changed"] and out["drop_unbound_taps"]
    assert unbound_drop_rules(lab) == [rule], "written by the chosen backend only"
    assert delivered(lab, MAC_A, IP_A), "a bound guest jumps to its own chain before the DROP"
    assert not g1_reaches_g0(lab, g1), "vnet1 has no binding: dropped"
    again = _actions.guest_nic_filter(dict(params, state="present", bindings=[], drop_unbound_taps=True), False,
                                      runner=runner)
    assert not again["changed"], "the fixed DROP rule must read back as ours"
    off = _actions.guest_nic_filter(dict(params, state="present", bindings=[], drop_unbound_taps=False), False,
                                    runner=runner)
    assert off["changed"]
    assert unbound_drop_rules(lab) == []
    assert g1_reaches_g0(lab, g1)


ROLE_PLAY = """
- hosts: all
  gather_facts: false
  roles:
    - role: hypervisor.firewall.guest_hooks
      vars:
        guest_hooks_state: "{{ state }}"
        guest_hooks_hook_path: "{{ root }}/hooks/qemu.d/hypervisor-firewall"
        guest_hooks_engine_dir: "{{ root }}/lib/module_utils"
        guest_hooks_conf_path: "{{ root }}/etc/hook.conf"
        guest_hooks_python: "{{ python }}"
        guest_hooks_config_dir: "{{ hfw_config_dir }}"
        guest_hooks_lock_file: "{{ hfw_lock_file }}"
        guest_hooks_lock_timeout: 3
        guest_hooks_install_packages: false
"""


def test_role_installs_a_working_hook_idempotently_and_removes_it(host, tmp_path):
    from ansible_run import changed_by_play
    lab, params, _conf, runner = host
    root = tmp_path / "root"

    def play(state):
        return changed_by_play(str(tmp_path), lab.hv, params, ROLE_PLAY,
                               state=state, root=str(root), python=sys.executable)

    installed = root / "hooks" / "qemu.d" / "hypervisor-firewall"
    assert play("present") > 0
    assert play("present") == 0
    assert installed.read_text().startswith("#!%s\n" % sys.executable) and os.access(installed, os.X_OK)
    assert "lock_timeout = 3" in (root / "etc" / "hook.conf").read_text()
    assert not (root / "lib" / "module_utils" / "_module.py").exists()

    # libvirt's clean environment: no HYPERVISOR_FIREWALL_HOOK_CONF, the installed paths must do
    plug(lab, MAC_A, IP_A)
    xml = DOMAIN_XML.format(name="guest-a", suffix="0" * 12, mac=MAC_A, tap="vnet0")
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C"}
    done = lab.exec("hv", ["env", "-i"] + ["%s=%s" % kv for kv in env.items()]
                    + [str(installed), "guest-a", "start", "begin", "-"], check=False, input=xml)
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    assert "libvirt-I-vnet0" in eb_chains(lab)

    assert play("absent") > 0
    assert not installed.exists() and not (root / "lib" / "module_utils").exists()
