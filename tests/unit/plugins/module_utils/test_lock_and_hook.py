# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host lock cannot be held or redirected by another user; the qemu hook never blocks a guest
that has no binding; names never end in a newline."""

import io
import os

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import hook as _hook  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import (  # noqa: E402
    EngineError, LockError,
)
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.defaults import DEFAULT_LOCK_FILE  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import host_lock  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _fx  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import network as _network  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import schema as _schema  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.devices import check_device  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import Binding  # noqa: E402
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import hostile_host as H

NOBODY = 65534


# ---------------------------------------------------------------- the lock


def test_the_default_lock_is_not_in_a_directory_every_user_can_write():
    assert os.path.dirname(DEFAULT_LOCK_FILE) not in ("/run/lock", "/tmp", "/var/tmp")


def test_a_lock_in_a_world_writable_directory_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with pytest.raises(LockError) as err:
        with host_lock(str(shared / "x.lock"), 1):
            pass
    assert "other users" in err.value.msg and "only root can write" in err.value.msg
    assert not (shared / "x.lock").exists()


def test_a_planted_link_is_never_followed(tmp_path):
    target = tmp_path / "etc-shadow-stand-in"
    os.symlink(str(target), str(tmp_path / "lock"))
    with pytest.raises(LockError, match="symbolic link: remove it"):
        with host_lock(str(tmp_path / "lock"), 1):
            pass
    assert not target.exists(), "root created the link's target"


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file of another user needs root")
def test_a_lock_file_of_another_user_is_refused(tmp_path):
    path = tmp_path / "lock"
    path.write_text("")
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(LockError, match="owned by uid %d" % NOBODY):
        with host_lock(str(path), 1):
            pass


def test_a_private_lock_is_created_and_taken(tmp_path):
    path = tmp_path / "run" / "lock"
    with host_lock(str(path), 1):
        assert (os.stat(path).st_mode & 0o777) == 0o600
        assert (os.stat(path.parent).st_mode & 0o022) == 0


# ---------------------------------------------------------------- the hook

MAC_A = "52:54:00:00:00:0a"
GUEST = Binding(portdev=None, mac=MAC_A, filter="f", owner_name="guest-a")
FILTER = "<filter name='f' chain='root'><rule action='drop' direction='out'><mac srcmacaddr='$MAC' match='no'/>" \
         "</rule></filter>"


class LinkedHost(H.FakeHost):
    """The simulated host plus the tap MACs guest placement asks for."""

    def list_links(self):
        return {dev: ("fe:54:00:00:00:0a" if dev == "vnet0" else None) for dev in self.devices}


def hook_env(tmp_path, bindings):
    config_dir = str(tmp_path / "store")
    state = _store.StoreState(filters={"f": _fx.parse_filter_xml(FILTER)[0]}, bindings={b.key: b for b in bindings})
    _store.write_changes(config_dir, _store.StoreState(), state)
    conf = tmp_path / "hook.conf"
    conf.write_text("config_dir = %s\nlock_file = %s\nlock_timeout = 1\n" % (config_dir, tmp_path / "lock"))
    return {_hook.CONF_ENV: str(conf)}


def domain_xml(name, tap, metadata=0):
    meta = "<metadata><x>%s</x></metadata>" % ("m" * 1000 + "\n") * (metadata // 1001) if metadata else ""
    return ("<domain><name>%s</name>%s<devices><interface type='bridge'><mac address='%s'/><target dev='%s'/>"
            "</interface></devices></domain>" % (name, meta, MAC_A if name == "guest-a" else "52:54:00:00:00:0b", tap))


def start(name, xml, env, runner):
    return _hook.main([name, "start", "begin", "-"], io.StringIO(xml), env, runner=runner)


@pytest.mark.parametrize("xml", [domain_xml("other", "vnet5", metadata=2 * 1024 * 1024), domain_xml("other", "vnet+"),
                                 domain_xml("other", "a-name-far-too-long-for-a-tap"), "<domain><name>other"])
def test_a_guest_without_bindings_starts_whatever_its_xml(tmp_path, capsys, xml):
    env = hook_env(tmp_path, [GUEST])
    host = LinkedHost()
    assert start("other", xml, env, host) == 0
    assert host.restores == [], "nothing of ours concerns it"
    assert capsys.readouterr().out == ""


def test_a_guest_with_bindings_and_big_metadata_gets_its_rules(tmp_path):
    env = hook_env(tmp_path, [GUEST])
    host = LinkedHost()
    assert start("guest-a", domain_xml("guest-a", "vnet0", metadata=2 * 1024 * 1024), env, host) == 0
    assert "libvirt-I-vnet0" in host.dumps()["eb"]


def test_a_guest_with_bindings_whose_nics_cannot_be_read_is_refused(tmp_path, capsys):
    env = hook_env(tmp_path, [GUEST])
    assert start("guest-a", domain_xml("guest-a", "vnet+"), env, LinkedHost()) == 1
    assert "has bindings here" in capsys.readouterr().err


# ---------------------------------------------------------------- names end where they end


NAME_CHECKS = {
    "device": lambda n: check_device("vnet1" + n),
    "store-object": lambda n: _store.check_object_name("filters", "f" + n),
    "mac": lambda n: _schema.canonical_value("mac", "srcmacaddr", "52:54:00:00:00:01" + n),
    "network": lambda n: _network.network_from_params(dict(name="net" + n, bridge="virbr0", mode="isolated",
                                                           ipv4="10.0.0.1/24")),
    "parameter": lambda n: _fx.filter_from_dict({"name": "f", "chain": "root", "entries": [
        {"filterref": {"filter": "g", "parameters": [{"name": "IP" + n, "value": "1"}]}}]}),
    "value": lambda n: _fx.filter_from_dict({"name": "f", "chain": "root", "entries": [
        {"filterref": {"filter": "g", "parameters": [{"name": "IP", "value": "10.0.0.1" + n}]}}]}),
}


@pytest.mark.parametrize("kind", sorted(NAME_CHECKS))
def test_a_trailing_newline_is_not_part_of_a_name(kind):
    NAME_CHECKS[kind]("")  # the name itself is fine
    with pytest.raises(EngineError):
        NAME_CHECKS[kind]("\n")
