# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adopting a libvirt host laid out under a temporary root: import, store transition, errors."""

import os
from dataclasses import replace

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import adopt as _adopt  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import (
    FilterXMLError, ResolveError, StoreError)
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import libvirt_root as lr

MAC0, MAC1 = "52:54:00:6a:00:10", "52:54:00:6a:00:11"
BINDINGS = [("vnet0", MAC0, "clean-traffic", (("IP", "192.168.122.10"), ("MAC", MAC0))),
            ("vnet1", MAC1, "clean-traffic", ())]  # vnet1: libvirtd learns its IP


@pytest.fixture
def root(tmp_path):
    path = str(tmp_path / "host")
    lr.make_root(path, BINDINGS)
    return path


def imported(root, **extra):
    return _adopt.import_documents(_adopt.read_documents(root), extra or {"vnet1": {"IP": "192.168.122.11"}})


def test_import_reads_filters_with_libvirts_uuids_bindings_and_running_or_autostarted_networks(root):
    host = imported(root)
    names = sorted(n[:-4] for n in os.listdir(lr.filter_source_dir()) if n.endswith(".xml"))
    assert sorted(host.filters) == names
    assert all(host.filters[n].uuid == lr.filter_uuid(n) for n in names)
    assert sorted(host.bindings) == ["vnet0", "vnet1"]
    assert host.bindings["vnet0"].owner_name == "guest0" and host.bindings["vnet0"].mac == MAC0
    assert host.bindings["vnet1"].parameters == (("IP", "192.168.122.11"),)
    assert sorted(host.networks) == ["default", "routed"]
    # a running network comes from its status file: its config was edited since (no DHCP there)
    assert host.networks["default"].dhcp
    assert host.networks["routed"].mode == "route" and host.networks["routed"].forward_dev == "eth1"
    skipped = {os.path.basename(p): reason for p, reason in host.skipped}
    assert set(skipped) == {"host-bridge.xml", "spare.xml"}
    assert "forward mode bridge" in skipped["host-bridge.xml"] and "autostarted" in skipped["spare.xml"]
    assert host.sources[("bindings", "vnet0")] == os.path.join(root, "run/libvirt/nwfilter-binding/vnet0.xml")


def test_adopt_into_an_empty_store_holds_everything_and_every_binding_resolves(root):
    host = imported(root)
    state = _adopt.adopt(_store.StoreState(), host)
    assert state.filters == host.filters and state.bindings == host.bindings
    assert state.networks == host.networks and state.manage_networks
    # what is stored loads back identically: libvirt's documents survive our canonical form
    for name, flt in state.filters.items():
        assert _filterxml.parse_filter_xml(_store.serialize("filters", flt))[0] == flt
    again = _adopt.adopt(state, host)
    assert again == state


def test_without_networks_the_network_chains_stay_libvirtds(root):
    host = _adopt.import_documents(_adopt.read_documents(root, networks=False), {"vnet1": {"IP": "10.0.0.1"}})
    state = _adopt.adopt(_store.StoreState(), host)
    assert state.networks == {} and not state.manage_networks


def test_a_learned_ip_must_be_given_and_the_error_names_the_file(root):
    host = _adopt.import_documents(_adopt.read_documents(root))
    with pytest.raises(ResolveError) as err:
        _adopt.adopt(_store.StoreState(), host)
    path = os.path.join(root, "run/libvirt/nwfilter-binding/vnet1.xml")
    assert err.value.msg.startswith(path + ": ") and "binding_parameters: {vnet1: {NAME: value}}" in err.value.msg
    assert err.value.context["portdev"] == "vnet1"


def test_binding_parameters_for_a_device_libvirtd_does_not_filter_are_refused(root):
    with pytest.raises(StoreError, match="binding_parameters names vnet9, which libvirtd does not filter"):
        imported(root, vnet9={"IP": "10.0.0.9"})


def test_a_stored_filter_equal_but_for_its_uuid_is_kept(root):
    host = imported(root)
    ours = replace(host.filters["allow-arp"], uuid="11111111-2222-4333-8444-555555555555")
    state = _adopt.adopt(_store.StoreState(filters={"allow-arp": ours}), host)
    assert state.filters["allow-arp"].uuid == ours.uuid


def test_a_different_stored_definition_fails_unless_overwrite(root):
    host = imported(root)
    ours = replace(host.filters["allow-arp"], uuid="11111111-2222-4333-8444-555555555555", priority=-400)
    start = _store.StoreState(filters={"allow-arp": ours})
    with pytest.raises(StoreError) as err:
        _adopt.adopt(start, host)
    assert "filter allow-arp from %s/etc/libvirt/nwfilter/allow-arp.xml differs" % root in err.value.msg
    assert "overwrite=true" in err.value.msg
    state = _adopt.adopt(start, host, overwrite=True)
    assert state.filters["allow-arp"] == host.filters["allow-arp"]


def test_a_different_stored_binding_fails_unless_overwrite(root):
    host = imported(root)
    start = _store.StoreState(bindings={"vnet0": replace(host.bindings["vnet0"], mac="52:54:00:00:00:99")})
    with pytest.raises(StoreError, match="binding of vnet0 from .*vnet0.xml differs"):
        _adopt.adopt(start, host)
    assert _adopt.adopt(start, host, overwrite=True).bindings["vnet0"] == host.bindings["vnet0"]


def _rewrite(path, old, new):
    text = open(path, encoding="utf-8").read()
    assert old in text
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.replace(old, new))


def test_an_unsupported_network_feature_names_the_file(root):
    path = os.path.join(root, "etc/libvirt/qemu/networks/routed.xml")
    _rewrite(path, "<ip address='10.20.0.1' prefix='24'/>",
             "<ip address='10.20.0.1' prefix='24'><dhcp><range start='10.20.0.2' end='10.20.0.9'/></dhcp></ip>"
             "<ip address='10.21.0.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01' ip='10.21.0.5'/></dhcp></ip>")
    with pytest.raises(FilterXMLError) as err:
        imported(root)
    assert err.value.msg.startswith(path + ": ") and "DHCP ranges or hosts on more than one IPv4" in err.value.msg
    assert err.value.context["path"] == path


def test_a_status_file_without_a_network_is_refused(root):
    path = os.path.join(root, "run/libvirt/network/default.xml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("<networkstatus><floor sum='0'/></networkstatus>")
    with pytest.raises(FilterXMLError, match="default.xml: <networkstatus> holds no <network>"):
        imported(root)


def test_a_binding_file_named_after_another_device_is_refused(root):
    folder = os.path.join(root, "run/libvirt/nwfilter-binding")
    os.rename(os.path.join(folder, "vnet1.xml"), os.path.join(folder, "vnet7.xml"))
    with pytest.raises(StoreError, match="vnet7.xml describes binding of portdev 'vnet1', not 'vnet7'"):
        imported(root)


def test_a_malformed_filter_names_its_file(root):
    path = os.path.join(root, "etc/libvirt/nwfilter/allow-arp.xml")
    _rewrite(path, "</filter>", "")
    with pytest.raises(FilterXMLError) as err:
        imported(root)
    assert err.value.msg.startswith(path + ": malformed XML")


def test_an_empty_root_imports_nothing(tmp_path):
    host = _adopt.import_documents(_adopt.read_documents(str(tmp_path)))
    assert (host.filters, host.bindings, host.networks, host.skipped) == ({}, {}, {}, ())
    with pytest.raises(StoreError, match="is not a directory"):
        _adopt.read_documents(str(tmp_path / "missing"))


def test_libvirtds_binding_status_files_are_read(root):
    # libvirt (virNWFilterBindingObjSave) writes each live binding inside <filterbindingstatus>
    path = os.path.join(root, "run/libvirt/nwfilter-binding/vnet0.xml")
    text = lr.binding_text("vnet0", MAC0, "clean-traffic", (("IP", "192.168.122.10"),))
    inner = text.split("-->", 1)[-1].strip()
    with open(path, "w") as handle:
        handle.write("<filterbindingstatus>\n%s\n</filterbindingstatus>\n" % inner)
    host = imported(root)
    assert host.bindings["vnet0"].mac == MAC0 and host.bindings["vnet0"].parameters == (("IP", "192.168.122.10"),)
    with open(path, "w") as handle:
        handle.write("<filterbindingstatus>%s%s</filterbindingstatus>" % (inner, inner))
    with pytest.raises(FilterXMLError, match="vnet0.xml.*2 <filterbinding> elements"):
        imported(root)
