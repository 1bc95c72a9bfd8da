# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backend seam: two implementations of one interface, chosen once, converged together."""

import inspect
import re

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import backend as _backend
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ToolMissingError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import transitions as _ops
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import network as _network
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import Binding
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import tables as _tables
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.xtables_sim import HostFake, new_sims

INTERFACE = ("compile_host", "empty", "available", "probe", "notes", "has_l3_rules", "refuse_foreign",
             "network_warnings", "converge", "drifted", "render", "gather", "ledger_of", "device_of_chain")


def test_both_backends_have_the_same_interface():
    shapes = {}
    for name in _backend.BACKENDS:
        impl = _backend.select(name)
        assert impl.NAME == name
        shapes[name] = {f: len(inspect.signature(getattr(impl, f)).parameters) for f in INTERFACE}
    assert shapes["xtables"] == shapes["nftables"]


class NftHost(HostFake):
    """A host with the three xtables tools simulated and an nft that keeps tables by name."""

    def __init__(self, devices):
        super().__init__(new_sims(("filter", "nat", "mangle")), devices)
        self.nft_tables, self.nft_writes = {}, []

    def nft(self, args, data=None):
        if args == ["--version"]:
            return 0, "nftables v1.0.6", ""
        if args[:2] == ["list", "table"]:
            key = tuple(args[2:4])
            if key not in self.nft_tables:
                return 1, "", "Error: No such file or directory\n"
            return 0, self.nft_tables[key], ""
        if args[0] == "-c":
            return 0, "", ""
        assert args == ["-f", "-"], args
        self.nft_writes.append(data)
        for match in re.finditer(r"^delete table (\S+) (\S+)$", data, re.M):
            self.nft_tables.pop(match.groups(), None)
        for match in re.finditer(r"^table (\S+) (\S+) \{\n.*?^\}\n", data, re.M | re.S):
            self.nft_tables[match.groups()] = match.group(0)
        return 0, "", ""

    def tc_csum_available(self):
        return True


FILTER = ("<filter name='f' chain='root'><rule action='drop' direction='out'><mac srcmacaddr='$MAC' match='no'/>"
          "</rule><rule action='accept' direction='in'><tcp dstportstart='22'/></rule></filter>")


def mutate(state):
    state = _ops.define_filter(state, _filterxml.parse_filter_xml(FILTER)[0])
    state = _ops.set_bindings(state, [Binding(portdev="vnet%d" % i, mac="52:54:00:00:00:0%d" % i, filter="f")
                                      for i in range(2)])
    return _ops.set_network(state, _network.network_from_params(
        dict(name="default", bridge="br0", mode="nat", ipv4="192.168.122.1/24"))), []


def test_the_whole_host_is_one_nft_write_and_xtables_is_left_empty(tmp_path):
    host = NftHost({"lo", "br0", "vnet0", "vnet1"})
    store, lock = str(tmp_path / "store"), str(tmp_path / "lock")
    outcome = _service.reconcile(store, mutate, host, False, lock_file=lock, backend="nftables")
    assert outcome.rules_changed and len(host.nft_writes) == 1
    assert set(host.nft_tables) == set(_tables.owned(manage_networks=True))
    assert host.restores == [], "nothing of ours was in xtables, so nothing is restored there"
    assert outcome.rebuilt_devices == ["vnet0", "vnet1"]
    assert any(label.startswith("inet hfw_nwfilter FI-") for label in outcome.changed_chains)
    again = _service.reconcile(store, lambda s: (s, []), host, False, lock_file=lock)
    assert not again.rules_changed and len(host.nft_writes) == 1


def test_switching_backends_is_the_same_converge_both_ways(tmp_path):
    host = NftHost({"lo", "br0", "vnet0", "vnet1"})
    store, lock = str(tmp_path / "store"), str(tmp_path / "lock")
    _service.reconcile(store, mutate, host, False, lock_file=lock, backend="xtables")
    assert host.nft_writes == [] and any(tool == "eb" for tool, _payload in host.restores)
    to_nft = _service.reconcile(store, lambda s: (s, []), host, False, lock_file=lock, backend="nftables")
    assert len(host.nft_writes) == 1 and set(to_nft.payloads) >= {"nft", "eb", "ip4"}
    assert "vnet0" in to_nft.rebuilt_devices
    back = _service.reconcile(store, lambda s: (s, []), host, False, lock_file=lock, backend="xtables")
    assert back.rules_changed and host.nft_tables == {}
    settled = _service.desired_for_host(store, _store.load_store(store), host)
    assert settled.backend is _backend.select("xtables")
    assert not _backend.drifted_all(settled.backend, settled.desired, host, settled.scope)
    host.nft_tables[_tables.L2] = "table bridge hfw_nwfilter {\n\tchain c {\n\t}\n}\n"
    assert not _backend.drifted_all(settled.backend, settled.desired, host, settled.scope), \
        "a table named like ours that the ledger does not hold is someone else's"


def test_an_absent_tool_set_is_not_converged(tmp_path):
    class NoNft(NftHost):
        def nft(self, args, data=None):
            raise ToolMissingError("nft missing")
    host = NoNft({"lo", "br0", "vnet0", "vnet1"})
    outcome = _service.reconcile(str(tmp_path / "s"), mutate, host, False, lock_file=str(tmp_path / "l"))
    assert outcome.rules_changed and "nft" not in outcome.payloads


def test_a_host_without_the_ebtables_tools_defaults_to_nftables(tmp_path):
    class NoEbtables(NftHost):
        def which(self, tool):
            if tool == "eb":
                raise ToolMissingError("ebtables-restore is not installed")
    host = NoEbtables({"lo", "br0", "vnet0", "vnet1"})
    outcome = _service.reconcile(str(tmp_path / "s"), mutate, host, False, lock_file=str(tmp_path / "l"),
                                 fallback=True)
    assert outcome.backend is _backend.select("nftables") and len(host.nft_writes) == 1
    assert host.restores == [] and _backend.choose(str(tmp_path / "s")) == "nftables"
    assert _backend.host_default(NftHost(set())) == "xtables" and _backend.host_default() == "xtables"
