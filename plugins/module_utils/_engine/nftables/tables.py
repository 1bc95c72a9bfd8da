# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nft tables the nftables backend owns, named once.

We own whole tables by name and never read or write any other:
- ``bridge hfw_nwfilter``: layer 2 rules of every NIC (compile_l2);
- ``bridge hfw_nwfilter_mark`` and ``inet hfw_nwfilter``: the port marks and the layer 3/4 rules
  (compile_l3);
- ``ip``/``ip6 libvirt_network``: the virtual networks, laid out as libvirt >= 10.4 lays them out
  (networks), ours only once the store declares networks, so libvirtd's stay untouched.
"""

from __future__ import annotations

L2 = ("bridge", "hfw_nwfilter")
MARK = ("bridge", "hfw_nwfilter_mark")
L3 = ("inet", "hfw_nwfilter")
NETWORK_NAME = "libvirt_network"
NETWORK_FAMILIES = (("ip4", "ip"), ("ip6", "ip6"))
NETWORKS = tuple((family, NETWORK_NAME) for _tool, family in NETWORK_FAMILIES)
NICS = (L2, MARK, L3)


def owned(manage_networks):
    """Every table this host's store owns, in the order they are read and replaced."""
    return NICS + (NETWORKS if manage_networks else ())
