# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""guest_nic_filter with the runner faked at its one seam (simulated xtables tools, no root)."""

import json
import os

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import (
    ApplyError, DeviceNameError, FilterXMLError, ResolveError, StoreError)
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import parse_save
from ansible_collections.hypervisor.firewall.plugins.modules import guest_nic_filter as module
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.xtables_sim import HostFake, new_sims
from ansible_collections.hypervisor.firewall.tests.unit.plugins.modules.module_params import module_params

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
FILTER_FILES = os.path.join(ROOT, "roles", "default_filters", "files")
MAC0, MAC1 = "52:54:00:00:00:00", "52:54:00:00:00:01"
FOREIGN_IP4 = "*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\nCOMMIT\n"
NO_SPAMMING = ('<filter name="no-spamming" chain="root"><rule action="drop" direction="out" priority="500">'
               '<tcp dstportstart="25" dstportend="25"/></rule></filter>')
SPAM_GUARD = '<filter name="spam-guard"><filterref filter="no-mac-spoofing"/><filterref filter="no-spamming"/></filter>'


def new_host():
    """The shared fake host with this module's NICs and a foreign FORWARD policy."""
    return HostFake(new_sims(foreign={"ip4": FOREIGN_IP4}), ("lo", "br0", "vnet0", "vnet1"))


class NoHost:
    """A runner that must never be asked anything."""

    def __getattr__(self, name):
        raise AssertionError("rendered must not use the runner (asked for %s)" % name)


def params(tmp_path, **given):
    return module_params(module, tmp_path, **{"state": "present", **given})


def define(tmp_path, runner, *xmls):
    for xml in xmls:
        _actions.nwfilter(dict(params(tmp_path), xml=xml, strict=True, name=None), check_mode=False, runner=runner)


def default_filter(name):
    with open(os.path.join(FILTER_FILES, name + ".xml"), encoding="utf-8") as handle:
        return handle.read()


def binding(dev="vnet0", mac=MAC0, filter_name="no-mac-spoofing", **parameters):
    return dict(portdev=dev, mac=mac, filter=filter_name, parameters=parameters or None, binding_xml=None)


def owned(runner):
    found = {}
    for tool, text in runner.dumps().items():
        for (parsed_tool, table), state in parse_save(tool, text).items():
            for name, chain in state.chains.items():
                found[(tool, table, name)] = chain.rules
    return found


@pytest.fixture
def host(tmp_path):
    runner = new_host()
    define(tmp_path, runner, default_filter("no-mac-spoofing"), NO_SPAMMING, SPAM_GUARD)
    runner.restores.clear()
    return runner


def test_present_applies_in_one_restore_per_tool_then_is_idempotent(tmp_path, host):
    first = _actions.guest_nic_filter(params(tmp_path, bindings=[binding(), binding("vnet1", MAC1)]),
                                      check_mode=False, runner=host)
    assert first["changed"] and first["rebuilt_devices"] == ["vnet0", "vnet1"]
    assert [tool for tool, _payload in host.restores] == ["eb"]
    assert owned(host)[("eb", "nat", "I-vnet0-mac")] == ("-s %s -j RETURN" % MAC0, "-j DROP")
    assert [b["portdev"] for b in first["bindings"]] == ["vnet0", "vnet1"]
    assert sorted(_store.load_store(str(tmp_path / "store")).bindings) == ["vnet0", "vnet1"]
    again = _actions.guest_nic_filter(params(tmp_path, bindings=[binding(), binding("vnet1", MAC1)]),
                                      check_mode=False, runner=host)
    assert not again["changed"] and again["diff"] == [] and again["rebuilt_devices"] == []
    assert len(host.restores) == 1


def test_check_mode_never_restores_and_stores_nothing(tmp_path, host):
    before = host.dumps()
    result = _actions.guest_nic_filter(params(tmp_path, bindings=[binding(filter_name="spam-guard")]),
                                       check_mode=True, runner=host)
    assert result["changed"] and result["rebuilt_devices"] == ["vnet0"]
    assert host.restores == [] and host.dumps() == before
    assert _store.load_store(str(tmp_path / "store")).bindings == {}
    headers = [d.get("after_header", "") for d in result["diff"]]
    assert any("vnet0" in h for h in headers) and any(h.startswith("iptables filter") for h in headers)


def test_check_mode_with_a_filter_defined_later_in_the_run_warns_and_plans_the_binding(tmp_path):
    runner = new_host()
    result = _actions.guest_nic_filter(params(tmp_path, bindings=[binding(filter_name="clean-traffic")]),
                                       check_mode=True, runner=runner)
    assert result["changed"] and runner.restores == [] and result["rebuilt_devices"] == []
    assert [w for w in result["warnings"] if w.startswith("check mode: the rules of vnet0 cannot be computed yet")]
    assert [b["filter"] for b in result["bindings"]] == ["clean-traffic"]


def test_iptables_rules_keep_the_foreign_policy_and_warn_about_bridge_netfilter(tmp_path, host):
    host.bridge_nf_off = ["net.bridge.bridge-nf-call-iptables"]
    result = _actions.guest_nic_filter(params(tmp_path, bindings=[binding(filter_name="spam-guard")]),
                                       check_mode=False, runner=host)
    # <tcp> is IPv4 only (IPv6 would be <tcp-ipv6>): nothing for ip6tables
    assert [tool for tool, _payload in host.restores] == ["eb", "ip4"]
    assert result["warnings"] == [
        "net.bridge.bridge-nf-call-iptables is 0: layer 3/4 rules never see bridged guest traffic; "
        "set it to 1 (the hypervisor role does, when asked)"]
    ip4 = host.dumps()["ip4"].splitlines()
    assert ":FORWARD DROP [0:0]" in ip4 and "-A FORWARD -j DOCKER-USER" in ip4
    assert ":FORWARD" not in "".join(payload for _tool, payload in host.restores)


def test_a_missing_device_is_stored_with_a_warning_and_gets_rules_once_it_exists(tmp_path, host):
    args = params(tmp_path, bindings=[binding("vnet5", "52:54:00:00:00:05")])
    first = _actions.guest_nic_filter(args, check_mode=False, runner=host)
    assert first["changed"] and host.restores == [] and owned(host) == {}
    assert first["warnings"] == ["binding for vnet5: no device vnet5 exists, so it gets no rules until one does"]
    assert "vnet5" in _store.load_store(str(tmp_path / "store")).bindings
    host.devices.add("vnet5")
    second = _actions.guest_nic_filter(args, check_mode=False, runner=host)
    assert second["changed"] and second["rebuilt_devices"] == ["vnet5"] and second["warnings"] == []
    assert ("eb", "nat", "libvirt-I-vnet5") in owned(host)


def test_absent_needs_only_the_device_and_removes_every_chain(tmp_path, host):
    _actions.guest_nic_filter(params(tmp_path, bindings=[binding(filter_name="spam-guard")]), check_mode=False,
                              runner=host)
    pristine = new_host().dumps()
    result = _actions.guest_nic_filter(params(tmp_path, portdev="vnet0", state="absent"), check_mode=False,
                                       runner=host)
    assert result["changed"] and result["bindings"] == [] and result["rebuilt_devices"] == ["vnet0"]
    assert owned(host) == {} and host.dumps() == pristine


def test_rendered_reads_only_the_store(tmp_path, host):
    result = _actions.guest_nic_filter(params(tmp_path, bindings=[binding(filter_name="spam-guard")], state="rendered"),
                                       check_mode=False, runner=NoHost())
    assert result["changed"] is False and set(result["rendered"]) == {"ebtables", "iptables"}
    assert "-A I-vnet0-mac -s %s -j RETURN" % MAC0 in result["rendered"]["ebtables"]
    assert "--dport 25" in result["rendered"]["iptables"]
    assert _store.load_store(str(tmp_path / "store")).bindings == {}


def test_gathered_lists_bindings_with_presence_and_live_chains(tmp_path, host):
    _actions.guest_nic_filter(params(tmp_path, bindings=[binding(), binding("vnet6", MAC1)]), check_mode=False,
                              runner=host)
    restores = len(host.restores)
    result = _actions.guest_nic_filter(params(tmp_path, state="gathered"), check_mode=False, runner=host)
    assert len(host.restores) == restores
    by_dev = {item["portdev"]: item for item in result["gathered"]}
    assert by_dev["vnet0"]["present"] is True and by_dev["vnet6"]["present"] is False
    assert by_dev["vnet0"]["chains"]["ebtables nat I-vnet0-mac"] == [
        dict(rule="-s %s -j RETURN" % MAC0, packets=0, bytes=0), dict(rule="-j DROP", packets=0, bytes=0)]
    assert by_dev["vnet6"]["chains"] == {}


def test_a_failing_tool_rolls_back_kernel_and_store(tmp_path, host):
    host.fail_on = {"ip4"}
    before = host.dumps(), _store.load_store(str(tmp_path / "store"))
    with pytest.raises(ApplyError) as err:
        _actions.guest_nic_filter(params(tmp_path, bindings=[binding(filter_name="spam-guard")]), check_mode=False,
                                  runner=host)
    assert err.value.context["tool"] == "ip4" and err.value.context["rolled_back"] == ["eb"]
    assert (host.dumps(), _store.load_store(str(tmp_path / "store"))) == before


BAD = [
    (binding(filter_name="no-such-filter"), ResolveError,
     "binding of vnet0 uses filter 'no-such-filter', which is not defined on this host: define it first "
     "(e.g. with the default_filters role)", {"portdev": "vnet0"}),
    (binding(mac="52:54:00:00:00:zz"), FilterXMLError,
     "binding of vnet0: mac '52:54:00:00:00:zz' is not a MAC address (write it as 52:54:00:12:34:56)",
     {"portdev": "vnet0"}),
    (binding(dev="vnet+"), DeviceNameError,
     "portdev name 'vnet+' is not valid: use 1 to 15 characters from A-Z, a-z, 0-9, '_', '.', '-' "
     "(no '+', '/', spaces or quotes)", {"device": "vnet+"}),
    (dict(portdev="vnet0", mac=MAC0), FilterXMLError, None, {"portdev": "vnet0"}),
]


# check mode plans a binding whose filter is unknown (an earlier task may define it): not an error there
CASES = [(check,) + case for case in BAD for check in (False, True) if not (check and case[1] is ResolveError)]


@pytest.mark.parametrize("check_mode, item, error, msg, context", CASES)
def test_bad_bindings_raise_exact_errors_and_change_nothing(tmp_path, host, item, error, msg, context, check_mode):
    before = host.dumps()
    with pytest.raises(error) as err:
        _actions.guest_nic_filter(params(tmp_path, bindings=[item]), check_mode=check_mode, runner=host)
    if msg:
        assert err.value.msg == msg
    assert {k: v for k, v in err.value.context.items() if k in context} == context
    assert host.restores == [] and host.dumps() == before
    assert _store.load_store(str(tmp_path / "store")).bindings == {}


def test_a_device_bound_twice_in_one_call_is_refused(tmp_path, host):
    with pytest.raises(FilterXMLError) as err:
        _actions.guest_nic_filter(params(tmp_path, bindings=[binding(), binding(mac=MAC1)]), check_mode=False,
                                  runner=host)
    assert err.value.msg == "portdev vnet0 is bound twice in one call: give each NIC once"


def test_a_nic_libvirtd_filters_is_refused_without_takeover(tmp_path, host):
    host.libvirt_bound = {"vnet0"}
    with pytest.raises(StoreError) as err:
        _actions.guest_nic_filter(params(tmp_path, bindings=[binding()]), check_mode=False, runner=host)
    assert err.value.context["devices"] == ["vnet0"] and "set takeover=true" in err.value.msg
    assert host.restores == []


def run_main(monkeypatch, capsys, args, runner, warned):
    monkeypatch.setattr(_actions, "Runner", lambda: runner)
    monkeypatch.setattr(AnsibleModule, "warn", lambda self, msg: warned.append(msg))
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


def test_main_reports_engine_errors_as_fields_without_traceback(tmp_path, host, monkeypatch, capsys):
    args = dict(config_dir=str(tmp_path / "store"), lock_file=str(tmp_path / "lock"), portdev="vnet+", mac=MAC0,
                filter="no-mac-spoofing")
    out = run_main(monkeypatch, capsys, args, host, [])
    assert out["failed"] is True and out["error"] == "DeviceNameError" and out["device"] == "vnet+"
    assert out["msg"].startswith("portdev name 'vnet+' is not valid") and "exception" not in out


def test_main_turns_engine_warnings_into_module_warnings(tmp_path, host, monkeypatch, capsys):
    warned = []
    args = dict(config_dir=str(tmp_path / "store"), lock_file=str(tmp_path / "lock"), portdev="vnet9", mac=MAC0,
                filter="no-mac-spoofing")
    out = run_main(monkeypatch, capsys, args, host, warned)
    assert out["changed"] is True and out["rebuilt_devices"] == []
    assert warned == ["binding for vnet9: no device vnet9 exists, so it gets no rules until one does"]


def test_xtables_on_a_firewalld_host_warns_that_reloads_flush_it(tmp_path, host):
    quiet = _actions.guest_nic_filter(params(tmp_path, bindings=[binding()]), check_mode=False, runner=host)
    assert not [w for w in quiet["warnings"] if "firewalld" in w]
    host.firewalld = True
    warned = _actions.guest_nic_filter(params(tmp_path, bindings=[binding()]), check_mode=False, runner=host)
    assert [w for w in warned["warnings"] if "firewalld reload or restart flushes" in w and "backend nftables" in w]
    emptied = _actions.guest_nic_filter(params(tmp_path, bindings=[], exclusive=True), check_mode=False, runner=host)
    assert not [w for w in emptied["warnings"] if "firewalld" in w]
