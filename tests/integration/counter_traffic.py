# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Frames with known counts through a lab whose g0 is filtered, for the tests of gathered counters.

g0 (vnet0) is bound to ``counted``: clean-traffic plus an iptables drop of UDP port 40009 from the
guest; network 'lab' (nat) sits on br0.  send_frames() sends UDP:

- SENT['spoofed'] from g0 with a source IP not g0's: ebtables ``I-vnet0-ipv4-ip -j DROP``;
- SENT['blocked'] from g0 to port 40009: pass ebtables, dropped by iptables in ``FI-vnet0``;
- SENT['passed'] from g0 to port 40001: ebtables ``--ip-src <g0's IP> -j RETURN``, then iptables
  ``libvirt-in-post`` accepts them;
- SENT['to_guest'] from g1 (unfiltered) to g0, port 40002: ebtables ``O-vnet0-ipv4 -j ACCEPT``,
  then the network's ``LIBVIRT_FWX -i br0 -o br0 -j ACCEPT`` (bridged, br0 to br0).

The guests' kernels send a little traffic of their own (ARP, IGMP), so shared rules count at least
these numbers; the DROP rules see only what is sent here.
"""

import os
import select
import time

from lab import frames as F
from lab import packet_socket

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import transitions as _ops  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTER_DIR = os.path.join(ROOT, "roles", "default_filters", "files")
SENT = {"spoofed": 3, "blocked": 2, "passed": 4, "to_guest": 5}
SPOOF_IP = "192.168.100.99"
BLOCKED_PORT, PASSED_PORT, TO_GUEST_PORT = 40009, 40001, 40002
COUNTED = ('<filter name="counted" chain="root"><filterref filter="clean-traffic"/>'
           '<rule action="drop" direction="out" priority="500"><udp dstportstart="%d"/></rule></filter>'
           % BLOCKED_PORT)
NETWORK = dict(name="lab", bridge="br0", ipv4="192.168.100.1/24", mode="nat")


def define_filters(state):
    for name in sorted(os.listdir(FILTER_DIR)):
        with open(os.path.join(FILTER_DIR, name), encoding="utf-8") as handle:
            state = _ops.define_filter(state, _filterxml.parse_filter_xml(handle.read())[0])
    return _ops.define_filter(state, _filterxml.parse_filter_xml(COUNTED)[0]), []


def install(lab, runner, store, lock):
    """Filters, g0's binding and the network, applied through the engine (as the modules do)."""
    params = dict(config_dir=store, lock_file=lock, lock_timeout=10, backend=None)
    _service.reconcile(store, define_filters, runner, False, lock_file=lock)
    g0 = lab.guests[0]
    binding = dict(portdev=g0.tap, mac=g0.mac, filter="counted", parameters={"IP": g0.ipv4})
    _actions.guest_nic_filter(dict(params, bindings=[binding], state="present"), False, runner=runner)
    _actions.virt_network_fw(dict(params, state="present", **NETWORK), False, runner=runner)
    return params


def send_frames(lab, timeout=3.0):
    """Send SENT's frames; return once every frame that passes arrived (so every earlier frame
    has been through the filters too)."""
    g0, g1 = lab.guests[0], lab.guests[1]
    socks = {g.ns: packet_socket(g.ns, g.ifname) for g in (g0, g1)}
    try:
        _send(socks[g0.ns], g0, g1, SENT["spoofed"], PASSED_PORT, src_ip=SPOOF_IP)
        _send(socks[g0.ns], g0, g1, SENT["blocked"], BLOCKED_PORT)
        _await(socks[g1.ns], _send(socks[g0.ns], g0, g1, SENT["passed"], PASSED_PORT), timeout)
        _await(socks[g0.ns], _send(socks[g1.ns], g1, g0, SENT["to_guest"], TO_GUEST_PORT), timeout)
    finally:
        for sock in socks.values():
            sock.close()


def _send(sock, src, dst, count, port, src_ip=None):
    """Send ``count`` UDP frames from guest src to guest dst; return their markers."""
    markers = {F.new_marker() for _sent in range(count)}
    for marker in sorted(markers):
        sock.send(F.ipv4_udp(src.mac, dst.mac, src_ip or src.ipv4, dst.ipv4, 40000, port, marker))
    return markers


def _await(sock, markers, timeout):
    deadline = time.monotonic() + timeout
    while markers and time.monotonic() < deadline:
        if not select.select([sock], [], [], deadline - time.monotonic())[0]:
            continue
        try:
            while True:
                data = sock.recv(65535)
                markers -= {m for m in markers if m in data}
        except BlockingIOError:
            pass
    if markers:
        raise AssertionError("%d frames that the filters pass never arrived" % len(markers))
