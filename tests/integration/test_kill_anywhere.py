# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SIGKILL at every tool call and every store rename of a change, both backends, real netfilter and frames.

The writer runs in a process of its own (kill_writer.py).  A first run of the change logs its
fault points (every command the runner starts, every store rename; host/runner.fault_point); then,
for each point k, the host is put back to the starting state, the writer is killed just before
point k, and spoofed frames (wrong MAC and wrong IPv4, UDP) are sent from guest 0 to guest 1:
none may arrive.  One re-run of the same change must then converge: a check-mode run reports no
change, and the owned rules equal those of an uninterrupted run.

Scenarios: guest 0's NIC moves from an ebtables-only filter (no-mac-spoofing) to an iptables-only
one (UDP from the guest dropped), the window of issue 13; and a virtual network on the bridge
changes from nat to isolated while the NIC holds the iptables-only filter (its FORWARD jumps must
stay ahead of the network's accepts).  Cost: about 1.5 s per fault point; 15 to 25 points per
scenario and backend, about 2 minutes for the four.
"""

import json
import os
import select
import shutil
import subprocess
import sys

import pytest

from lab import Lab, packet_socket
from lab import frames as F
from lab.battery import PACKET_OUTGOING, SPOOF_IPV4, SPOOF_MAC

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import runner as _runner
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import converge as _nft
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import tables as _tables
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import apply as _apply
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import Scope

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(b) for b in ("ip", "nft", "iptables", "ebtables")),
    reason="needs root, iproute2, nft, iptables and ebtables (network namespaces)")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WRITER = os.path.join(HERE, "kill_writer.py")
FILTER_DIR = os.path.join(ROOT, "roles", "default_filters", "files")
EB_ONLY = "no-mac-spoofing"
IP_ONLY = "hfw-ip-only"
IP_ONLY_XML = """<filter name='hfw-ip-only' chain='root'>
  <rule action='drop' direction='out' priority='500'><udp/></rule>
  <rule action='drop' direction='out' priority='500'><udp-ipv6/></rule>
</filter>
"""
SPOOF_PORT = 41004


class World:
    """A lab, its store, and the change under test as (action, params before, params after)."""

    def __init__(self, lab, work, backend):
        self.lab, self.work, self.backend = lab, work, backend
        self.runner = HostRunner(prefix=lab.hv_prefix)
        self.base = dict(config_dir=os.path.join(work, "store"), lock_file=os.path.join(work, "lock"),
                         lock_timeout=30, backend=backend, backend_fallback=None)
        g0 = lab.guests[0]
        self.nic = dict(self.base, state="present", bindings=None, portdev=g0.tap, mac=g0.mac, filter=None,
                        parameters={"IP": g0.ipv4}, binding_xml=None, exclusive=False, takeover=False, domain=None)
        self.net = dict(self.base, name="labnet", bridge=lab.bridge, mode="nat", ipv4=lab.host_ipv4 + "/24",
                        ipv6=None, forward_dev=None, dhcp=True, dns=True, tftp=False, nat_ports=[1024, 65535],
                        nat_address=None, nat_ipv6=False, network_xml=None, state="present")

    def call(self, action, params, check_mode=False):
        return getattr(_actions, action)(params, check_mode, self.runner)

    def writer(self, action, params, kill_at=None, log=None):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        env.pop(_runner.KILL_AT_ENV, None)
        env.pop(_runner.FAULT_LOG_ENV, None)
        if kill_at is not None:
            env[_runner.KILL_AT_ENV] = str(kill_at)
        if log is not None:
            env[_runner.FAULT_LOG_ENV] = log
        job = json.dumps(dict(action=action, params=params, prefix=self.lab.hv_prefix))
        return subprocess.run([sys.executable, WRITER, job], capture_output=True, text=True, env=env, check=False)

    def owned(self):
        """What the planner compares: owned xtables rules and owned nft tables, read from the kernel."""
        live, _positions = _apply.read_live(self.runner, Scope())
        tables = _tables.owned(Scope().manage_networks)
        return live, _nft.read_live(self.runner, tables)


def spoofed_frames_pass(lab):
    """Send spoofed UDP frames from guest 0 to guest 1; True when any of them arrives."""
    g0, g1 = lab.guests[0], lab.guests[1]
    marker = F.new_marker()
    frame = F.ipv4_udp(SPOOF_MAC, g1.mac, SPOOF_IPV4, g1.ipv4, 40000, SPOOF_PORT, marker)
    out, into = packet_socket(g0.ns, g0.ifname), packet_socket(g1.ns, g1.ifname)
    try:
        for _copy in range(3):
            out.send(frame)
        # a bridged frame arrives within microseconds; the wait only bounds a frame that never comes
        while select.select([into], [], [], 0.2)[0]:
            data, addr = into.recvfrom(65535)
            if addr[2] != PACKET_OUTGOING and marker in data:
                return True
        return False
    finally:
        out.close()
        into.close()


def define_filters(world):
    for name in sorted(os.listdir(FILTER_DIR)):
        with open(os.path.join(FILTER_DIR, name), encoding="utf-8") as handle:
            xml = handle.read()
        world.call("nwfilter", dict(world.base, name=None, xml=xml, definition=None, strict=False, state="present"))
    world.call("nwfilter", dict(world.base, name=None, xml=IP_ONLY_XML, definition=None, strict=False,
                                state="present"))


def fault_points(world, action, after, log):
    proc = world.writer(action, after, log=log)
    assert proc.returncode == 0, proc.stderr
    with open(log, encoding="utf-8") as handle:
        points = [line.split(None, 2) for line in handle.read().splitlines()]
    os.unlink(log)
    return points


def kill_everywhere(world, action, before, after):
    """The harness: for every fault point of ``after``, start from ``before``, kill, check, re-run."""
    assert world.call(action, after)["changed"]
    reference = world.owned()
    world.call(action, before)
    log = os.path.join(world.work, "faults")
    points = fault_points(world, action, after, log)
    kinds = {kind for _n, kind, _detail in points}
    assert "rename" in kinds and "tool" in kinds, points
    world.call(action, before)
    assert not spoofed_frames_pass(world.lab), "the starting state lets spoofed frames through"
    for number, kind, detail in points:
        world.call(action, before)
        proc = world.writer(action, after, kill_at=number)
        assert proc.returncode == -9, "point %s (%s %s) was not reached: %s" % (number, kind, detail, proc.stderr)
        assert not spoofed_frames_pass(world.lab), (
            "killed before fault point %s (%s %s): spoofed frames reach guest 1" % (number, kind, detail))
        world.call(action, after)
        assert not world.call(action, after, check_mode=True)["changed"], (
            "one re-run after a kill before point %s (%s %s) did not converge" % (number, kind, detail))
        assert world.owned() == reference, "after point %s (%s %s) and one re-run" % (number, kind, detail)
    return points


@pytest.fixture(params=["xtables", "nftables"])
def world(request, tmp_path):
    with Lab("hfwta_k%d%s" % (os.getpid(), request.param[0]), guests=2) as lab:
        world = World(lab, str(tmp_path), request.param)
        define_filters(world)
        # the counterfactual: unfiltered, the spoofed frames do arrive, so the checks below can fail
        assert spoofed_frames_pass(lab)
        yield world


def test_kill_anywhere_while_a_nic_moves_from_an_ebtables_to_an_iptables_filter(world):
    before, after = dict(world.nic, filter=EB_ONLY), dict(world.nic, filter=IP_ONLY)
    world.call("guest_nic_filter", before)
    points = kill_everywhere(world, "guest_nic_filter", before, after)
    assert len(points) >= 5


def test_kill_anywhere_while_the_network_changes_under_a_filtered_nic(world):
    world.call("guest_nic_filter", dict(world.nic, filter=IP_ONLY))
    before, after = world.net, dict(world.net, mode="isolated")
    world.call("virt_network_fw", before)
    points = kill_everywhere(world, "virt_network_fw", before, after)
    assert len(points) >= 5
