# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A read-back that differs never leaves the store and the kernel disagreeing.

The store is not committed when a writer fails, so the kernel is rolled back too: both keep the
state from before the run (the choice documented in docs/docsite/rst/safety.rst).  Before, the
kernel kept the new rules while the store kept the old ones, and a re-apply after a firewall
flush restored rules other than the ones the kernel had held.
"""

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ConvergeError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import converge as _nft  # noqa: E402
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import hostile_host as H

from test_compile_nft import DESIRED, TABLE, FakeNft

MAC = "52:54:00:00:00:40"
FILTER = ("<filter name='ssh-in' chain='root'><rule action='accept' direction='in'>"
          "<tcp dstportstart='22'/></rule></filter>")


def test_xtables_read_back_difference_rolls_the_kernel_back_like_the_store(tmp_path):
    root, host = str(tmp_path), H.FakeHost()
    H.populate(root, host)
    _actions.nwfilter(H.filter_params(root, xml=FILTER), False, host)
    before = H.snapshot(root, host)
    # a tool that prints port 22 by its service name: the compiler's '--dport 22' never reads back
    sim = host.sims["ip4"]
    real = sim.restore
    sim.restore = lambda payload: real(payload.replace("--dport 22 ", "--dport ssh "))
    with pytest.raises(ConvergeError) as caught:
        _actions.guest_nic_filter(H.nic_params(root, portdev="vnet2", mac=MAC, filter="ssh-in"), False, host)
    assert "rolled back to its rules from before this run" in caught.value.msg
    assert caught.value.context["rolled_back"] is True
    assert H.snapshot(root, host) == before


class ReprintingNft(FakeNft):
    """nft that, after our load, lists the table's 'accept' as 'drop' (a printed form we do not expect)."""

    loads = 0

    def nft(self, args, data=None):
        rc, out, err = super().nft(args, data)
        if args[:2] == ["list", "table"] and rc == 0 and self.loads == 1:
            out = out.replace("accept\n", "drop\n")
        if args == ["-f", "-"]:
            self.loads += 1
        return rc, out, err


def test_nftables_read_back_difference_restores_the_tables_from_before():
    live_before = "table bridge hfw_nwfilter {\n\tchain c {\n\t\treturn\n\t}\n}\n"
    kernel = ReprintingNft({TABLE: live_before})
    with pytest.raises(ConvergeError) as caught:
        _nft.converge({TABLE: DESIRED}, kernel)
    assert "rolled back to their state from before this run" in caught.value.msg
    assert caught.value.context["rolled_back"] is True
    loads = [call for call in kernel.calls if call == ["-f", "-"]]
    assert len(loads) == 2 and kernel.tables[TABLE] == live_before
