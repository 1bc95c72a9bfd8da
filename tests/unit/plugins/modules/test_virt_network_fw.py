# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""virt_network_fw with the runner faked at its one seam (simulated xtables tools, no root)."""

import dataclasses
import json
import stat

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import network as _network  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import networks as _netfw  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ApplyError, FilterXMLError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import Scope, parse_live
from ansible_collections.hypervisor.firewall.plugins.modules import virt_network_fw as module
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.xtables_sim import HostFake, new_sims
from ansible_collections.hypervisor.firewall.tests.unit.plugins.modules.module_params import module_defaults, module_params

TABLES = ("filter", "nat", "mangle")
FOREIGN_IP4 = ("*filter\n:ADMIN - [0:0]\n-A INPUT -i br0 -j DROP\n-A FORWARD -j ADMIN\n-A ADMIN -s 203.0.113.0/24 -j DROP\n"
               "COMMIT\n*nat\n-A POSTROUTING -s 198.51.100.0/24 -o eth9 -j MASQUERADE\nCOMMIT\n")


def new_host(firewalld=False):
    """The shared fake host with bridges and an uplink, and foreign rules in iptables."""
    return HostFake(new_sims(TABLES, foreign={"ip4": FOREIGN_IP4}), ("lo", "br0", "br1", "eth9"), firewalld=firewalld)


def params(tmp_path, **given):
    return module_params(module, tmp_path, **{"state": "present", **given})


def live_network_rules(runner):
    """{(tool, table, chain): rules} of the LIBVIRT_* chains in the simulated kernel."""
    out = {}
    for tool in ("ip4", "ip6"):
        live, _pos = parse_live(tool, runner.save(tool), Scope(manage_networks=True))
        for (_tool, table), state in live.items():
            for name, chain in state.chains.items():
                out[(tool, table, name)] = chain.rules
    return out


def compiled_rules(*networks):
    return {(tool, table, name): chain.rules
            for (tool, table), state in _netfw.compile_networks(list(networks)).items()
            for name, chain in state.chains.items()}


def network(name, bridge, **options):
    return _network.network_from_params(dict(name=name, bridge=bridge, **options))


NAT = dict(bridge="br0", ipv4="192.168.100.1/24", ipv6="fd00:100::1/64", mode="nat")


def test_options_not_given_get_libvirt_defaults_in_code():
    """The module documents no default for the per-network options (so network_xml can exclude
    them); options left unset give libvirt's defaults: a <network> without <dhcp>, DNS on, NAT."""
    defaults = module_defaults(module)
    assert [name for name in module.NETWORK_OPTIONS if defaults[name] is not None] == []
    net = _network.network_from_params({name: None for name in module.NETWORK_OPTIONS} | dict(name="n", bridge="br0", ipv4=["192.168.100.1/24"]))
    assert (net.mode, net.dhcp, net.dns, net.tftp, net.nat_ipv6, list(net.nat_ports)) == (
        "nat", False, True, False, False, [1024, 65535])
    for field in dataclasses.fields(_network.Network):
        if field.default is not dataclasses.MISSING and field.name != "ipv4":
            assert getattr(net, field.name) == field.default, field.name


@pytest.mark.parametrize("option, value", [("mode", "route"), ("ipv4", ["10.0.0.1/24"]), ("dhcp", True),
                                           ("nat_ports", [2000, 3000]), ("bridge", "virbr9")])
def test_network_xml_with_a_network_option_is_refused(tmp_path, monkeypatch, capsys, option, value):
    """The option would be ignored: the XML describes the whole network."""
    runner = new_host()
    args = dict(config_dir=str(tmp_path / "store"), lock_file=str(tmp_path / "lock"),
                network_xml="<network><name>n</name><bridge name='virbr0'/><ip address='192.168.5.1' prefix='24'/></network>", **{option: value})
    out = run_main(monkeypatch, capsys, args, runner)
    assert out["failed"] is True and out["msg"] == "parameters are mutually exclusive: network_xml|%s" % option
    assert runner.restores == [] and not (tmp_path / "store").exists()


def test_present_applies_then_is_idempotent_and_keeps_foreign_rules(tmp_path):
    runner = new_host()
    foreign_filter = [line for line in runner.save("ip4").splitlines() if "ADMIN" in line or "eth9" in line]
    first = _actions.virt_network_fw(params(tmp_path, **NAT), check_mode=False, runner=runner)
    assert first["changed"] and first["network"]["name"] == "br0"
    assert first["network"]["nat_ports"] == [1024, 65535] and first["network"]["dhcp"] is False
    assert live_network_rules(runner) == compiled_rules(network("br0", **NAT))
    assert "br0" in _store.load_store(str(tmp_path / "store")).networks
    restores = len(runner.restores)
    second = _actions.virt_network_fw(params(tmp_path, **NAT), check_mode=False, runner=runner)
    assert not second["changed"] and len(runner.restores) == restores
    after = runner.save("ip4").splitlines()
    assert [line for line in after if "ADMIN" in line or "eth9" in line] == foreign_filter
    assert after.index("-A INPUT -i br0 -j DROP") > after.index("-A INPUT -j LIBVIRT_INP")


def test_check_mode_reports_the_change_and_touches_nothing(tmp_path):
    runner = new_host()
    before = {tool: runner.save(tool) for tool in runner.sims}
    result = _actions.virt_network_fw(params(tmp_path, **NAT), check_mode=True, runner=runner)
    assert result["changed"] and runner.restores == []
    assert {tool: runner.save(tool) for tool in runner.sims} == before
    assert _store.load_store(str(tmp_path / "store")).networks == {}


def test_dhcp_adds_only_the_checksum_fix(tmp_path):
    runner = new_host()
    _actions.virt_network_fw(params(tmp_path, **NAT), check_mode=False, runner=runner)
    without = live_network_rules(runner)
    _actions.virt_network_fw(params(tmp_path, dhcp=True, **NAT), check_mode=False, runner=runner)
    added = {key: rules for key, rules in live_network_rules(runner).items() if without.get(key) != rules}
    assert added == {("ip4", "mangle", "LIBVIRT_PRT"): ("-o br0 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill",)}


def test_two_networks_then_remove_by_name_then_by_bridge(tmp_path):
    runner = new_host()
    routed = dict(name="lab2", bridge="br1", ipv4="192.168.101.1/24", mode="route")
    _actions.virt_network_fw(params(tmp_path, **NAT), check_mode=False, runner=runner)
    _actions.virt_network_fw(params(tmp_path, **routed), check_mode=False, runner=runner)
    assert live_network_rules(runner) == compiled_rules(network("br0", **NAT), network(**routed))
    gone = _actions.virt_network_fw(params(tmp_path, name="br0", mode=None, state="absent"), False, runner=runner)
    assert gone["changed"] and gone["network"] is None
    assert live_network_rules(runner) == compiled_rules(network(**routed))
    _actions.virt_network_fw(params(tmp_path, bridge="br1", state="absent"), False, runner=runner)
    for tool in ("ip4", "ip6"):
        assert "LIBVIRT_" not in runner.save(tool)
    assert "-A INPUT -i br0 -j DROP" in runner.save("ip4")


def test_absent_of_an_unknown_network_claims_nothing(tmp_path):
    runner = new_host()
    result = _actions.virt_network_fw(params(tmp_path, name="default", state="absent"), False, runner=runner)
    assert not result["changed"] and runner.restores == []
    assert not _store.load_store(str(tmp_path / "store")).manage_networks


@pytest.mark.parametrize("mode, zone", [("nat", "libvirt"), ("route", "libvirt-routed"), ("isolated", "libvirt")])
def test_firewalld_host_gets_the_bridge_in_libvirts_zone_for_good(tmp_path, mode, zone):
    options = dict(params(tmp_path, **NAT), mode=mode)
    runner = new_host(firewalld=True)
    runner.zone_of[True]["br0"] = "public"  # where an admin's permanent config had it
    result = _actions.virt_network_fw(dict(options), False, runner=runner)
    assert result["changed"] and result["firewalld_zone"] == zone
    assert runner.zone_of == {False: {"br0": zone}, True: {"br0": zone}}  # runtime, and kept over reloads
    assert not [w for w in result["warnings"] if "firewalld" in w]
    restores = len(runner.restores)
    again = _actions.virt_network_fw(dict(options), False, runner=runner)
    assert not again["changed"] and len(runner.restores) == restores and len(runner.zone_calls) == 2

    gone = _actions.virt_network_fw(params(tmp_path, name="br0", state="absent"), False, runner=runner)
    assert gone["changed"] and runner.zone_of == {False: {}, True: {}}
    assert runner.zone_calls[2:] == [("remove", zone, "br0", False), ("remove", zone, "br0", True)]


def test_firewalld_zone_in_check_mode_is_reported_not_made(tmp_path):
    runner = new_host(firewalld=True)
    result = _actions.virt_network_fw(params(tmp_path, **NAT), True, runner=runner)
    assert result["changed"] and result["firewalld_zone"] == "libvirt" and runner.zone_calls == []


def test_firewalld_without_libvirts_zones_warns_with_the_fix(tmp_path):
    runner = new_host(firewalld=True)
    runner.zones = {"public", "trusted"}
    result = _actions.virt_network_fw(params(tmp_path, **NAT), False, runner=runner)
    assert result["firewalld_zone"] is None and runner.zone_calls == []
    assert [w for w in result["warnings"] if "no 'libvirt' zone" in w and "bridge br0" in w
            and "install libvirt's firewalld zones" in w]


def test_open_network_gets_no_zone(tmp_path):
    runner = new_host(firewalld=True)
    result = _actions.virt_network_fw(dict(params(tmp_path, **NAT), mode="open"), False, runner=runner)
    assert result["firewalld_zone"] is None and runner.zone_calls == []
    assert [w for w in result["warnings"] if "mode open" in w and "br0" in w]


def test_no_firewalld_no_zone(tmp_path):
    runner = new_host()
    result = _actions.virt_network_fw(params(tmp_path, **NAT), False, runner=runner)
    assert result["firewalld_zone"] is None and runner.zone_calls == []
    assert not [w for w in result["warnings"] if "firewalld" in w]


def test_present_without_bridge_names_the_fix(tmp_path):
    with pytest.raises(FilterXMLError, match="needs bridge"):
        _actions.virt_network_fw(params(tmp_path, name="lab"), False, runner=new_host())


def test_network_xml_name_must_match(tmp_path):
    xml = _network.format_network_xml(network("lab", "br0", ipv4="192.168.100.1/24"))
    with pytest.raises(FilterXMLError, match="does not match"):
        _actions.virt_network_fw(params(tmp_path, name="other", network_xml=xml), False, runner=new_host())
    result = _actions.virt_network_fw(params(tmp_path, network_xml=xml, state="absent"), False, runner=new_host())
    assert not result["changed"]


def test_rendered_needs_no_runner(tmp_path):
    result = _actions.virt_network_fw(params(tmp_path, state="rendered", **NAT), False, runner=object())
    assert "-A LIBVIRT_PRT -s 192.168.100.0/24 ! -d 192.168.100.0/24 -j MASQUERADE" in result["rendered"]["iptables"]


def test_gathered_lists_live_chains(tmp_path):
    runner = new_host()
    _actions.virt_network_fw(params(tmp_path, **NAT), False, runner=runner)
    gathered = _actions.virt_network_fw(params(tmp_path, state="gathered"), False, runner=runner)["gathered"]
    assert gathered["iptables filter LIBVIRT_FWX"] == [dict(rule="-i br0 -o br0 -j ACCEPT", packets=0, bytes=0)]


def test_firewalld_probe(tmp_path):
    assert HostRunner(path=str(tmp_path)).firewalld_running() is False
    tool = tmp_path / "firewall-cmd"
    tool.write_text("#!/bin/sh\n[ \"$1\" = --state ] && echo running\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    assert HostRunner(path=str(tmp_path)).firewalld_running() is True


FAKE_FIREWALL_CMD = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls"
case "$*" in
  --get-zones) echo "block public libvirt" ;;
  --get-zone-of-interface=br0) echo libvirt ;;
  "--permanent --get-zone-of-interface=br0") echo "no zone"; exit 2 ;;
  *--zone=nowhere*) echo "Error: INVALID_ZONE: nowhere" >&2; exit 112 ;;
esac
"""


def test_firewalld_zone_commands(tmp_path):
    tool = tmp_path / "firewall-cmd"
    tool.write_text(FAKE_FIREWALL_CMD)
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    runner = HostRunner(path=str(tmp_path))
    assert runner.firewalld_zones() == {"block", "public", "libvirt"}
    assert runner.firewalld_zone_of("br0") == "libvirt" and runner.firewalld_zone_of("br0", True) is None
    runner.firewalld_change_zone("libvirt", "br0", permanent=True)
    runner.firewalld_remove_interface("libvirt", "br0")
    with pytest.raises(ApplyError, match="INVALID_ZONE: nowhere; put br0 in zone nowhere by hand"):
        runner.firewalld_change_zone("nowhere", "br0")
    assert (tmp_path / "calls").read_text().splitlines()[3:] == [
        "--permanent --zone=libvirt --change-interface=br0", "--zone=libvirt --remove-interface=br0",
        "--zone=nowhere --change-interface=br0"]


def run_main(monkeypatch, capsys, args, runner, warned=None):
    monkeypatch.setattr(_actions, "Runner", lambda: runner)
    monkeypatch.setattr(AnsibleModule, "warn", lambda self, msg: (warned if warned is not None else []).append(msg))
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


def test_main_defaults_name_and_warns(tmp_path, monkeypatch, capsys):
    base = dict(config_dir=str(tmp_path / "store"), lock_file=str(tmp_path / "lock"))
    warned = []
    out = run_main(monkeypatch, capsys, dict(base, bridge="br0", ipv4="192.168.100.1/24"), new_host(firewalld=True),
                   warned)
    assert out["changed"] and out["network"]["name"] == "br0" and out["network"]["dhcp"] is False
    assert out["firewalld_zone"] == "libvirt" and not [w for w in warned if "firewalld" in w]
    out = run_main(monkeypatch, capsys, dict(base, name="br0", state="absent"), new_host())
    assert out["changed"] and "failed" not in out


def test_main_bad_input_fails_without_traceback(tmp_path, monkeypatch, capsys):
    args = dict(config_dir=str(tmp_path / "store"), lock_file=str(tmp_path / "lock"), bridge="br0", ipv4="10.0.0.0/24")
    out = run_main(monkeypatch, capsys, args, new_host())
    assert out["failed"] and "subnet's network address" in out["msg"] and out["error"] == "FilterXMLError"
    assert "exception" not in out


def test_main_gathered_needs_no_network_but_the_others_do(tmp_path, monkeypatch, capsys):
    base = dict(config_dir=str(tmp_path / "store"), lock_file=str(tmp_path / "lock"))
    runner = new_host()
    run_main(monkeypatch, capsys, dict(base, **NAT), runner)
    out = run_main(monkeypatch, capsys, dict(base, state="gathered"), runner)
    assert "failed" not in out and out["gathered"]["iptables filter LIBVIRT_FWX"] == [
        dict(rule="-i br0 -o br0 -j ACCEPT", packets=0, bytes=0)]
    for state in ("present", "absent", "rendered"):
        out = run_main(monkeypatch, capsys, dict(base, state=state), runner)
        assert out["failed"] and "network_xml, bridge, name" in out["msg"], state
