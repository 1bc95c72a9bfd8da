# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host store: one commit per change, killed anywhere it reads back, writes what it reads."""

import errno
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import hook as _hook  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import (  # noqa: E402
    EngineError, StoreError,
)
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import KILL_AT_ENV  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _fx  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import Binding  # noqa: E402
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import hostile_host as H

FILTER = "<filter name='f' chain='root'><rule action='drop' direction='out'><mac srcmacaddr='$MAC' match='no'/>" \
         "</rule></filter>"
# the directory holding ansible_collections/, as this test imported it
COLLECTIONS = _store.__file__.split(os.sep + "ansible_collections" + os.sep, maxsplit=1)[0]


def flt(xml=FILTER):
    return _fx.parse_filter_xml(xml)[0]


def bindings(count, filter_name="f"):
    found = {}
    for n in range(count):
        b = Binding(portdev="vnet%d" % n, mac="52:54:00:00:%02x:%02x" % (n // 256, n % 256), filter=filter_name)
        found[b.key] = b
    return found


def state_of(count):
    return _store.StoreState(filters={"f": flt()}, bindings=bindings(count))


# ---------------------------------------------------------------- one unit, whatever N


@pytest.mark.parametrize("count", [1, 100, 1000])
def test_a_change_is_one_rename_and_two_fsyncs_whatever_it_touches(tmp_path, monkeypatch, count):
    calls = {"fsync": 0, "replace": 0}
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls["fsync"] += 1
        return real_fsync(fd)

    def replace(src, dst):
        calls["replace"] += 1
        return real_replace(src, dst)

    monkeypatch.setattr(_store.os, "fsync", fsync)
    monkeypatch.setattr(_store.os, "replace", replace)
    _store.write_changes(str(tmp_path), _store.StoreState(), state_of(count))
    monkeypatch.undo()
    assert calls == {"fsync": 2, "replace": 1}
    assert _store.load_store(str(tmp_path)) == state_of(count)


KILLED_WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import store as _store
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _fx
config_dir = sys.argv[2]
before = _store.load_store(config_dir)
filters = dict(before.filters)
# a bound filter redefined to reference a new one: two objects, one change
filters["g"] = _fx.parse_filter_xml("<filter name='g' chain='root'/>")[0]
filters["f"] = _fx.parse_filter_xml("<filter name='f' chain='root'><filterref filter='g'/></filter>")[0]
_store.write_changes(config_dir, before, before.with_changes(filters=filters))
"""


def run_killed_writer(config_dir, fault):
    env = dict(os.environ)
    env.pop(KILL_AT_ENV, None)
    if fault:
        env[KILL_AT_ENV] = fault
    return subprocess.run([sys.executable, "-c", KILLED_WRITER, COLLECTIONS, config_dir], env=env,
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("legacy", [False, True], ids=["document", "migration"])
def test_a_kill_at_the_rename_leaves_the_old_store_and_the_next_writer_converges(tmp_path, legacy):
    config_dir = str(tmp_path / "store")
    if legacy:
        write_legacy(config_dir, stray=False)
    else:
        _store.write_changes(config_dir, _store.StoreState(), state_of(3))
    before = _store.load_store(config_dir)
    killed = run_killed_writer(config_dir, _store_fault(1))
    assert killed.returncode == -9, killed.stderr
    assert _store.load_store(config_dir) == before, "the kill came before the one rename: nothing changed"
    finished = run_killed_writer(config_dir, None)
    assert finished.returncode == 0, finished.stderr
    after = _store.load_store(config_dir)
    assert after.filters["f"].references == ("g",) and set(after.bindings) == set(before.bindings)
    assert not after.legacy and os.listdir(config_dir) == ["store.json"]


def _store_fault(nth):
    """The runner's kill hook counts every fault point; this writer runs no tool, so each is a rename."""
    return str(nth)


def test_the_fault_hook_counts_its_points(tmp_path):
    config_dir = str(tmp_path / "store")
    _store.write_changes(config_dir, _store.StoreState(), state_of(1))
    # this change renames once: asking for the second rename lets it finish
    assert run_killed_writer(config_dir, _store_fault(2)).returncode == 0
    assert "g" in _store.load_store(config_dir).filters


# ---------------------------------------------------------------- migration of format 1


def write_legacy(config_dir, stray=True):
    """A store as format 1 wrote it: one file per object."""
    for kind in ("filters", "bindings", "networks"):
        os.makedirs(os.path.join(config_dir, kind))
    with open(os.path.join(config_dir, "format"), "w", encoding="utf-8") as handle:
        handle.write(_store.LEGACY_FORMAT_LINE + "\n")
    with open(os.path.join(config_dir, "filters", "f.xml"), "w", encoding="utf-8") as handle:
        handle.write(_fx.format_filter_xml(flt()))
    for key, binding in bindings(3).items():
        with open(os.path.join(config_dir, "bindings", key + ".xml"), "w", encoding="utf-8") as handle:
            handle.write(_fx.format_binding_xml(binding))
    with open(os.path.join(config_dir, _store.DROP_UNBOUND_FILE), "w", encoding="utf-8") as handle:
        handle.write("yes\n")
    if stray:
        with open(os.path.join(config_dir, "bindings", "vnet0.xml~"), "w", encoding="utf-8") as handle:
            handle.write("an editor backup")


def test_a_format_1_store_is_read_with_strays_skipped_and_migrated_on_first_use(tmp_path):
    root = str(tmp_path)
    config_dir = os.path.join(root, "store")
    write_legacy(config_dir)
    state = _store.load_store(config_dir)
    assert state.legacy and sorted(state.bindings) == ["vnet0", "vnet1", "vnet2"] and state.drop_unbound_taps
    assert state.manage_networks and state.ledger is None
    stray = os.path.join(config_dir, "bindings", "vnet0.xml~")
    assert len(state.warnings) == 1 and stray in state.warnings[0] and "remove it" in state.warnings[0]
    host = H.FakeHost()
    result = _actions.nwfilter_info(H.base_params(root))
    assert [f["name"] for f in result["filters"]] == ["f"]
    # the first writer, even one that changes nothing, replaces the layout by the document
    _actions.guest_nic_filter(H.nic_params(root, bindings=[dict(portdev="vnet0", mac="52:54:00:00:00:00",
                                                                filter="f")]), False, host)
    migrated = _store.load_store(config_dir)
    assert not migrated.legacy and migrated == state.with_changes(ledger=migrated.ledger)
    assert sorted(os.listdir(config_dir)) == ["bindings", "store.json"]
    assert os.listdir(os.path.join(config_dir, "bindings")) == ["vnet0.xml~"], "the stray file is the admin's"


def test_check_mode_does_not_migrate(tmp_path):
    root = str(tmp_path)
    write_legacy(os.path.join(root, "store"), stray=False)
    _actions.guest_nic_filter(H.nic_params(root, bindings=[dict(portdev="vnet0", mac="52:54:00:00:00:00",
                                                                filter="f")]), True, H.FakeHost())
    assert _store.load_store(os.path.join(root, "store")).legacy


# ---------------------------------------------------------------- nothing else in config_dir is read


@pytest.mark.parametrize("name", ["store.json~", ".store.json.swp", "bindings/vnet0.xml", "notes", "filters"])
def test_a_stray_file_next_to_the_document_blocks_nothing(tmp_path, name):
    config_dir = tmp_path / "store"
    _store.write_changes(str(config_dir), _store.StoreState(), state_of(2))
    (config_dir / os.path.dirname(name)).mkdir(exist_ok=True)
    if name == "filters":
        (config_dir / name).mkdir()
    else:
        (config_dir / name).write_bytes(b"\x00\xff not ours")
    assert _store.load_store(str(config_dir)) == state_of(2)


def broken_store(tmp_path):
    """A store whose binding vnet1 was damaged by a hand edit."""
    root = str(tmp_path)
    H.populate(root, H.FakeHost())
    path = os.path.join(root, "store", "store.json")
    with open(path, encoding="utf-8") as handle:
        doc = json.load(handle)
    doc["bindings"]["vnet1"] = "<filterbinding>"
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(doc, handle)
    return root


def test_a_broken_entry_is_named_and_can_be_removed_or_replaced(tmp_path):
    root = broken_store(tmp_path)
    host = H.FakeHost()
    with pytest.raises(StoreError) as err:
        _actions.nwfilter(H.filter_params(root, xml="<filter name='fresh'/>"), False, host)
    assert "store.json" in err.value.msg and "'vnet1'" in err.value.msg and "redefine or remove it" in err.value.msg
    assert "Traceback" not in err.value.msg
    _actions.guest_nic_filter(H.nic_params(root, state="absent", portdev="vnet1", mac="52:54:00:00:00:11"), False,
                              host)
    assert "vnet1" not in _store.load_store(os.path.join(root, "store")).bindings
    _actions.nwfilter(H.filter_params(root, xml="<filter name='fresh'/>"), False, host)

    root2 = broken_store(tmp_path / "again")
    _actions.guest_nic_filter(H.nic_params(root2, portdev="vnet1", mac="52:54:00:00:00:11", filter="allow-arp"),
                              False, H.FakeHost())
    assert _store.load_store(os.path.join(root2, "store")).bindings["vnet1"].filter == "allow-arp"


def test_a_broken_entry_does_not_stop_a_guest_it_does_not_concern(tmp_path):
    root = broken_store(tmp_path)
    conf = tmp_path / "hook.conf"
    conf.write_text("config_dir = %s\nlock_file = %s\n" % (os.path.join(root, "store"), tmp_path / "lock"))
    xml = "<domain><name>other</name><devices><interface type='bridge'><mac address='52:54:00:aa:00:01'/>" \
          "<target dev='vnet7'/></interface></devices></domain>"
    import io
    assert _hook.main(["other", "start", "begin", "-"], io.StringIO(xml), {_hook.CONF_ENV: str(conf)},
                      runner=H.FakeHost()) == 0


def test_a_read_only_store_is_a_clear_error(tmp_path, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    root = str(tmp_path)
    monkeypatch.setattr(_store.tempfile, "mkstemp", refuse)
    with pytest.raises(StoreError) as err:
        _actions.nwfilter(H.filter_params(root, xml=FILTER), False, H.FakeHost())
    assert "Read-only file system" in err.value.msg and "writable" in err.value.msg


# ---------------------------------------------------------------- what a write accepts, a read accepts


def test_a_filter_whose_canonical_form_outgrows_the_read_limit_is_refused_at_write(tmp_path):
    # just under the 1 MiB read limit as given; every rule gains its priority and indentation when canonical
    rules = "<rule action='accept' direction='in'><all/></rule>" * 20000
    new = flt("<filter name='big' chain='root'>%s</filter>" % rules)
    with pytest.raises(StoreError) as err:
        _store.write_changes(str(tmp_path), _store.StoreState(), _store.StoreState(filters={"big": new}))
    assert "filter 'big'" in err.value.msg and "read back" in err.value.msg
    assert not os.path.exists(tmp_path / "store.json")


def test_a_binding_with_25000_values_is_refused_at_write(tmp_path):
    many = Binding(portdev="vnet0", mac="52:54:00:00:00:01", filter="f",
                   parameters=tuple(("IP", "10.%d.%d.%d" % (n >> 16, (n >> 8) & 255, n & 255)) for n in range(25000)))
    with pytest.raises(StoreError, match="binding 'vnet0'"):
        _store.write_changes(str(tmp_path), _store.StoreState(), _store.StoreState(bindings={"vnet0": many}))


@pytest.mark.parametrize("text", ["a\x00b", "bell\x07", "\uffff", "esc\x1b[31m"])
def test_characters_xml_cannot_hold_are_refused_at_write(tmp_path, text):
    definition = {"name": "c", "chain": "root", "entries": [{"rule": {
        "action": "accept", "direction": "in", "matches": [{"protocol": "tcp", "attrs": {"comment": text}}]}}]}
    try:
        new = _fx.filter_from_dict(definition)[0]
    except EngineError:
        return  # refused while parsing: never reaches the store
    with pytest.raises(StoreError, match="filter 'c'"):
        _store.write_changes(str(tmp_path), _store.StoreState(), _store.StoreState(filters={"c": new}))
    owner = Binding(portdev=None, mac="52:54:00:00:00:01", filter="f", owner_name="guest" + text)
    with pytest.raises(StoreError, match="cannot be stored"):
        _store.write_changes(str(tmp_path), _store.StoreState(), _store.StoreState(bindings={owner.key: owner}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(comment=st.text(max_size=40), domain=st.text(min_size=1, max_size=40),
       values=st.lists(st.text(alphabet="0123456789abcdef.:_", min_size=1, max_size=12), max_size=30))
def test_anything_a_write_accepts_a_read_accepts(tmp_path_factory, comment, domain, values):
    config_dir = str(tmp_path_factory.mktemp("prop"))
    definition = {"name": "p", "chain": "root", "entries": [{"rule": {
        "action": "accept", "direction": "in", "matches": [{"protocol": "tcp", "attrs": {"comment": comment}}]}}]}
    state = _store.StoreState()
    try:
        state = state.with_changes(filters={"p": _fx.filter_from_dict(definition)[0]})
    except EngineError:
        pass
    guest = Binding(portdev=None, mac="52:54:00:00:00:01", filter="p", owner_name=domain,
                    parameters=tuple(("V", v) for v in values))
    state = state.with_changes(bindings={guest.key: guest})
    try:
        _store.write_changes(config_dir, _store.StoreState(), state)
    except StoreError:
        assert not os.path.exists(os.path.join(config_dir, "store.json")), "refused means nothing written"
        return
    assert _store.load_store(config_dir) == state
