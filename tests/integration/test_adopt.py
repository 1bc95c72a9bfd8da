# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt_adopt against real netfilter: a host whose taps libvirtd filters is taken over in place.

libvirtd's rules are simulated with our own compiler for the imported state (libvirt's chain
names are ours), with guest 0's address stale, so the takeover has a chain to rewrite and the
packets show it: before, guest 0's own IPv4 is dropped; after, it passes. A spoofed source MAC is
dropped before, during and after the takeover.
"""

import os
import re
import shutil
import threading

import pytest

from lab import Lab, run_battery
from lab.battery import cases_by_name

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import adopt as _adopt  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import apply as _apply  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import backend as _backend  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.plan import plan
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import TOOL_ORDER
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import Scope
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import libvirt_root

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 (network namespaces)")

STALE_IPV4 = "192.168.100.222"
TOOL_KEY = {"ebtables": "eb", "iptables": "ip4", "ip6tables": "ip6"}


def dumps(runner):
    """Every tool's save output without its timestamp comments and packet counters."""
    out = {}
    for tool in TOOL_ORDER:
        lines = [re.sub(r"\[\d+:\d+\]", "[0:0]", line) for line in runner.save(tool).splitlines()]
        out[tool] = [line for line in lines if not line.startswith("#")]
    return out


def load_as_libvirtd(runner, root, stale_ip, real_ip):
    """What libvirtd had loaded for the files under ``root``, but with an address since changed."""
    state = _adopt.adopt(_store.StoreState(), _adopt.import_documents(_adopt.read_documents(root)))
    xtables = _backend.select("xtables")
    desired, _warnings = _service.build_desired(state, xtables, runner.list_devices())
    for label, payload in xtables.render(desired).items():
        if label == "ebtables":
            assert real_ip in payload
            payload = payload.replace(real_ip, stale_ip)
        rc, _out, err = runner.restore(TOOL_KEY[label], payload)
        assert rc == 0, err
    return state


def verdicts(lab, *names):
    return {name: row["guest"] for name, row in run_battery(lab, cases_by_name(*names)).items()}


class SpoofWatch(threading.Thread):
    """Sends guest 0's spoofed-source-MAC frame over and over; records whether one ever arrived."""

    def __init__(self, lab):
        super().__init__(daemon=True)
        self.lab, self.stop, self.rounds, self.leaked = lab, threading.Event(), 0, False

    def run(self):
        while not self.stop.is_set() or self.rounds < 3:
            self.leaked |= verdicts(self.lab, "spoofed-src-mac")["spoofed-src-mac"]
            self.rounds += 1


def test_adopt_replaces_libvirtds_rules_in_place_without_a_window(tmp_path):
    with Lab("hfwhfwu_ad%d" % (os.getpid() % 10000), guests=2) as lab:
        runner = HostRunner(prefix=lab.hv_prefix)
        root = str(tmp_path / "host")
        g0 = lab.guests[0]
        libvirt_root.make_root(root, [(g.tap, g.mac, "clean-traffic", (("IP", g.ipv4),)) for g in lab.guests])
        imported = load_as_libvirtd(runner, root, STALE_IPV4, g0.ipv4)
        assert verdicts(lab, "ipv4-udp", "spoofed-src-mac") == {"ipv4-udp": False, "spoofed-src-mac": False}

        params = dict(config_dir=str(tmp_path / "store"), lock_file=str(tmp_path / "lock"), lock_timeout=10,
                      libvirt_root=root, networks=True, overwrite=False, binding_parameters={})
        before = dumps(runner)
        check = _actions.libvirt_adopt(params, check_mode=True, runner=runner)
        assert check["changed"] and check["rebuilt_devices"] == [g0.tap]
        assert dumps(runner) == before and not os.path.exists(params["config_dir"])

        watch = SpoofWatch(lab)
        watch.start()
        try:
            result = _actions.libvirt_adopt(params, check_mode=False, runner=runner)
        finally:
            watch.stop.set()
            watch.join(timeout=30)
        assert not watch.leaked and watch.rounds >= 3
        assert result["changed"] and result["rebuilt_devices"] == [g0.tap]
        assert result["adopted"]["networks"] == ["default", "routed"]

        stored = _store.load_store(params["config_dir"])
        desired, _warnings = _service.build_desired(imported, _backend.select("xtables"), runner.list_devices())
        # the ledger records everything the takeover wrote, libvirtd's former chains included
        assert stored.ledger.chains == {(k[0], k[1], c) for k, table in desired.items() for c in table.chains}
        assert stored.with_changes(ledger=None) == imported
        live, positions = _apply.read_live(runner, Scope(manage_networks=True))
        assert plan(desired, live, positions).tables == ()
        assert verdicts(lab, "ipv4-udp", "spoofed-src-mac") == {"ipv4-udp": True, "spoofed-src-mac": False}

        again = _actions.libvirt_adopt(params, check_mode=False, runner=runner)
        assert not again["changed"] and again["diff"] == []
