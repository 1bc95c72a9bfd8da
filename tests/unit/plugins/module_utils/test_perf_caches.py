# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-call caches change nothing: the same rulesets with and without sharing (issue 15)."""

import gc
import glob
import os

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import EngineError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import transitions as _ops
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import resolve as _resolve
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import Binding
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import compile_l2 as _compile_nft
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import converge as _converge
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import inspect as _inspect
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables.writer import render_table
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import inspect_reference as _old
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.xtables_sim import HostFake, new_sims

HERE = os.path.dirname(__file__)
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))


def _filters():
    out = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "roles", "default_filters", "files", "*.xml"))):
        with open(path, encoding="utf-8") as handle:
            parsed = _filterxml.parse_filter_xml(handle.read())
        flt = parsed[0] if isinstance(parsed, tuple) else parsed
        out[flt.name] = flt
    return out


FILTERS = _filters()


def _binding(index, name):
    params = [("IP", "10.1.%d.%d" % (index // 200, index % 200 + 2)), ("IPV6", "fd00::%x" % (index + 1)),
              ("DHCPSERVER", "10.1.0.1"), ("GATEWAY_MAC", "52:54:00:ff:00:01")]
    if index % 3 == 0:  # some NICs with two addresses, so value lists differ between NICs
        params.append(("IP", "10.2.%d.%d" % (index // 200, index % 200 + 2)))
    return Binding(portdev="vnet%d" % index, mac="52:54:00:00:%02x:%02x" % (index // 256, index % 256),
                   filter=name, parameters=tuple(params))


def _nft_filters():
    """Default filters the nftables backend compiles (the others are refused with a typed error)."""
    usable = []
    for name in sorted(FILTERS):
        try:
            _compile_nft.compile_nics([_resolve.instantiate(_binding(0, name), FILTERS)])
        except EngineError:
            continue
        usable.append(name)
    return usable


def _mixed(count, shared):
    """``count`` NICs over every usable filter; ``shared``: one resolver memo (shared rule objects),
    else a memo per NIC, so no RuleInstance object is shared between NICs and no cache can hit."""
    names = _nft_filters()
    memo = _resolve.new_memo()
    return [_resolve.instantiate(_binding(i, names[i % len(names)]), FILTERS,
                                 memo if shared else _resolve.new_memo()) for i in range(count)]


def _text(desired):
    return "".join(render_table(table) for _key, table in sorted(desired.tables.items()))


def test_nft_template_cache_gives_the_same_tables_as_building_every_rule_per_nic():
    shared = _compile_nft.compile_nics(_mixed(120, shared=True))
    alone = _compile_nft.compile_nics(_mixed(120, shared=False))
    assert _text(shared) == _text(alone)
    assert shared.tables == alone.tables
    assert shared.notes == alone.notes and shared.rule_count == alone.rule_count
    assert "clean-traffic" in _nft_filters() and len(_nft_filters()) > 5


def test_nft_template_cache_builds_each_shared_rule_once(monkeypatch):
    calls = []
    original = _compile_nft._build

    def counting(rule, reverse):
        calls.append((rule, reverse))
        return original(rule, reverse)

    monkeypatch.setattr(_compile_nft, "_build", counting)
    memo = _resolve.new_memo()
    insts = [_resolve.instantiate(_binding(i, "clean-traffic"), FILTERS, memo) for i in range(1, 51)]
    _compile_nft.compile_nics(insts)
    per_nic = len(calls)
    calls.clear()
    _compile_nft.compile_nics(insts[:1])
    one = len(calls)
    # 50 NICs need far fewer builds than 50 x one NIC's: the rules that use no MAC or IP are shared
    assert one < per_nic < 50 * one
    assert len({(id(rule), reverse) for rule, reverse in calls}) == one


@pytest.fixture
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_reconcile_runs_without_the_cyclic_collector_and_restores_it(tmp_path, collector_on):
    seen = []

    def mutate(state):
        seen.append(gc.isenabled())
        state = _ops.define_filter(state, FILTERS["clean-traffic"])
        for name in ("no-mac-spoofing", "no-ip-spoofing", "no-arp-spoofing", "no-other-l2-traffic",
                     "allow-incoming-ipv4", "allow-arp", "no-arp-ip-spoofing", "no-arp-mac-spoofing",
                     "no-mac-broadcast", "qemu-announce-self", "qemu-announce-self-rarp",
                     "no-ip-multicast", "no-other-rarp-traffic", "allow-dhcp", "allow-dhcp-server"):
            if name in FILTERS:
                state = _ops.define_filter(state, FILTERS[name])
        return _ops.set_bindings(state, [_binding(i, "clean-traffic") for i in range(3)]), []

    host = HostFake(new_sims(), {"lo", "br0", "vnet0", "vnet1", "vnet2"})
    outcome = _service.reconcile(str(tmp_path / "s"), mutate, host, False, lock_file=str(tmp_path / "l"),
                                 backend="xtables")
    assert outcome.rules_changed and seen == [False] and gc.isenabled()

    def broken(state):
        raise RuntimeError("mutation failed")

    with pytest.raises(RuntimeError):
        _service.reconcile(str(tmp_path / "s"), broken, host, False, lock_file=str(tmp_path / "l"))
    assert gc.isenabled(), "an error inside reconcile leaves the collector on"


def test_collector_paused_keeps_a_disabled_collector_disabled():
    was = gc.isenabled()
    gc.disable()
    try:
        with _service.collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()


def _parsed(insts):
    tables = _compile_nft.compile_nics(insts).tables
    return {key: _converge.parse_table(render_table(table)) for key, table in tables.items()}


def test_indexed_device_views_equal_the_per_nic_scan():
    l3 = _filterxml.parse_filter_xml(
        "<filter name='l3' chain='root'><filterref filter='clean-traffic'/>"
        "<rule action='accept' direction='in'><tcp srcipaddr='$IP' dstportstart='22'/></rule>"
        "<rule action='drop' direction='inout'><udp dstportstart='53'/></rule></filter>")[0]
    filters = dict(FILTERS, l3=l3)
    names = _nft_filters() + ["l3", "l3", "l3"]

    def state(indexes, shift):
        memo = _resolve.new_memo()
        return _parsed([_resolve.instantiate(_binding(i, names[(i + (i % shift == 0)) % len(names)]), filters, memo)
                        for i in indexes])

    # a change's before and after: some NICs gone, some new, some moved to another filter
    before, after = state(range(0, 60), 7), state(range(5, 70), 5)
    assert any(key[0] == "inet" for key in before), "the mixed filters reach the L3 (mark) tables too"
    for state in (before, after, {}):
        for dev in sorted(set(_inspect.devices(before)) | set(_inspect.devices(after))):
            assert _inspect.device_view(state, dev) == _old.device_view(state, dev)
    views = [_inspect.device_view(before, dev) for dev in _inspect.devices(before)]
    assert any(label.startswith("nft inet") and values for _chains, sets in views for label, values in sets.items())
    assert any(label.startswith("nft bridge") and values for _chains, sets in views for label, values in sets.items())
    rebuilt = _inspect.rebuilt_devices(before, after)
    assert rebuilt == _old.rebuilt_devices(before, after)
    assert 0 < len(rebuilt) < len(set(_inspect.devices(before)) | set(_inspect.devices(after)))
    assert _inspect.rebuilt_devices(before, before) == [] == _old.rebuilt_devices(before, before)
    assert _inspect.rebuilt_devices(before, {}) == _old.rebuilt_devices(before, {})
