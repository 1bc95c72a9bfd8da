"""The re-apply command and the qemu hook on a host whose Python lacks lxml and netaddr.

They run under an interpreter of this machine that has neither (pyenv's), against a store the
engine wrote: the command names what is missing (not "store file ... is corrupt"), and the hook
lets a guest without bindings start while it still refuses one whose rules it cannot apply.
"""

import os
import pathlib
import subprocess

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions
from ansible_collections.hypervisor.firewall.tests.unit.plugins.modules.test_guest_nic_filter import (
    MAC0, default_filter, define, new_host, params)

ROOT = pathlib.Path(__file__).resolve().parents[3]
MISSING = "the Python libraries lxml and netaddr are missing for"


def bare_python():
    """An interpreter without lxml and netaddr, or skip."""
    for version in sorted(pathlib.Path(os.path.expanduser("~/.pyenv/versions")).glob("3.*")):
        python = version / "bin" / "python3"
        if python.exists() and subprocess.run([str(python), "-c", "import lxml"], capture_output=True,
                                              check=False).returncode != 0 and subprocess.run(
                [str(python), "-c", "import netaddr"], capture_output=True, check=False).returncode != 0:
            return str(python)
    pytest.skip("no Python without lxml and netaddr on this machine")


@pytest.fixture
def store(tmp_path):
    """A store with one guest binding (web1) written by the engine."""
    runner = new_host()
    runner.list_links = lambda: {}  # web1 is not running: its binding is stored, with no tap
    define(tmp_path, runner, default_filter("no-mac-spoofing"))
    _actions.guest_nic_filter(params(tmp_path, bindings=[dict(domain="web1", mac=MAC0, filter="no-mac-spoofing")]),
                              check_mode=False, runner=runner)
    conf = tmp_path / "hook.conf"
    conf.write_text("config_dir = %s\n" % (tmp_path / "store"))
    return conf


def hook(conf, domain, operation, xml="<domain><devices><interface><target dev='vnet3'/></interface></devices></domain>"):
    env = dict(os.environ, HYPERVISOR_FIREWALL_HOOK_CONF=str(conf))
    return subprocess.run([bare_python(), str(ROOT / "bin" / "hypervisor-firewall-qemu-hook"), domain, operation,
                           "begin", "-"], input=xml, env=env, capture_output=True, text=True, check=False)


def test_reapply_says_what_is_missing(store, tmp_path):
    proc = subprocess.run([bare_python(), str(ROOT / "bin" / "hypervisor-firewall-reapply"), "--config-dir",
                           str(tmp_path / "store"), "--check"], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert MISSING in proc.stderr and "install python3-lxml python3-netaddr" in proc.stderr
    assert "corrupt" not in proc.stderr


def test_hook_lets_a_guest_without_bindings_start(store):
    proc = hook(store, "db1", "start")
    assert proc.returncode == 0 and MISSING in proc.stderr and "db1 has no bindings here" in proc.stderr


def test_hook_refuses_a_bound_guest_it_cannot_filter(store):
    proc = hook(store, "web1", "start")
    assert proc.returncode == 1 and "start web1" in proc.stderr and "its bindings cannot be applied" in proc.stderr


def test_hook_never_fails_a_running_bound_guest(store):
    assert hook(store, "web1", "reconnect").returncode == 0


def test_hook_without_a_store_lets_guests_start(tmp_path):
    conf = tmp_path / "hook.conf"
    conf.write_text("config_dir = %s\n" % (tmp_path / "nothing"))
    assert hook(conf, "web1", "start").returncode == 0
