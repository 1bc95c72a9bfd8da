# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""backend_fallback: nftables gives way to xtables for the whole host, per run, with a warning."""

import re

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import backend as _backend  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import (
    ApplyError, ResolveError, StoreError)
from ansible_collections.hypervisor.firewall.plugins.modules import guest_nic_filter as module
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.xtables_sim import HostFake, new_sims
from ansible_collections.hypervisor.firewall.tests.unit.plugins.modules.module_params import module_params

MAC0 = "52:54:00:00:00:00"
# a gratuitous-ARP match on no fixed address has no nftables form: the nftables compiler refuses it
GARP_GUARD = '<filter name="garp-guard"><rule action="drop" direction="out"><arp gratuitous="true"/></rule></filter>'
MAC_GUARD = ('<filter name="mac-guard"><rule action="drop" direction="out">'
             '<mac srcmacaddr="$MAC" match="no"/></rule></filter>')


class NftHost(HostFake):
    """The xtables fake plus an nft keeping the tables loaded whole; ``probe_ok`` decides ``nft -c``."""

    def __init__(self, probe_ok=True):
        super().__init__(new_sims(), ("lo", "vnet0"))
        self.probe_ok, self.nft_loads, self.tables = probe_ok, [], {}

    def nft(self, args, data=None):
        if args[:2] == ["list", "table"]:
            text = self.tables.get(tuple(args[2:4]))
            return (0, text, "") if text else (1, "", "Error: No such file or directory\n")
        if args[:1] == ["-c"]:
            return (0, "", "") if self.probe_ok else (1, "", "Error: Could not process rule: Operation not supported")
        if args == ["--version"]:
            return 0, "nftables v1.0.6", ""
        self.nft_loads.append(data)
        for match in re.finditer(r"^table (\S+) (\S+) \{\n.*?^\}\n", data, re.M | re.S):
            self.tables[match.groups()] = match.group(0)
        return 0, "", ""


def params(tmp_path, **given):
    return module_params(module, tmp_path, **{"state": "present", **given})


def bind(tmp_path, host, filter_name, check_mode=False, **given):
    binding = dict(portdev="vnet0", mac=MAC0, filter=filter_name, parameters=None, binding_xml=None)
    return _actions.guest_nic_filter(params(tmp_path, bindings=[binding], **given), check_mode=check_mode,
                                     runner=host)


def define(tmp_path, host, xml):
    _actions.nwfilter(dict(params(tmp_path), xml=xml, strict=True, name=None), check_mode=False, runner=host)


def stored_file(tmp_path):
    return (tmp_path / "store" / "backend").read_text()


def fallback_warnings(result):
    return [w for w in result["warnings"] if w.startswith("backend nftables cannot filter this host")]


def test_without_fallback_the_clear_error_stands(tmp_path):
    host = NftHost()
    define(tmp_path, host, GARP_GUARD)
    with pytest.raises(ResolveError) as info:
        bind(tmp_path, host, "garp-guard", backend="nftables")
    assert "gratuitous" in info.value.msg and "backend 'xtables'" in info.value.msg
    assert host.restores == [] and host.nft_loads == []


def test_a_rule_nftables_cannot_express_falls_back_to_xtables_and_keeps_nftables_stored(tmp_path):
    host = NftHost()
    define(tmp_path, host, GARP_GUARD)
    check = bind(tmp_path, host, "garp-guard", check_mode=True, backend="nftables", backend_fallback=True)
    assert check["changed"] and len(fallback_warnings(check)) == 1 and host.restores == []
    first = bind(tmp_path, host, "garp-guard", backend="nftables", backend_fallback=True)
    assert first["changed"] and first["rebuilt_devices"] == ["vnet0"]
    assert "gratuitous" in fallback_warnings(first)[0]
    assert [tool for tool, _payload in host.restores] == ["eb"] and host.nft_loads == []
    # the permission is kept, the fallback is not: the stored backend stays nftables
    assert stored_file(tmp_path) == "nftables\nfallback\n"
    assert _backend.choose(str(tmp_path / "store")) == "nftables"
    # a later writer without the options (re-apply, hook) falls back the same way and warns again
    again = bind(tmp_path, host, "garp-guard")
    assert not again["changed"] and len(fallback_warnings(again)) == 1 and len(host.restores) == 1


def test_a_kernel_probe_failure_falls_back_only_when_asked(tmp_path):
    host = NftHost(probe_ok=False)
    define(tmp_path, host, MAC_GUARD)
    with pytest.raises(ApplyError) as info:
        bind(tmp_path, host, "mac-guard", backend="nftables")
    assert "use backend 'xtables'" in info.value.msg and host.nft_loads == []
    result = bind(tmp_path, host, "mac-guard", backend="nftables", backend_fallback=True)
    assert result["changed"] and "Operation not supported" in fallback_warnings(result)[0]
    assert [tool for tool, _payload in host.restores] == ["eb"] and host.nft_loads == []


def test_a_working_nftables_host_ignores_the_fallback(tmp_path):
    host = NftHost()
    define(tmp_path, host, MAC_GUARD)
    result = bind(tmp_path, host, "mac-guard", backend="nftables", backend_fallback=True)
    assert fallback_warnings(result) == [] and host.restores == []
    assert len(host.nft_loads) == 1 and "table bridge hfw_nwfilter {" in host.nft_loads[0]


def test_rendered_falls_back_too_without_running_anything(tmp_path):
    host = NftHost()
    define(tmp_path, host, GARP_GUARD)
    with pytest.raises(ResolveError):
        bind(tmp_path, None, "garp-guard", state="rendered", backend="nftables")
    result = bind(tmp_path, None, "garp-guard", state="rendered", backend="nftables", backend_fallback=True)
    assert "nft" not in result["rendered"] and "ebtables" in result["rendered"]
    assert len(fallback_warnings(result)) == 1


def test_record_keeps_the_permission_next_to_the_backend(tmp_path):
    config = str(tmp_path / "store")
    assert not _backend.record(config, None, check_mode=False, fallback=False)  # nothing to keep
    assert not _backend.fallback_allowed(config)
    assert _backend.record(config, "nftables", check_mode=False, fallback=True)
    assert _backend.fallback_allowed(config) and not _backend.fallback_allowed(config, False)
    assert not _backend.record(config, None, check_mode=False)
    assert _backend.record(config, None, check_mode=False, fallback=False)
    assert stored_file(tmp_path) == "nftables\n" and not _backend.fallback_allowed(config)
    (tmp_path / "store" / "backend").write_text("nftables\nfallback always\n")
    with pytest.raises(StoreError):
        _backend.choose(config)


def test_gathered_on_nftables_lists_the_shared_chains_and_the_nics_own_elements(tmp_path):
    host = NftHost()
    define(tmp_path, host, MAC_GUARD)
    _actions.guest_nic_filter(params(tmp_path, bindings=[dict(portdev="vnet0", mac=MAC0, filter="mac-guard",
                                                              parameters=None, binding_xml=None)],
                                     backend="nftables"), check_mode=False, runner=host)
    item = bind(tmp_path, host, "mac-guard", state="gathered")["gathered"][0]
    (label, rules), = [(k, v) for k, v in item["chains"].items() if k.startswith("nft bridge hfw_nwfilter out-root-")]
    assert rules[0]["rule"].startswith("ether saddr . iifname != @") and "packets" not in rules[0]
    assert list(item["sets"].values()) == [[MAC0]] and label.split()[3] in list(item["sets"])[0]
