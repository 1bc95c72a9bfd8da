# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Engine error paths that used to reach the user as a bare OSError/ValueError (a traceback)."""

import os

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import backend as _backend  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import network as _network  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import LockError, StoreError, ToolMissingError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner, host_lock


def test_command_that_cannot_start_is_a_tool_error(tmp_path):
    runner = HostRunner(prefix=[str(tmp_path / "no-such-wrapper")])
    with pytest.raises(ToolMissingError) as err:
        runner.list_devices()
    assert "no-such-wrapper" in err.value.msg and err.value.context["argv"][0].endswith("no-such-wrapper")


def test_lock_file_that_cannot_be_created_is_a_lock_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LockError) as err:
        with host_lock(str(blocker / "sub" / "lock"), timeout=0):
            pass
    assert str(blocker) in err.value.msg


def test_list_devices_are_the_names_of_list_links(tmp_path):
    fake_ip = tmp_path / "ip"
    fake_ip.write_text("#!/bin/sh\nprintf '1: lo: <LOOPBACK> mtu 65536\\\\    link/loopback 00:00:00:00:00:00\\n"
                       "7: vnet0@if6: <UP> mtu 1500\\\\    link/ether fe:54:00:00:00:0a brd ff:ff:ff:ff:ff:ff\\n'\n")
    fake_ip.chmod(0o755)
    runner = HostRunner(prefix=["env", "PATH=%s" % tmp_path])
    assert runner.list_devices() == {"lo", "vnet0"}
    assert runner.list_links()["vnet0"] == "fe:54:00:00:00:0a"


def _fail(*_args, **_kwargs):
    raise PermissionError(13, "Permission denied")


def test_backend_record_failure_is_a_store_error(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", _fail)
    with pytest.raises(StoreError) as err:
        _backend.record(str(tmp_path), "nftables", check_mode=False)
    assert "backend" in err.value.msg and "Permission denied" in err.value.msg


def test_backend_record_writes_both_lines_with_the_store_mode(tmp_path):
    config_dir = tmp_path / "store"
    assert _backend.record(str(config_dir), "nftables", check_mode=False, fallback=True)
    assert (config_dir / "backend").read_text() == "nftables\nfallback\n"
    assert (config_dir.stat().st_mode & 0o777) == 0o755
    assert _backend.stored(str(config_dir)) == "nftables" and _backend.fallback_allowed(str(config_dir))
    assert sorted(os.listdir(config_dir)) == ["backend"]


def test_store_delete_failure_is_a_store_error(tmp_path, monkeypatch):
    path = tmp_path / "x.xml"
    path.write_text("x")
    monkeypatch.setattr(os, "unlink", _fail)
    with pytest.raises(StoreError) as err:
        _store.atomic_replace(str(path), None)
    assert str(path) in err.value.msg


def test_unreadable_store_file_is_a_store_error(tmp_path, monkeypatch):
    (tmp_path / "filters").mkdir()
    (tmp_path / "filters" / "f.xml").write_text("<filter name='f' chain='root'/>")
    monkeypatch.setattr(_store.os, "open", _fail)
    with pytest.raises(StoreError) as err:
        _store.load_store(str(tmp_path))
    monkeypatch.undo()
    assert "f.xml" in err.value.msg


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_hook_config_refuses_timeouts_that_never_end(value):
    from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import hook as _hook  # noqa: E402
    with pytest.raises(_hook.HookError, match="lock_timeout"):
        _hook.parse_conf("lock_timeout = %s\n" % value)
    assert _hook.parse_conf("lock_timeout = 2.5\n")["lock_timeout"] == "2.5"


@pytest.mark.parametrize("argv", [["--watch", "nan"], ["--watch", "inf"], ["--lock-timeout", "nan"],
                                  ["--lock-timeout", "inf"], ["--lock-timeout", "-1"]])
def test_reapply_refuses_timeouts_that_never_end(argv):
    from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import reapply as _reapply  # noqa: E402
    with pytest.raises(_reapply.UsageError):
        _reapply.parse_args(argv)
    assert _reapply.parse_args(["--watch", "5", "--lock-timeout", "0"]).watch == 5.0


def test_nft_set_elements_compare_as_integers_whatever_their_printed_form():
    from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import converge as _nft  # noqa: E402
    live = "table bridge t {\n\tset s {\n\t\ttype mark\n\t\telements = { 0x0000000a, 010 }\n\t}\n}\n"
    assert _nft.parse_table(live) == {("set", "s"): ("type mark", "elements = 10, 10")}


def test_check_mode_never_probes_tc_csum():
    """The probe adds a tc action: check mode must leave the kernel alone and still warn."""
    class NoProbe:
        def tc_csum_available(self):
            raise AssertionError("check mode ran the tc probe")

    net = _network.network_from_params(dict(name="n", bridge="br0", mode="nat", ipv4="192.168.5.1/24", dhcp=True))
    warnings = _backend.select("nftables").network_warnings([net], NoProbe(), check_mode=True)
    assert len(warnings) == 1 and "DHCP on br0" in warnings[0]
