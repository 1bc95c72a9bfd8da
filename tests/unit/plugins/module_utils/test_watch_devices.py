# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The re-apply watcher reconciles when the host's devices change (a hot-plugged NIC's tap), not
only when the store or the rules do: libvirt runs no hook for ``virsh attach-interface``."""

import argparse

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import reapply as _reapply  # noqa: E402


class Links:
    """A runner that only answers list_links (all the watcher asks it here)."""

    def __init__(self, links):
        self.links = dict(links)

    def list_links(self):
        return dict(self.links)


def watcher(tmp_path, monkeypatch, runner):
    refreshes = []

    def reapply_once(_args, run, check_mode):
        assert not check_mode
        refreshes.append(dict(run.links))
        return argparse.Namespace(after="state")

    monkeypatch.setattr(_reapply, "reapply_once", reapply_once)
    monkeypatch.setattr(_reapply._service, "desired_for_host", lambda *args, **kwargs: "desired")
    watch = _reapply.Watcher(argparse.Namespace(config_dir=str(tmp_path)), runner)
    monkeypatch.setattr(watch, "drifted", lambda: False)
    return watch, refreshes


def test_a_new_tap_makes_the_watcher_reconcile(tmp_path, monkeypatch):
    runner = Links({"lo": None, "vnet0": "fe:54:00:00:00:0a"})
    watch, refreshes = watcher(tmp_path, monkeypatch, runner)
    watch.tick()
    watch.tick()
    assert len(refreshes) == 1, "nothing changed: one reconcile only"
    runner.links["vnet1"] = "fe:54:00:00:00:0b"
    watch.tick()
    assert refreshes[-1] == runner.links and len(refreshes) == 2
    watch.tick()
    assert len(refreshes) == 2


def test_a_tap_whose_mac_changes_makes_the_watcher_reconcile(tmp_path, monkeypatch):
    runner = Links({"vnet0": "fe:54:00:00:00:0a"})
    watch, refreshes = watcher(tmp_path, monkeypatch, runner)
    watch.tick()
    runner.links["vnet0"] = "fe:54:00:00:00:0c"  # another guest got the tap name
    watch.tick()
    assert len(refreshes) == 2
