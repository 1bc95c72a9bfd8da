# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A restore that commits and then hangs past the runner's timeout, against real netfilter.

The tools are found through a PATH of wrappers (the runner resolves every binary in its ``path``):
the first ``iptables-restore`` runs the real one, which commits, and then hangs, so the runner
kills it after its timeout.  The apply must treat that like a failed restore: every tool back to
where it was (iptables included, although its restore went in), the store put back, and one
message that names the timeout and each tool's state.
"""

import os
import shutil
import stat
import subprocess
import uuid

import pytest

from save_views import store_bytes

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ApplyError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import TOOLS, HostRunner

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(b) for b in ("ip", "iptables", "ebtables")),
    reason="needs root, iproute2, iptables and ebtables (network namespaces)")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTER_DIR = os.path.join(ROOT, "roles", "default_filters", "files")
IP_ONLY = """<filter name='hfw-ip-only' chain='root'>
  <rule action='drop' direction='out' priority='500'><udp/></rule>
  <rule action='drop' direction='out' priority='500'><udp-ipv6/></rule>
</filter>
"""
HANG_ONCE = """#!/bin/sh
# the first call commits through the real tool, then hangs; later calls are the real tool
if [ ! -e "{marker}" ]; then
    : > "{marker}"
    "{real}" "$@"
    exec sleep 30
fi
exec "{real}" "$@"
"""


def wrappers(folder, hanging):
    os.makedirs(folder)
    for save, restore in TOOLS.values():
        for name in (save, restore):
            real = shutil.which(name)
            path = os.path.join(folder, name)
            if name == hanging:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(HANG_ONCE.format(marker=os.path.join(folder, ".hung"), real=real))
                os.chmod(path, stat.S_IRWXU)
            else:
                os.symlink(real, path)
    return folder


def dumps(ns):
    out = {}
    for save, _restore in TOOLS.values():
        text = subprocess.run(["ip", "netns", "exec", ns, save], capture_output=True, text=True, check=True).stdout
        out[save] = [line for line in text.splitlines() if not line.startswith("#")]
    return out


@pytest.fixture
def host(tmp_path):
    ns = "hfwta-t%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "add", "vnet0", "type", "veth", "peer", "name", "p0"],
                       check=True)
        # an admin's rules, so every table exists before and after (and must stay as it is)
        for tool, source in (("iptables-restore", "10.0.0.1/32"), ("ip6tables-restore", "fd00::1/128")):
            subprocess.run(["ip", "netns", "exec", ns, tool, "--noflush"], check=True, text=True,
                           input="*filter\n-A INPUT -s %s -j ACCEPT\nCOMMIT\n" % source)
        work = str(tmp_path)
        base = dict(config_dir=os.path.join(work, "store"), lock_file=os.path.join(work, "lock"), lock_timeout=30)
        runner = HostRunner(prefix=["ip", "netns", "exec", ns])
        for name in sorted(os.listdir(FILTER_DIR)) + [None]:
            xml = IP_ONLY
            if name:
                with open(os.path.join(FILTER_DIR, name), encoding="utf-8") as handle:
                    xml = handle.read()
            _actions.nwfilter(dict(base, name=None, xml=xml, definition=None, strict=False, state="present"),
                              False, runner)
        nic = dict(base, state="present", bindings=None, portdev="vnet0", mac="52:54:00:00:00:0a",
                   filter="no-mac-spoofing", parameters={"IP": "192.0.2.10"}, binding_xml=None, exclusive=False,
                   takeover=False, domain=None)
        assert _actions.guest_nic_filter(nic, False, runner)["changed"]
        yield ns, runner, nic, work
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


def test_a_restore_that_commits_then_hangs_is_rolled_back_with_the_store(host):
    ns, runner, nic, work = host
    before, stored = dumps(ns), store_bytes(nic["config_dir"])
    slow = HostRunner(prefix=runner.prefix, path=wrappers(os.path.join(work, "bin"), "iptables-restore"), timeout=2)
    with pytest.raises(ApplyError) as err:
        _actions.guest_nic_filter(dict(nic, filter="hfw-ip-only"), False, slow)
    assert os.path.exists(os.path.join(work, "bin", ".hung")), "the wrapper never ran: the test proved nothing"
    message = err.value.msg
    assert "did not finish within 2s and was killed" in message, message
    assert "rolled back: ebtables: as before, iptables: as before, ip6tables: as before" in message, message
    assert err.value.context["tool"] == "ip4"
    assert dumps(ns) == before
    assert store_bytes(nic["config_dir"]) == stored
    # the same change through the sound tools goes in: the refusal was the timeout alone
    assert _actions.guest_nic_filter(dict(nic, filter="hfw-ip-only"), False, runner)["changed"]
