# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A read-back that differs names its likely cause: another program, or our compiler."""

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import apply as _apply  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ConvergeError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import Chain, TableState
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.xtables_sim import FakeRunner, SimTool

DESIRED = {("ip4", "filter"): TableState("ip4", "filter", {"FI-x": Chain("FI-x", ("-p 6 -j DROP",))})}


def runner_whose_ip4_restore(restore):
    """A simulated host whose iptables-restore is ``restore(real_restore, payload)``."""
    runner = FakeRunner({"eb": SimTool("eb", ("filter", "nat")), "ip4": SimTool("ip4"), "ip6": SimTool("ip6")})
    real = runner.sims["ip4"].restore
    runner.sims["ip4"].restore = lambda payload: restore(real, payload)
    return runner


def restore_then_flush(real, payload):
    """What `nft flush ruleset` between our restore and our read-back leaves."""
    outcome = real(payload)
    assert real("*filter\n:FI-x - [0:0]\n-X FI-x\nCOMMIT\n")[0] == 0
    return outcome


def test_chains_removed_during_the_apply_blame_another_program():
    runner = runner_whose_ip4_restore(restore_then_flush)
    with pytest.raises(ConvergeError, match=r"another program removed FI-x meanwhile.*run again") as err:
        _apply.converge(DESIRED, runner)
    assert "bug in the rule compiler" not in str(err.value)


def test_a_rule_printed_in_another_form_is_a_compiler_bug():
    # the tool prints '-p 6' as '-p tcp': a compiler emitting '-p 6' never converges
    runner = runner_whose_ip4_restore(lambda real, payload: real(payload.replace("-p 6 ", "-p tcp ")))
    with pytest.raises(ConvergeError, match="bug in the rule compiler"):
        _apply.converge(DESIRED, runner)
