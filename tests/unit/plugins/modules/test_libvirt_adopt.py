# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt_adopt over simulated xtables tools: libvirtd's rules are replaced in place by ours."""

import json
import os

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import adopt as _adopt  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import apply as _apply  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import backend as _backend  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.plan import plan
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import Scope
from ansible_collections.hypervisor.firewall.plugins.modules import libvirt_adopt as module
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import libvirt_root as lr
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.xtables_sim import HostFake, new_sims
from ansible_collections.hypervisor.firewall.tests.unit.plugins.modules.module_params import module_params

MAC0, MAC1 = "52:54:00:6a:00:10", "52:54:00:6a:00:11"
BINDINGS = [("vnet0", MAC0, "clean-traffic", (("IP", "192.168.122.10"),)),
            ("vnet1", MAC1, "no-mac-spoofing", ())]
STALE_IP = "192.168.122.99"


class LibvirtHostFake(HostFake):
    """The shared fake host whose libvirt bindings are the files in the directory it is asked about."""

    def __init__(self):
        super().__init__(new_sims(("filter", "nat", "mangle")), ("lo", "virbr0", "vnet0", "vnet1"))
        self.binding_dirs = []

    def libvirt_bound_devices(self, binding_dir):
        self.binding_dirs.append(binding_dir)
        return {name[:-4] for name in os.listdir(binding_dir)}


def params(tmp_path, **given):
    return module_params(module, tmp_path, **{"libvirt_root": str(tmp_path / "host"), **given})


def imported_state(root):
    host = _adopt.import_documents(_adopt.read_documents(root))
    return _adopt.adopt(_store.StoreState(), host)


@pytest.fixture
def host(tmp_path):
    """libvirtd's rules as it would have loaded them, except one address that changed since."""
    lr.make_root(str(tmp_path / "host"), BINDINGS)
    runner = LibvirtHostFake()
    xtables = _backend.select("xtables")
    desired, _warnings = _service.build_desired(imported_state(str(tmp_path / "host")), xtables)
    for label, payload in xtables.render(desired).items():
        tool = {"ebtables": "eb", "iptables": "ip4", "ip6tables": "ip6"}[label]
        if tool == "eb":  # clean-traffic checks the address in ebtables (no-ip-spoofing)
            assert "192.168.122.10" in payload
            payload = payload.replace("192.168.122.10", STALE_IP)
        assert runner.sims[tool].restore(payload)[0] == 0
    runner.restores.clear()
    return runner


def live_plan(runner, desired):
    live, positions = _apply.read_live(runner, Scope(manage_networks=True))
    return plan(desired, live, positions)


def test_check_mode_shows_store_and_rule_diff_and_changes_nothing(tmp_path, host):
    before = host.dumps()
    result = _actions.libvirt_adopt(params(tmp_path), check_mode=True, runner=host)
    assert result["changed"] and host.restores == [] and host.dumps() == before
    assert not os.path.exists(tmp_path / "store")
    headers = [d["after_header"] for d in result["diff"]]
    assert "filters/clean-traffic.xml" in headers and "bindings/vnet0.xml" in headers
    assert "networks/default.xml" in headers
    rule_diffs = [d for d in result["diff"] if d["after_header"].startswith("ebtables nat")]
    assert len(rule_diffs) == 1 and STALE_IP in rule_diffs[0]["before"] and STALE_IP not in rule_diffs[0]["after"]
    assert result["rebuilt_devices"] == ["vnet0"]
    assert result["adopted"]["bindings"] == ["vnet0", "vnet1"] and result["adopted"]["networks"] == ["default", "routed"]


def test_takeover_rewrites_only_the_stale_chain_in_one_restore_then_is_idempotent(tmp_path, host):
    result = _actions.libvirt_adopt(params(tmp_path), check_mode=False, runner=host)
    assert result["changed"] and result["rebuilt_devices"] == ["vnet0"]
    # one ebtables transaction that refills vnet0's stale chain in place; the rest already matched
    assert [tool for tool, _payload in host.restores] == ["eb"]
    lines = host.restores[0][1].splitlines()
    assert lines[0] == "*nat" and "-X" not in " ".join(lines)
    assert lines[-1] == "COMMIT" and all(line.startswith((":I-vnet0-", "-A I-vnet0-")) for line in lines[1:-1]), lines
    state = _store.load_store(str(tmp_path / "store"))
    desired = _service.build_desired(state, _backend.select("xtables"))[0]
    # the ledger now records what the takeover wrote: every chain of the desired state
    assert state.ledger.chains == {(key[0], key[1], chain) for key, table in desired.items() for chain in table.chains}
    assert state.with_changes(ledger=None) == imported_state(str(tmp_path / "host"))
    assert live_plan(host, desired).tables == ()
    again = _actions.libvirt_adopt(params(tmp_path), check_mode=False, runner=host)
    assert not again["changed"] and again["diff"] == [] and len(host.restores) == 1


def test_adopted_nics_are_not_libvirtds_the_binding_dir_comes_from_the_root(tmp_path, host):
    _actions.libvirt_adopt(params(tmp_path), check_mode=False, runner=host)
    assert host.binding_dirs == [str(tmp_path / "host" / "run/libvirt/nwfilter-binding")]


def test_main_reports_an_unsupported_network_without_traceback(tmp_path, host, monkeypatch, capsys):
    path = tmp_path / "host" / "etc/libvirt/qemu/networks/routed.xml"
    one_ip = "<ip address='10.20.0.1' prefix='24'/>"
    two_dhcp = ("<ip address='10.20.0.1' prefix='24'><dhcp><range start='10.20.0.2' end='10.20.0.9'/></dhcp></ip>"
                "<ip address='10.21.0.1' prefix='24'><dhcp><range start='10.21.0.2' end='10.21.0.9'/></dhcp></ip>")
    path.write_text(path.read_text().replace(one_ip, two_dhcp))
    monkeypatch.setattr(_actions, "Runner", lambda: host)
    monkeypatch.setattr(AnsibleModule, "warn", lambda self, msg: None)
    args = dict(config_dir=str(tmp_path / "store"), lock_file=str(tmp_path / "lock"),
                libvirt_root=str(tmp_path / "host"))
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] and out["path"] == str(path) and out["msg"].startswith(str(path) + ": ")
    assert "exception" not in out and host.restores == []


def test_the_backend_option_is_honoured_and_kept_as_the_hosts_default(tmp_path, host):
    _actions.libvirt_adopt(params(tmp_path, backend="xtables"), check_mode=False, runner=host)
    assert (tmp_path / "store" / "backend").read_text() == "xtables\n"
