# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run that changes nothing on a host without a store leaves it without one."""

import os

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import network as _network
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.xtables_sim import HostFake, new_sims


def _unchanged(state):
    return state, []


def test_a_no_op_on_a_decommissioned_host_creates_no_store(tmp_path):
    store = str(tmp_path / "store")
    outcome = _service.reconcile(store, _unchanged, HostFake(new_sims(ip_tables=("filter", "nat", "mangle")), {"lo", "br0", "vnet0"}), False,
                                 lock_file=str(tmp_path / "lock"))
    assert not outcome.changed
    assert not os.path.exists(_store.document_path(store))


def test_a_store_with_content_still_records_its_ledger(tmp_path):
    store = str(tmp_path / "store")

    def add_network(state):
        net = _network.network_from_params({"name": "lab", "bridge": "br0", "mode": "isolated",
                                            "ipv4": ["192.168.50.1/24"]})
        return state.with_changes(networks={net.name: net}, manage_networks=True), []

    host = HostFake(new_sims(ip_tables=("filter", "nat", "mangle")), {"lo", "br0", "vnet0"})
    _service.reconcile(store, add_network, host, False, lock_file=str(tmp_path / "lock"))
    recorded = _store.load_store(store).ledger
    assert recorded is not None and recorded.chains
