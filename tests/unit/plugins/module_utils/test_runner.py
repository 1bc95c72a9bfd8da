# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runner and host lock with stand-in binaries on a private PATH (no root, no netfilter)."""

import os
import stat
import threading

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ApplyError, LockError, ToolMissingError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import Runner, host_lock


def stand_in(directory, name, body):
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def bindir(tmp_path):
    log = tmp_path / "log"
    for name in ("iptables-save", "ip6tables-save", "ebtables-save"):
        stand_in(tmp_path, name, "echo '*filter'; echo COMMIT; echo '# Warning: iptables-legacy tables present' >&2\n")
    for name in ("iptables-restore", "ip6tables-restore", "ebtables-restore"):
        stand_in(tmp_path, name, 'echo "$0 $*" >> %s; cat >> %s\n' % (log, log))
    return tmp_path


def test_missing_binary_names_the_package(tmp_path):
    with pytest.raises(ToolMissingError) as err:
        Runner(path=str(tmp_path)).which("eb")
    assert "ebtables-save" in str(err.value) and "'ebtables'" in str(err.value)
    assert err.value.context["binary"] == "ebtables-save"


def test_save_collects_warnings_once(bindir):
    runner = Runner(path=str(bindir))
    assert runner.save("ip4") == "*filter\nCOMMIT\n"
    runner.save("ip6")
    assert runner.warnings == ["Warning: iptables-legacy tables present"]


def test_restore_options_per_tool(bindir):
    runner = Runner(path=str(bindir))
    assert runner.restore("eb", "*nat\n")[0] == 0
    assert runner.restore("ip4", "*filter\nCOMMIT\n")[0] == 0
    log = (bindir / "log").read_text().splitlines()
    assert log == [
        "%s --noflush" % (bindir / "ebtables-restore"), "*nat",
        "%s --noflush -w 10" % (bindir / "iptables-restore"), "*filter", "COMMIT",
    ]


def test_prefix_wraps_every_command(bindir):
    runner = Runner(prefix=["env", "MARK=1"], path=str(bindir))
    assert runner.run(["sh", "-c", 'echo "$MARK"; cat'], data="in")[1] == "1\nin"


def test_failing_save_is_an_error(tmp_path):
    stand_in(tmp_path, "iptables-save", "echo broken >&2; exit 3\n")
    with pytest.raises(ApplyError, match="broken") as err:
        Runner(path=str(tmp_path)).save("ip4")
    assert err.value.context["rc"] == 3


def test_lock_is_exclusive_and_times_out(tmp_path):
    path = str(tmp_path / "run" / "sub" / "lock")
    taken = threading.Event()
    release = threading.Event()

    def holder():
        with host_lock(path, timeout=5):
            taken.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert taken.wait(5)
        with pytest.raises(LockError, match="lock"):
            with host_lock(path, timeout=0.3):
                pass
    finally:
        release.set()
        thread.join()
    with host_lock(path, timeout=1):
        assert os.path.exists(path)
