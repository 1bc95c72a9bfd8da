# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A whole fake hypervisor for driving _actions: simulated tools, a store dir, host questions.

The simulated kernel also enforces the chain-name limits, and every test can take a byte-exact
snapshot of store and kernel to prove that a refused call changed nothing.
"""

import copy
import glob
import os
import shutil

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.names import MAX_CHAIN
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.xtables_sim import (
    HostFake, SimError, SimTool, new_sims,
)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
DEFAULT_FILTERS = os.path.join(ROOT, "roles", "default_filters", "files")
DEVICES = ("lo", "br0", "virbr0", "vnet0", "vnet1", "vnet2", "abcdefghijklmno")
# rules of other tools that every operation must leave alone
FOREIGN = {
    "eb": "*filter\n:DOCKER-EB ACCEPT\n-A FORWARD -j DOCKER-EB\n-A DOCKER-EB -j RETURN\n",
    "ip4": "*filter\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\n"
           "-A INPUT -s 10.0.0.1/32 -j ACCEPT\nCOMMIT\n",
    "ip6": "*filter\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\nCOMMIT\n",
}


class LimitedSimTool(SimTool):
    """SimTool that refuses chain names longer than the kernel allows."""

    def _declare(self, table, state, chain, policy):
        if len(chain) > MAX_CHAIN[self.tool]:
            raise SimError("chain name '%s' too long" % chain)
        super()._declare(table, state, chain, policy)


class FakeHost(HostFake):
    """The shared fake host over length-limited tools holding FOREIGN, and a deep copy on demand."""

    def __init__(self, sims=None, devices=DEVICES, libvirt_bound=(), bridge_nf_off=()):
        super().__init__(sims or new_sims(foreign=FOREIGN, tool_class=LimitedSimTool), devices, libvirt_bound,
                         bridge_nf_off)

    def clone(self):
        return FakeHost(copy.deepcopy(self.sims), self.devices, self.libvirt_bound, self.bridge_nf_off)


def base_params(root):
    return dict(config_dir=os.path.join(root, "store"), lock_file=os.path.join(root, "lock"), lock_timeout=5)


def filter_params(root, **kw):
    params = dict(base_params(root), name=None, xml=None, definition=None, strict=False, state="present")
    params.update(kw)
    return params


def nic_params(root, **kw):
    params = dict(base_params(root), state="present", bindings=None, portdev=None, mac=None, filter=None,
                  parameters=None, binding_xml=None, exclusive=False, takeover=False)
    params.update(kw)
    return params


def net_params(root, **kw):
    params = dict(base_params(root), name="default", bridge="virbr0", mode="nat", ipv4="192.168.122.1/24",
                  ipv6=None, forward_dev=None, dhcp=True, dns=True, tftp=False, nat_ports=[1024, 65535],
                  nat_address=None, nat_ipv6=False, network_xml=None, state="present")
    params.update(kw)
    return params


L3_FILTER = """<filter name='web-in' chain='root'>
  <rule action='accept' direction='in' priority='400'><tcp dstportstart='443' comment='web in'/></rule>
  <rule action='accept' direction='in' priority='400'><tcp-ipv6 dstportstart='443'/></rule>
  <filterref filter='clean-traffic'/>
</filter>
"""


def populate(root, host):
    """The default filters, an L3 filter, two bound NICs and a NAT network."""
    for path in sorted(glob.glob(os.path.join(DEFAULT_FILTERS, "*.xml"))):
        with open(path, encoding="utf-8") as handle:
            _actions.nwfilter(filter_params(root, xml=handle.read()), False, host)
    _actions.nwfilter(filter_params(root, xml=L3_FILTER), False, host)
    _actions.guest_nic_filter(nic_params(root, bindings=[
        dict(portdev="vnet0", mac="52:54:00:00:00:10", filter="clean-traffic", parameters={"IP": "192.0.2.10"}),
        dict(portdev="vnet1", mac="52:54:00:00:00:11", filter="web-in",
             parameters={"IP": ["192.0.2.11", "192.0.2.12"]}),
    ]), False, host)
    _actions.virt_network_fw(net_params(root), False, host)


def copy_world(template_root, template_host, root):
    shutil.copytree(os.path.join(template_root, "store"), os.path.join(root, "store"))
    return template_host.clone()


def snapshot(root, host):
    """Every byte of the store plus every simulated table, for equality checks."""
    files = {}
    store = os.path.join(root, "store")
    for folder, dirs, names in os.walk(store):
        dirs.sort()
        rel = os.path.relpath(folder, store)
        files[rel + "/"] = None
        for name in sorted(names):
            with open(os.path.join(folder, name), "rb") as handle:
                files[os.path.join(rel, name)] = handle.read()
    return files, host.dumps()
