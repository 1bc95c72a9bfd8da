# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An admin's first day: typos and omissions get a clear error and change nothing; the modules
say what they need (libraries, root) and return diff text only when asked for it."""

import json
import pathlib

import pytest
import yaml

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.hypervisor.firewall.plugins.module_utils import _module
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import FilterXMLError, StoreError
from ansible_collections.hypervisor.firewall.plugins.modules import guest_nic_filter, nwfilter
from ansible_collections.hypervisor.firewall.tests.unit.plugins.modules.test_guest_nic_filter import (
    MAC0, binding, default_filter, define, new_host, params)

ROOT = pathlib.Path(__file__).resolve().parents[4]
TYPO = ("<filter name='no-smtp' chain='root'><rule action='drop' direction='out'>"
        "<tpc dstportstart='25'/></rule></filter>")


@pytest.fixture
def host(tmp_path):
    runner = new_host()
    define(tmp_path, runner, default_filter("no-mac-spoofing"), default_filter("no-ip-spoofing"),
           default_filter("clean-traffic"), *[default_filter(name) for name in (
               "allow-incoming-ipv4", "no-arp-spoofing", "no-arp-mac-spoofing", "no-arp-ip-spoofing",
               "no-other-l2-traffic", "qemu-announce-self", "qemu-announce-self-rarp", "no-other-rarp-traffic")])
    runner.restores.clear()
    return runner


def run_main(module, monkeypatch, capsys, args, runner, warned=None):
    monkeypatch.setattr(_actions, "Runner", lambda: runner)
    monkeypatch.setattr(AnsibleModule, "warn", lambda self, msg: (warned if warned is not None else []).append(msg))
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


def base(tmp_path, **more):
    return dict(config_dir=str(tmp_path / "store"), lock_file=str(tmp_path / "lock"), **more)


def store_files(tmp_path):
    return sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "store").rglob("*") if p.is_file())


# ---------------------------------------------------------------- strict by default

def test_a_typo_in_a_filter_is_an_error_by_default(tmp_path, host, monkeypatch, capsys):
    before = store_files(tmp_path)
    out = run_main(nwfilter, monkeypatch, capsys, base(tmp_path, xml=TYPO), host)
    assert out["failed"] is True and out["error"] == "FilterXMLError"
    assert "unknown element <tpc>" in out["msg"] and "set strict to false" in out["msg"]
    assert store_files(tmp_path) == before and host.restores == []


def test_strict_false_still_accepts_what_libvirt_accepts(tmp_path, host, monkeypatch, capsys):
    warned = []
    out = run_main(nwfilter, monkeypatch, capsys, base(tmp_path, xml=TYPO, strict=False), host, warned)
    assert out["changed"] is True and any("unknown element <tpc>" in w for w in warned)


# ---------------------------------------------------------------- guest_nic_filter input

def test_empty_input_is_an_error_and_changes_nothing(tmp_path, host, monkeypatch, capsys):
    _actions.guest_nic_filter(params(tmp_path, bindings=[binding()]), check_mode=False, runner=host)
    before, restores = store_files(tmp_path), len(host.restores)
    out = run_main(guest_nic_filter, monkeypatch, capsys, base(tmp_path), host)
    assert out["failed"] is True and out["msg"].startswith("guest_nic_filter with state=present names no binding")
    assert store_files(tmp_path) == before and len(host.restores) == restores


def test_empty_list_with_exclusive_still_removes_everything(tmp_path, host):
    _actions.guest_nic_filter(params(tmp_path, bindings=[binding()]), check_mode=False, runner=host)
    out = _actions.guest_nic_filter(params(tmp_path, bindings=[], exclusive=True), check_mode=False, runner=host)
    assert out["changed"] is True and out["bindings"] == []


def test_missing_mac_names_the_binding_not_a_dict(tmp_path, host):
    with pytest.raises(FilterXMLError) as err:
        _actions.guest_nic_filter(params(tmp_path, bindings=[dict(portdev="vnet0", filter="no-mac-spoofing")]),
                                  check_mode=False, runner=host)
    assert err.value.msg == "binding of vnet0: mac is missing: give the guest NIC's MAC address (virsh domiflist GUEST shows it)"
    assert "None" not in err.value.msg and host.restores == []


def test_lower_case_variable_is_an_error_with_the_right_name(tmp_path, host):
    before = store_files(tmp_path)
    with pytest.raises(FilterXMLError) as err:
        _actions.guest_nic_filter(params(tmp_path, bindings=[binding(filter_name="clean-traffic", ip="192.168.1.5")]),
                                  check_mode=False, runner=host)
    assert err.value.msg == ("binding of vnet0: parameter 'ip' is not a variable of filter 'clean-traffic' (names are "
                             "case-sensitive): did you mean 'IP'?")
    assert host.restores == [] and store_files(tmp_path) == before


def test_a_parameter_no_rule_reads_is_a_warning(tmp_path, host):
    out = _actions.guest_nic_filter(params(tmp_path, bindings=[binding(filter_name="no-mac-spoofing", VLAN="7")]),
                                    check_mode=False, runner=host)
    assert out["changed"] is True
    assert ("binding of vnet0: parameter 'VLAN' has no effect: no rule of filter 'no-mac-spoofing' (or of the "
            "filters it references) uses it") in out["warnings"]


def test_used_and_libvirt_variables_give_no_warning(tmp_path, host):
    out = _actions.guest_nic_filter(
        params(tmp_path, bindings=[binding(filter_name="clean-traffic", IP="192.168.1.5", CTRL_IP_LEARNING="none")]),
        check_mode=False, runner=host)
    assert [w for w in out["warnings"] if "no effect" in w] == []


def test_misspelt_filter_name_suggests_the_defined_one(tmp_path, host):
    with pytest.raises(Exception) as err:
        _actions.guest_nic_filter(params(tmp_path, bindings=[binding(filter_name="clean-trafic", IP="192.168.1.5")]),
                                  check_mode=False, runner=host)
    assert "(did you mean 'clean-traffic'?)" in err.value.msg and host.restores == []


def test_check_mode_never_says_stored(tmp_path, host):
    out = _actions.guest_nic_filter(params(tmp_path, bindings=[binding(dev="vnet7")]), check_mode=True, runner=host)
    assert out["warnings"] and not [w for w in out["warnings"] if "stored" in w]


# ---------------------------------------------------------------- what the modules need

def test_every_missing_library_in_one_message(tmp_path, host, monkeypatch, capsys):
    monkeypatch.setattr(_module, "LXML_IMPORT_ERROR", "ImportError: no lxml")
    monkeypatch.setattr(_module, "NETADDR_IMPORT_ERROR", "ImportError: no netaddr")
    out = run_main(guest_nic_filter, monkeypatch, capsys, base(tmp_path, portdev="vnet0", mac=MAC0,
                                                               filter="no-mac-spoofing"), host)
    assert out["failed"] is True and out["missing_libraries"] == ["lxml", "netaddr"]
    assert "(lxml, netaddr)" in out["msg"] and "python3-lxml python3-netaddr" in out["msg"]
    assert host.restores == []


@pytest.mark.parametrize("euid, hinted", [(1000, True), (0, False)])
def test_permission_denied_says_run_as_root(euid, hinted):
    msg = "cannot create /etc/hypervisor-firewall: Permission denied; fix config_dir"
    assert (_module.privilege_hint(msg, euid) != msg) is hinted
    if hinted:
        assert _module.privilege_hint(msg, euid).endswith("run it as root (become: true)")
    assert _module.privilege_hint("filter 'x' is not defined", 1000) == "filter 'x' is not defined"


def test_permission_denied_reaches_the_user_with_the_hint(tmp_path, host, monkeypatch, capsys):
    def denied(*_args, **_kwargs):
        raise StoreError("cannot create /etc/hypervisor-firewall: Permission denied; fix config_dir")
    monkeypatch.setattr(_actions, "guest_nic_filter", denied)
    monkeypatch.setattr(_module.os, "geteuid", lambda: 1000)
    out = run_main(guest_nic_filter, monkeypatch, capsys, base(tmp_path, portdev="vnet0", mac=MAC0,
                                                               filter="no-mac-spoofing"), host)
    assert out["failed"] is True and out["msg"].endswith("run it as root (become: true)")


def test_requirements_are_documented_for_every_module():
    from ansible_collections.hypervisor.firewall.plugins.doc_fragments.common import ModuleDocFragment
    requirements = " ".join(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["requirements"])
    for needed in ("Python 3.8", "lxml", "netaddr", "iptables", "ebtables", "nft", "become: true"):
        assert needed in requirements
    for path in sorted((ROOT / "plugins" / "modules").glob("*.py")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8").split('DOCUMENTATION = r"""')[1].split('"""')[0])
        assert "hypervisor.firewall.common" in doc["extends_documentation_fragment"], path.name


# ---------------------------------------------------------------- diff only with --diff

@pytest.mark.parametrize("diff_mode", [False, True])
def test_diff_only_in_diff_mode(tmp_path, host, monkeypatch, capsys, diff_mode):
    args = base(tmp_path, portdev="vnet0", mac=MAC0, filter="no-mac-spoofing", _ansible_diff=diff_mode)
    out = run_main(guest_nic_filter, monkeypatch, capsys, args, host)
    assert out["changed"] is True
    assert ("diff" in out) is diff_mode
    if diff_mode:
        assert out["diff"] and all("before" in entry and "after" in entry for entry in out["diff"])


# ---------------------------------------------------------------- module_defaults for the collection

def test_action_group_lists_every_module():
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    modules = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
    assert sorted(runtime["action_groups"]["all"]) == modules
