# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Faults in the middle of a module run (simulated kernel): store and kernel move together."""

import errno
import json
import os
import shutil
import tempfile

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ApplyError, StoreError, ToolMissingError
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import hostile_host as H

NEW_NIC = dict(portdev="vnet2", mac="52:54:00:00:00:22", filter="web-in", parameters={"IP": "192.0.2.22"})


@pytest.fixture
def world(tmp_path):
    root, host = str(tmp_path), H.FakeHost()
    H.populate(root, host)
    host.restores.clear()
    return root, host


def test_last_tool_rejects_everything_rolls_back(world):
    root, host = world
    before = H.snapshot(root, host)
    host.fail_on = {"ip6"}
    with pytest.raises(ApplyError, match="rolled back"):
        _actions.guest_nic_filter(H.nic_params(root, **NEW_NIC), False, host)
    assert [tool for tool, payload in host.restores][:3] == ["eb", "ip4", "ip6"]
    assert H.snapshot(root, host) == before


def test_missing_tool_is_reported_before_anything_changes(world):
    root, host = world
    before = H.snapshot(root, host)
    host.missing = {"eb"}
    with pytest.raises(ToolMissingError):
        _actions.guest_nic_filter(H.nic_params(root, **NEW_NIC), False, host)
    assert host.restores == [] and H.snapshot(root, host) == before


def test_store_write_failure_changes_nothing(world, monkeypatch):
    root, host = world
    before = H.snapshot(root, host)
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(_store.os, "replace", replace)
    with pytest.raises(StoreError, match="No space left"):
        _actions.guest_nic_filter(H.nic_params(root, bindings=[NEW_NIC, dict(NEW_NIC, portdev="vnet9")]), False, host)
    monkeypatch.setattr(_store.os, "replace", real)
    assert len(calls) == 1, "two bindings are one change: one rename"
    assert host.restores == [] and H.snapshot(root, host) == before


def test_failed_first_network_leaves_no_networks_dir(tmp_path):
    # networks/ existing means "the LIBVIRT_* chains are ours": a rolled-back run must not leave it
    root, host = str(tmp_path), H.FakeHost()
    host.fail_on = {"ip4"}
    with pytest.raises(ApplyError):
        _actions.virt_network_fw(H.net_params(root), False, host)
    assert not os.path.exists(os.path.join(root, "store"))


NOBODY = 65534


def _refused_by_read_only_store(root, host):
    """In this (child) process: make the store read-only, define a filter, report the outcome."""
    before = H.snapshot(root, host)
    os.chmod(os.path.join(root, "store"), 0o555)
    try:
        _actions.nwfilter(H.filter_params(root, xml="<filter name='fresh'/>"), False, host)
        outcome = "no error"
    except StoreError as exc:
        outcome = "StoreError: " + exc.msg
    except Exception as exc:  # reported to the parent, which fails the test with it
        outcome = "%s: %s" % (type(exc).__name__, exc)
    finally:
        os.chmod(os.path.join(root, "store"), 0o755)
    return outcome, H.snapshot(root, host) == before


def test_read_only_store_changes_nothing(tmp_path):
    # Root ignores directory permissions, and the test command runs as root: the call runs in a
    # child that drops to nobody (owning the world), so the read-only directory really refuses it.
    root = tempfile.mkdtemp(prefix="hfw-ro-", dir="/tmp")
    try:
        host = H.FakeHost()
        H.populate(root, host)
        host.restores.clear()
        if os.geteuid() == 0:
            os.chmod(root, 0o755)
            for dirpath, dirnames, filenames in os.walk(root):
                for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
                    os.lchown(name, NOBODY, NOBODY)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            status = 1
            try:
                os.close(read_end)
                if os.geteuid() == 0:
                    os.setgroups([])
                    os.setgid(NOBODY)
                    os.setuid(NOBODY)
                with os.fdopen(write_end, "w") as report:
                    json.dump(_refused_by_read_only_store(root, host), report)
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        with os.fdopen(read_end) as report:
            text = report.read()
        _pid, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "child failed: %r" % text
        outcome, unchanged = json.loads(text)
        assert outcome.startswith("StoreError: ") and "store.json" in outcome, outcome
        assert "Permission denied" in outcome, outcome
        assert unchanged, "a refused write changed the store or the kernel"
    finally:
        shutil.rmtree(root)
