# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ownership is what the store recorded writing (its ledger), not what a chain's name looks like."""

import json
import os

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import (  # noqa: E402
    DeviceNameError, OwnershipError,
)
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import hostile_host as H
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.xtables_sim import new_sims

# an admin's SSH guard named like a guest's host-input chain, and docker jumping to a lookalike
LOOKALIKES = {
    "eb": H.FOREIGN["eb"] + ":I-admin-mac ACCEPT\n-A I-admin-mac -j RETURN\n",
    "ip4": "*filter\n:HI-ssh - [0:0]\n:FI-trusted - [0:0]\n:DOCKER-USER - [0:0]\n-A INPUT -j HI-ssh\n"
           "-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j FI-trusted\n-A FI-trusted -j RETURN\n"
           "-A HI-ssh -s 10.0.0.1/32 -p tcp -m tcp --dport 22 -j ACCEPT\n-A HI-ssh -p tcp -m tcp --dport 22 -j DROP\n"
           "COMMIT\n",
    "ip6": H.FOREIGN["ip6"],
}
DEVICES = H.DEVICES + ("ssh", "gw", "gw-arp")


def lookalike_host():
    return H.FakeHost(new_sims(foreign=LOOKALIKES, tool_class=H.LimitedSimTool), devices=DEVICES)


def foreign_lines(host):
    """Every line of every table that mentions a lookalike chain."""
    names = ("HI-ssh", "FI-trusted", "DOCKER-USER", "I-admin-mac")
    return {tool: [line for line in text.splitlines() if any(n in line for n in names)]
            for tool, text in host.dumps().items()}


def test_lookalike_chains_survive_every_operation(tmp_path):
    root, host = str(tmp_path), lookalike_host()
    before = foreign_lines(host)
    assert before["ip4"] and before["eb"]
    H.populate(root, host)  # every default filter defined, two NICs bound, a network
    assert foreign_lines(host) == before
    _actions.nwfilter(H.filter_params(root, xml="<filter name='more' chain='root'/>"), False, host)
    _actions.guest_nic_filter(H.nic_params(root, state="absent", portdev="vnet1"), False, host)
    _actions.guest_nic_filter(H.nic_params(root, bindings=[dict(portdev="vnet2", mac="52:54:00:00:00:12",
                                                                filter="clean-traffic",
                                                                parameters={"IP": "192.0.2.12"})],
                                           exclusive=True), False, host)
    _actions.virt_network_fw(H.net_params(root, state="absent"), False, host)
    assert foreign_lines(host) == before
    recorded = _store.load_store(os.path.join(root, "store")).ledger
    assert recorded.has_chain("eb", "nat", "libvirt-I-vnet2") and not recorded.has_chain("ip4", "filter", "HI-ssh")
    assert not recorded.has_chain("eb", "nat", "libvirt-I-vnet1"), "removed chains leave the ledger"


def test_a_needed_name_held_by_a_foreign_chain_is_refused_naming_it(tmp_path):
    root, host = str(tmp_path), lookalike_host()
    H.populate(root, host)
    snapshot = H.snapshot(root, host)
    with pytest.raises(OwnershipError) as err:
        _actions.guest_nic_filter(H.nic_params(root, portdev="ssh", mac="52:54:00:00:00:30", filter="web-in",
                                               parameters={"IP": "192.0.2.30"}), False, host)
    assert "HI-ssh" in err.value.msg and "did not write it" in err.value.msg
    assert "rename or remove that chain" in err.value.msg
    assert H.snapshot(root, host) == snapshot


def test_taps_whose_chain_names_would_collide_are_refused(tmp_path):
    root, host = str(tmp_path), H.FakeHost(devices=DEVICES)
    H.populate(root, host)
    snapshot = H.snapshot(root, host)
    pair = [dict(portdev=dev, mac="52:54:00:00:00:%02x" % (40 + n), filter="clean-traffic",
                 parameters={"IP": "192.0.2.%d" % (40 + n)}) for n, dev in enumerate(("gw", "gw-arp"))]
    with pytest.raises(DeviceNameError) as err:
        _actions.guest_nic_filter(H.nic_params(root, bindings=pair), False, host)
    assert "'gw' and 'gw-arp'" in err.value.msg and "rename one of them" in err.value.msg
    assert H.snapshot(root, host) == snapshot


def _drop_ledger(config_dir):
    path = os.path.join(config_dir, "store.json")
    with open(path, encoding="utf-8") as handle:
        doc = json.load(handle)
    doc["ledger"] = None
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(doc, handle)


def test_a_store_without_ledger_owns_what_its_bindings_imply_and_records_it(tmp_path):
    root, host = str(tmp_path), lookalike_host()
    H.populate(root, host)
    config_dir = os.path.join(root, "store")
    _drop_ledger(config_dir)  # as a store kept before the ledger existed
    before = foreign_lines(host)
    # vnet1's chains were written before the ledger: the store's binding says they are ours; vnet2's
    # are new in this very run (claimed) and must read back as ours
    vnet2 = dict(portdev="vnet2", mac="52:54:00:00:00:12", filter="clean-traffic", parameters={"IP": "192.0.2.12"})
    _actions.guest_nic_filter(H.nic_params(root, bindings=[vnet2]), False, host)
    assert _store.load_store(config_dir).ledger.has_chain("eb", "nat", "libvirt-I-vnet2")
    _drop_ledger(config_dir)
    _actions.guest_nic_filter(H.nic_params(root, state="absent", portdev="vnet1"), False, host)
    assert not any("vnet1" in line for text in host.dumps().values() for line in text.splitlines())
    assert foreign_lines(host) == before
    recorded = _store.load_store(config_dir).ledger
    assert recorded is not None and recorded.has_chain("eb", "nat", "libvirt-I-vnet0")
    assert not _actions.guest_nic_filter(H.nic_params(root, bindings=[dict(
        portdev="vnet0", mac="52:54:00:00:00:10", filter="clean-traffic", parameters={"IP": "192.0.2.10"})]),
        False, host)["changed"]


def test_a_stale_chain_of_ours_another_tool_jumps_to_is_handed_over_not_a_failure_for_ever(tmp_path):
    root, host = str(tmp_path), H.FakeHost(devices=DEVICES + ("trusted",))
    H.populate(root, host)
    trusted = dict(portdev="trusted", mac="52:54:00:00:00:50", filter="web-in", parameters={"IP": "192.0.2.50"})
    _actions.guest_nic_filter(H.nic_params(root, bindings=[trusted]), False, host)
    assert _store.load_store(os.path.join(root, "store")).ledger.has_chain("ip4", "filter", "FI-trusted")
    # docker starts using our chain
    rc, _out, err = host.sims["ip4"].restore("*filter\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -j FI-trusted\nCOMMIT\n")
    assert rc == 0, err
    kept = [line for line in host.dumps()["ip4"].splitlines() if "FI-trusted" in line and "libvirt" not in line]
    _actions.guest_nic_filter(H.nic_params(root, state="absent", portdev="trusted"), False, host)
    assert [line for line in host.dumps()["ip4"].splitlines() if "FI-trusted" in line] == kept
    assert not _store.load_store(os.path.join(root, "store")).ledger.has_chain("ip4", "filter", "FI-trusted")
    # every later run goes through, and the chain is the other tool's from now on
    assert not _actions.guest_nic_filter(H.nic_params(root, state="absent", portdev="trusted"), False, host)["changed"]
    _actions.nwfilter(H.filter_params(root, xml="<filter name='later' chain='root'/>"), False, host)
    assert [line for line in host.dumps()["ip4"].splitlines() if "FI-trusted" in line] == kept
