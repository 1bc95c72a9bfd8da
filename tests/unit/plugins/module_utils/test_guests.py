# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Placement of guest bindings (_guests), their store form, the runtime map and the qemu hook's
argument handling, without root: the hook's reconcile is faked at the runner."""

import io
import json

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import placement as _guests  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import hook as _hook  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import names as _names  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import compile as _compile_xt  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import runtime as _runtime  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import save_parse as _saveparse  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import backend as _backend  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import DeviceNameError, FilterXMLError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.placement import GuestNic, GuestRecord
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import Binding
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import parse_ip_link

MAC_A, MAC_B = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
A = Binding(portdev=None, mac=MAC_A, filter="f", owner_name="guest-a")
B = Binding(portdev=None, mac=MAC_B, filter="f", owner_name="guest-b")
FIXED = Binding(portdev="vnet0", mac=MAC_A, filter="f")


def place(bindings, runtime, links):
    placed, warnings = _guests.place_bindings({b.key: b for b in bindings}, runtime, links)
    return {p.binding.label: (p.tap, p.status) for p in placed}, warnings


def test_binding_keys_are_store_names_and_never_device_names():
    assert A.key == "guest-a--52-54-00-00-00-0a"
    odd = Binding(portdev=None, mac=MAC_A, filter="f", owner_name="web 1/../x")
    other = Binding(portdev=None, mac=MAC_A, filter="f", owner_name="web_1_.._x")
    assert _store.OBJECT_NAME_RE.match(odd.key) and odd.key != other.key
    assert len(Binding(portdev=None, mac=MAC_A, filter="f", owner_name="x" * 300).key) <= 128
    assert len(A.key) > 15 and FIXED.key == "vnet0"


def test_guest_binding_xml_round_trips_without_portdev():
    text = _filterxml.format_binding_xml(Binding(None, MAC_A, "clean-traffic", (("IP", "10.0.0.1"),),
                                                 owner_name="guest-a", alias="net0"))
    assert "<portdev" not in text and "<alias name='net0'/>" in text
    back = _filterxml.parse_binding_xml(text)
    assert (back.portdev, back.domain, back.alias, back.key) == (None, "guest-a", "net0", A.key)
    with pytest.raises(FilterXMLError, match="portdev"):
        _filterxml.parse_binding_xml("<filterbinding><mac address='%s'/><filterref filter='f'/></filterbinding>"
                                     % MAC_A)


def test_the_hook_map_places_a_running_guest_and_a_stopped_one_nowhere():
    runtime = {"guest-a": GuestRecord("guest-a", True, (GuestNic(MAC_A, "vnet3", "net0"),)),
               "guest-b": GuestRecord("guest-b", False)}
    links = {"vnet3": "fe:54:00:00:00:0a", "vnet4": "fe:54:00:00:00:0b"}
    placed, warnings = place([A, B], runtime, links)
    # B's tap still carries B's MAC ('stopped' runs before libvirt deletes it): the record decides
    assert placed == {A.label: ("vnet3", "running"), B.label: (None, "not running")}
    assert warnings == []


def test_without_a_record_the_tap_with_the_fe_mac_is_used():
    placed, _warnings = place([A, B], {}, {"vnet0": "fe:54:00:00:00:0b", "br0": MAC_A})
    assert placed == {A.label: (None, "not running"), B.label: ("vnet0", "running")}


def test_a_stale_record_never_lands_on_another_guests_tap():
    runtime = {"guest-a": GuestRecord("guest-a", True, (GuestNic(MAC_A, "vnet0"),))}
    placed, warnings = place([A], runtime, {"vnet0": "fe:54:00:00:00:0c"})
    assert placed == {A.label: (None, "unplaced")}
    assert "now has MAC fe:54:00:00:00:0c" in warnings[0]
    gone, notes = place([A], runtime, {"vnet1": None})
    assert gone == {A.label: (None, "not running")}


def test_alias_selects_the_nic_and_a_missing_nic_is_reported():
    aliased = Binding(portdev=None, mac=MAC_A, filter="f", owner_name="guest-a", alias="net1")
    runtime = {"guest-a": GuestRecord("guest-a", True, (GuestNic(MAC_A, "vnet0", "net0"), GuestNic(MAC_A, "vnet1", "net1")))}
    placed, notes = place([aliased], runtime, {"vnet0": None, "vnet1": None})
    assert placed == {aliased.label: ("vnet1", "running")}
    missing = Binding(portdev=None, mac=MAC_B, filter="f", owner_name="guest-a")
    placed, warnings = place([missing], runtime, {"vnet0": None})
    assert placed == {missing.label: (None, "unplaced")} and "no NIC with MAC" in warnings[0]


def test_a_nic_hot_plugged_after_the_hooks_record_is_placed_by_its_tap_mac():
    # libvirt runs no hook for attach-interface: the record lists only the NICs the guest started with
    runtime = {"guest-a": GuestRecord("guest-a", True, (GuestNic(MAC_A, "vnet0", "net0"),))}
    plugged = Binding(portdev=None, mac=MAC_B, filter="f", owner_name="guest-a")
    links = {"vnet0": "fe:54:00:00:00:0a", "vnet1": "fe:54:00:00:00:0b"}
    placed, warnings = place([A, plugged], runtime, links)
    assert placed == {A.label: ("vnet0", "running"), plugged.label: ("vnet1", "running")} and warnings == []
    # an alias cannot be checked on a bare tap: no guessing
    aliased = Binding(portdev=None, mac=MAC_B, filter="f", owner_name="guest-a", alias="net1")
    placed, warnings = place([aliased], runtime, links)
    assert placed == {aliased.label: (None, "unplaced")} and "no NIC with MAC" in warnings[0]
    # a stopped guest's hot-plugged tap is not placed either
    stopped = {"guest-a": GuestRecord("guest-a", False)}
    assert place([plugged], stopped, links)[0] == {plugged.label: (None, "not running")}


def test_a_guest_binding_wins_over_a_fixed_one_and_two_guests_on_one_tap_both_lose():
    runtime = {"guest-a": GuestRecord("guest-a", True, (GuestNic(MAC_A, "vnet0"),))}
    placed, warnings = place([A, FIXED], runtime, {"vnet0": "fe:54:00:00:00:0a"})
    assert placed == {A.label: ("vnet0", "running"), "vnet0": (None, "unplaced")}
    assert "wins" in warnings[0]
    twin = Binding(portdev=None, mac=MAC_A, filter="f", owner_name="guest-twin")
    placed, warnings = place([A, twin], {}, {"vnet0": "fe:54:00:00:00:0a"})
    assert set(placed.values()) == {(None, "unplaced")} and "no rules for any" in warnings[0]


def test_fixed_bindings_keep_their_old_behaviour():
    placed, warnings = place([FIXED], {}, {"vnet9": None})
    assert placed == {"vnet0": (None, "no device")}
    assert warnings == ["binding for vnet0: no device vnet0 exists, so it gets no rules until one does"]
    assert place([FIXED, A], {}, None)[0] == {"vnet0": ("vnet0", "fixed"), A.label: (None, "not running")}


def test_domain_xml_gives_macs_taps_and_aliases_and_refuses_wildcard_taps():
    xml = ("<domain><name>g</name><devices><interface type='network'><mac address='52:54:00:AA:00:01'/>"
           "<target dev='vnet7'/><alias name='net0'/></interface><interface type='user'>"
           "<mac address='52:54:00:aa:00:02'/></interface></devices></domain>")
    assert _guests.parse_domain_xml(xml) == ("g", (GuestNic("52:54:00:aa:00:01", "vnet7", "net0"),
                                                   GuestNic("52:54:00:aa:00:02", None, None)))
    with pytest.raises(DeviceNameError):
        _guests.parse_domain_xml(xml.replace("vnet7", "vnet+"))


def test_ip_link_output_gives_macs():
    text = ("1: lo: <LOOPBACK,UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000"
            "\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n"
            "7: vnet0@if6: <BROADCAST,MULTICAST,UP> mtu 1500 master br0 state UP\\    link/ether "
            "FE:54:00:00:00:0A brd ff:ff:ff:ff:ff:ff link-netns g0\n")
    assert parse_ip_link(text) == {"lo": None, "vnet0": "fe:54:00:00:00:0a"}


def test_drop_unbound_rule_comes_after_every_bound_taps_jump_and_reads_back_as_ours():
    ruleset = _compile_xt.add_unbound_drop({}, {"vnet2"})
    state = ruleset[("eb", "nat")]
    assert state.hooks == (("PREROUTING", "-i vnet2 -j libvirt-I-vnet2"), ("PREROUTING", "-i vnet+ -j DROP"))
    assert state.chains["libvirt-I-vnet2"].rules == () and state.chains["libvirt-I-vnet2"].policy == "ACCEPT"
    save = ("*nat\n:PREROUTING ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\n:libvirt-I-vnet2 ACCEPT\n"
            "-A PREROUTING -i vnet2 -j libvirt-I-vnet2\n-A PREROUTING -i vnet+ -j DROP\n"
            "-A PREROUTING -i vnet+ -j ACCEPT\n")
    live = _saveparse.parse_save("eb", save)
    assert live[("eb", "nat")].hooks == state.hooks, "an admin's other vnet+ rule stays foreign"
    assert _names.is_fixed_hook("eb", "nat", "PREROUTING", "-i vnet+ -j DROP")


def test_runtime_records_round_trip_and_expire_with_the_boot(tmp_path):
    record = GuestRecord("web 1", True, (GuestNic(MAC_A, "vnet0", "net0"),))
    _runtime.save_record(str(tmp_path), record, current_boot="boot-1")
    assert _runtime.load_runtime(str(tmp_path), current_boot="boot-1") == ({"web 1": record}, [])
    assert _runtime.load_runtime(str(tmp_path), current_boot="boot-2") == ({}, [])
    (tmp_path / "runtime" / "bad.json").write_text("{")
    records, warnings = _runtime.load_runtime(str(tmp_path), current_boot="boot-1")
    assert list(records) == ["web 1"] and "unreadable" in warnings[0]
    assert _store.load_store(str(tmp_path)).bindings == {}, "the runtime map is not part of the store"


# ---------------------------------------------------------------- the hook's arguments

class FakeHostRunner:
    """Answers reconcile's questions with a host holding none of our chains; records restores."""

    def __init__(self, links):
        self.links = links
        self.restored = []
        self.warnings = []

    def list_devices(self):
        return set(self.links)

    def list_links(self):
        return dict(self.links)

    def libvirt_bound_devices(self, _path):
        return set()

    def bridge_nf_disabled(self):
        return []

    def which(self, _tool):
        return []

    def save(self, tool):
        return "*nat\n:PREROUTING ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\n" if tool == "eb" else ""

    def restore(self, tool, payload):
        self.restored.append((tool, payload))
        return 1, "", "simulated failure"  # the tables never change: the hook must report it


def store_with_guest(tmp_path):
    flt = _filterxml.parse_filter_xml("<filter name='f' chain='root'><rule action='drop' direction='out'>"
                                      "<mac srcmacaddr='$MAC' match='no'/></rule></filter>")[0]
    state = _store.StoreState(filters={"f": flt}, bindings={A.key: A})
    _store.write_changes(str(tmp_path / "store"), _store.StoreState(), state)
    conf = tmp_path / "hook.conf"
    conf.write_text("config_dir = %s\nlock_file = %s\nlock_timeout = 1\n" % (tmp_path / "store", tmp_path / "lock"))
    return {_hook.CONF_ENV: str(conf)}


def domain_xml(mac=MAC_A):
    return "<domain><name>guest-a</name><devices><interface type='bridge'><mac address='%s'/>" \
           "<target dev='vnet0'/></interface></devices></domain>" % mac


def run_hook(argv, env, runner, stdin=""):
    return _hook.main(argv, io.StringIO(stdin), env, runner=runner)


def test_hook_refuses_a_start_it_cannot_filter_and_lets_reconnect_and_fail_open_through(tmp_path, capsys):
    env = store_with_guest(tmp_path)
    runner = FakeHostRunner({"vnet0": "fe:54:00:00:00:0a"})
    assert run_hook(["guest-a", "start", "begin", "-"], env, runner, domain_xml()) == 1
    assert runner.restored and "libvirt-I-vnet0" in runner.restored[0][1]
    err = capsys.readouterr()
    assert err.out == "" and "error: start guest-a" in err.err
    assert run_hook(["guest-a", "reconnect", "begin", "-"], env, runner, domain_xml()) == 0
    with open(env[_hook.CONF_ENV], "a", encoding="utf-8") as handle:
        handle.write("fail_open = yes\n")
    assert run_hook(["guest-a", "start", "begin", "-"], env, runner, domain_xml()) == 0
    assert "continuing: fail_open" in capsys.readouterr().err


def test_hook_records_the_guest_and_ignores_what_is_not_its_business(tmp_path, capsys):
    env = store_with_guest(tmp_path)
    runner = FakeHostRunner({"vnet0": "fe:54:00:00:00:0a"})
    for argv in (["guest-a", "prepare", "begin", "-"], ["guest-a", "migrate", "begin", "-"],
                 ["guest-a", "restore", "begin", "-"], ["guest-a", "some-future-op", "-", "-"],
                 ["guest-x", "start", "begin", "-"]):
        assert run_hook(argv, env, runner, domain_xml(MAC_B)) == 0, argv
    assert runner.restored == [], "no binding of these domains: nothing to reconcile"
    assert capsys.readouterr().out == ""
    recorded = json.loads((tmp_path / "store" / "runtime" / "guest-x.json").read_text())
    assert recorded["running"] and recorded["nics"][0]["tap"] == "vnet0"
    assert run_hook([], env, runner) == 1
    assert "usage" in capsys.readouterr().err


def test_hook_preflight_refuses_a_migration_this_host_cannot_filter(tmp_path, capsys):
    env = store_with_guest(tmp_path)
    broken = Binding(portdev=None, mac=MAC_B, filter="missing", owner_name="guest-b")
    state = _store.load_store(str(tmp_path / "store"))
    _store.write_changes(str(tmp_path / "store"), state, state.with_changes(bindings=dict(state.bindings, **{broken.key: broken})))
    assert run_hook(["guest-b", "migrate", "begin", "-"], env, FakeHostRunner({})) == 1
    assert "missing" in capsys.readouterr().err


def test_hook_config_is_checked():
    assert _hook.parse_conf("# c\nconfig_dir = /x\n")["config_dir"] == "/x"
    for bad in ("confg_dir = /x", "lock_timeout = soon", "fail_open = maybe", "just words"):
        with pytest.raises(_hook.HookError):
            _hook.parse_conf(bad)


def test_service_places_guest_bindings_on_their_taps(tmp_path):
    flt = _filterxml.parse_filter_xml("<filter name='f' chain='root'><rule action='drop' direction='out'>"
                                      "<mac srcmacaddr='$MAC' match='no'/></rule></filter>")[0]
    state = _store.StoreState(filters={"f": flt}, bindings={A.key: A, B.key: B}, drop_unbound_taps=True)
    runtime = {"guest-a": GuestRecord("guest-a", True, (GuestNic(MAC_A, "vnet5"),))}
    desired, _warnings = _service.build_desired(state, _backend.select("xtables"), links={"vnet5": None},
                                                runtime=runtime)
    hooks = desired[("eb", "nat")].hooks
    assert hooks == (("PREROUTING", "-i vnet5 -j libvirt-I-vnet5"), ("PREROUTING", "-i vnet+ -j DROP"))
