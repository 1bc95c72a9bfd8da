# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Foreign rules holding any byte, and UTF-8 comments at the kernel's byte limit, against real netfilter.

Another program's rule comment (iptables, ip6tables) and log prefix (ebtables) hold Latin-1 and
other non-UTF-8 bytes.  Every writer must run on that host: the modules, the re-apply command
(once, --check, and one tick of the watcher) and the qemu hook (start and reconnect), and the
foreign rules must stay byte-identical.  Our own comments of 255 bytes in 2- and 3-byte
characters go in whole and read back equal (a second run changes nothing); a comment the kernel
would cut is refused before anything is written.
"""

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import reapply as _reapply  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import FilterXMLError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(b) for b in ("ip", "iptables", "ebtables")),
    reason="needs root, iproute2, iptables and ebtables (network namespaces)")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REAPPLY = os.path.join(ROOT, "bin", "hypervisor-firewall-reapply")
HOOK = os.path.join(ROOT, "bin", "hypervisor-firewall-qemu-hook")
FILTER_DIR = os.path.join(ROOT, "roles", "default_filters", "files")
MAC = "52:54:00:00:00:0a"

FOREIGN_IP = (b"*filter\n:ADMIN-LATIN1 - [0:0]\n-A INPUT -m comment --comment \"caf\xe9\" -j ACCEPT\n"
              b"-A FORWARD -j ADMIN-LATIN1\n-A ADMIN-LATIN1 -m comment --comment \"\xff\xfe na\xefve \xc3\" -j RETURN\n"
              b"COMMIT\n")
FOREIGN = {
    "iptables": FOREIGN_IP,
    "ip6tables": FOREIGN_IP,
    "ebtables": b"*filter\n:ADMIN-LATIN1 ACCEPT\n-A FORWARD --log-prefix \"caf\xe9\" -j CONTINUE\n"
                b"-A FORWARD -j ADMIN-LATIN1\n",
}
# 255 bytes each: 127 two-byte characters plus one byte, and 85 three-byte characters
UTF8_FILTER = """<filter name='hfw-utf8' chain='root'>
  <rule action='accept' direction='in' priority='400'><tcp dstportstart='22' comment='%s'/></rule>
  <rule action='accept' direction='in' priority='401'><tcp dstportstart='23' comment='%s'/></rule>
  <filterref filter='clean-traffic'/>
</filter>
""" % ("\u00e9" * 127 + "!", "\u20ac" * 85)
DOMAIN_XML = """<domain type='kvm' id='7'><name>guest-a</name><uuid>6f1c2c3a-0d7e-4f57-9d5e-000000000007</uuid>
  <devices><interface type='bridge'><mac address='%s'/><source bridge='br0'/><target dev='vnet0'/>
  <alias name='net0'/></interface></devices></domain>
""" % MAC


def save_bytes(ns, tool):
    out = subprocess.run(["ip", "netns", "exec", ns, tool + "-save"], capture_output=True, check=True).stdout
    return [line for line in out.splitlines() if not line.startswith(b"#")]


def foreign_lines(ns):
    """Every line of every dump that holds a byte that is not UTF-8, or our admin chain, as bytes."""
    found = {}
    for tool in FOREIGN:
        lines = save_bytes(ns, tool)
        found[tool] = [line for line in lines if b"ADMIN-LATIN1" in line or _not_utf8(line)]
        assert len(found[tool]) >= 3, (tool, lines)
    return found


def _not_utf8(line):
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@pytest.fixture
def host(tmp_path):
    ns = "hfwta-b%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for index, dev in enumerate(("vnet0", "vnet1")):
            subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "add", dev, "address",
                            "fe:54:00:00:00:%02x" % (10 + index), "type", "veth", "peer", "name", "p%d" % index],
                           check=True)
        for tool, payload in FOREIGN.items():
            subprocess.run(["ip", "netns", "exec", ns, tool + "-restore", "--noflush"], input=payload, check=True)
        work = str(tmp_path)
        params = dict(config_dir=os.path.join(work, "store"), lock_file=os.path.join(work, "lock"), lock_timeout=30)
        yield ns, HostRunner(prefix=["ip", "netns", "exec", ns]), params, work
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


def nwfilter(params, runner, xml):
    return _actions.nwfilter(dict(params, name=None, xml=xml, definition=None, strict=False, state="present"),
                             False, runner)


def nic(params, runner, **binding):
    args = dict(params, state="present", bindings=None, portdev=None, mac=None, filter=None, parameters=None,
                binding_xml=None, exclusive=False, takeover=False, domain=None)
    args.update(binding)
    return _actions.guest_nic_filter(args, False, runner)


def test_every_writer_runs_on_foreign_bytes_and_leaves_them_byte_identical(host):
    ns, runner, params, work = host
    before = foreign_lines(ns)
    for name in sorted(os.listdir(FILTER_DIR)):
        with open(os.path.join(FILTER_DIR, name), encoding="utf-8") as handle:
            nwfilter(params, runner, handle.read())
    nwfilter(params, runner, UTF8_FILTER)
    # the module: a NIC with 255-byte UTF-8 comments goes in whole and reads back equal
    result = nic(params, runner, portdev="vnet1", mac="52:54:00:00:00:0b", filter="hfw-utf8",
                 parameters={"IP": "192.0.2.11"})
    assert result["changed"] and result["rebuilt_devices"] == ["vnet1"]
    iptables = b"\n".join(save_bytes(ns, "iptables"))
    assert ("\u00e9" * 127 + "!").encode() in iptables and ("\u20ac" * 85).encode() in iptables
    assert not nic(params, runner, portdev="vnet1", mac="52:54:00:00:00:0b", filter="hfw-utf8",
                   parameters={"IP": "192.0.2.11"})["changed"]
    # the qemu hook: a guest bound by domain starts, and a running one reconnects
    nic(params, runner, domain="guest-a", mac=MAC, filter="clean-traffic", parameters={"IP": "192.0.2.10"})
    conf = os.path.join(work, "hook.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write("config_dir = %s\nlock_file = %s\nlock_timeout = 10\n" % (params["config_dir"], params["lock_file"]))
    for op in ("start", "reconnect"):
        proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, HOOK, "guest-a", op, "begin", "-"],
                              input=DOMAIN_XML, capture_output=True, text=True, check=False,
                              env=dict(os.environ, HYPERVISOR_FIREWALL_HOOK_CONF=conf))
        assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    assert any(b"libvirt-I-vnet0" in line for line in save_bytes(ns, "ebtables"))
    # the re-apply command: drift check, then a heal after our chain was flushed by someone else
    argv = ["ip", "netns", "exec", ns, sys.executable, REAPPLY, "--config-dir", params["config_dir"],
            "--lock-file", params["lock_file"]]
    check = subprocess.run(argv + ["--check"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    subprocess.run(["ip", "netns", "exec", ns, "iptables", "-F", "FI-vnet1"], check=True)
    heal = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert heal.returncode == 0, heal.stdout + heal.stderr
    # one tick of the watcher, in process, through the same runner
    args = _reapply.parse_args(["--config-dir", params["config_dir"], "--lock-file", params["lock_file"],
                                "--watch", "5", "--quiet"])
    watcher = _reapply.Watcher(args, runner)
    watcher.safe_tick()
    assert watcher.last_error is None and watcher.desired is not None and not watcher.drifted()
    assert foreign_lines(ns) == before


@pytest.mark.parametrize("comment", ["\u00e9" * 200, "\u20ac" * 100])
def test_a_comment_the_kernel_would_cut_is_refused_and_nothing_changes(host, comment):
    ns, runner, params, _work = host
    dumps = {tool: save_bytes(ns, tool) for tool in FOREIGN}
    with pytest.raises(FilterXMLError, match="bytes in UTF-8 .* more than the 255 bytes the kernel keeps"):
        nwfilter(params, runner, "<filter name='long' chain='root'><rule action='accept' direction='in'>"
                                 "<tcp dstportstart='22' comment='%s'/></rule></filter>" % comment)
    assert {tool: save_bytes(ns, tool) for tool in FOREIGN} == dumps
    assert not os.path.exists(os.path.join(params["config_dir"], "filters", "long.xml"))
