# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""converge() with the runner faked at its one seam (simulated tools, no root)."""

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import apply as _apply  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import (
    ApplyError, ConvergeError, ToolMissingError,
)
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import Chain, TableState
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import Scope
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.xtables_sim import FakeRunner, SimTool


def sims():
    return {"eb": SimTool("eb", ("filter", "nat")), "ip4": SimTool("ip4"), "ip6": SimTool("ip6")}


def ip(tool, rule):
    return TableState(tool, "filter", {"FI-vnet0": Chain("FI-vnet0", (rule,))}, (("FORWARD", "-j FI-vnet0"),))


def desired(rule="-j DROP"):
    return {
        ("eb", "nat"): TableState("eb", "nat", {"libvirt-I-vnet0": Chain("libvirt-I-vnet0", (rule,), "ACCEPT")},
                                  (("PREROUTING", "-i vnet0 -j libvirt-I-vnet0"),)),
        ("ip4", "filter"): ip("ip4", rule),
        ("ip6", "filter"): ip("ip6", rule),
    }


def test_check_mode_never_restores():
    runner = FakeRunner(sims())
    result = _apply.converge(desired(), runner, check_mode=True)
    assert result.changed and set(result.payloads) == {"eb", "ip4", "ip6"}
    assert runner.restores == []


def test_apply_then_nothing_to_do():
    runner = FakeRunner(sims())
    assert _apply.converge(desired(), runner).changed
    assert [tool for tool, payload in runner.restores] == ["eb", "ip4", "ip6"]
    runner.restores.clear()
    assert not _apply.converge(desired(), runner).changed
    assert runner.restores == []


def test_a_later_failure_restores_the_earlier_tools():
    runner = FakeRunner(sims())
    _apply.converge(desired(), runner)
    before = {tool: sim.save() for tool, sim in runner.sims.items()}
    runner.fail_on = {"ip6"}
    runner.restores.clear()
    with pytest.raises(ApplyError) as err:
        _apply.converge(desired("-j RETURN"), runner)
    assert [tool for tool, payload in runner.restores] == ["eb", "ip4", "ip6", "ip4", "eb"]
    assert {tool: sim.save() for tool, sim in runner.sims.items()} == before
    ctx = err.value.context
    assert (ctx["tool"], ctx["line"], ctx["rolled_back"]) == ("ip6", 2, ["eb", "ip4"])
    assert ctx["lines"][0] == "    1: *filter" and ctx["lines"][1].startswith(">   2: ")


def test_a_first_failure_changes_nothing():
    runner = FakeRunner(sims(), fail_on={"eb"})
    with pytest.raises(ApplyError, match="nothing was changed"):
        _apply.converge(desired(), runner)
    assert [tool for tool, payload in runner.restores] == ["eb"]


def test_read_back_difference_is_a_converge_error():
    # the tool prints '-p 6' as '-p tcp': a compiler emitting '-p 6' never converges
    runner = FakeRunner(sims())
    real_restore = runner.sims["ip4"].restore
    runner.sims["ip4"].restore = lambda payload: real_restore(payload.replace("-p 6 ", "-p tcp "))
    with pytest.raises(ConvergeError) as err:
        _apply.converge({("ip4", "filter"): TableState("ip4", "filter", {"FI-x": Chain("FI-x", ("-p 6 -j DROP",))})}, runner)
    assert "-A FI-x -p 6 -j DROP" in str(err.value)


def test_missing_tool_stops_before_reading():
    runner = FakeRunner(sims(), missing={"ip6"})
    with pytest.raises(ToolMissingError):
        _apply.converge(desired(), runner)
    assert runner.restores == []


@pytest.mark.parametrize("scope,state", [
    (Scope(), TableState("ip4", "filter", {"DOCKER": Chain("DOCKER")})),
    (Scope(manage_networks=False), TableState("ip4", "filter", {"LIBVIRT_FWX": Chain("LIBVIRT_FWX")})),
    (Scope(foreign_devices=frozenset({"vnet0"})), TableState("ip4", "filter", {"FI-vnet0": Chain("FI-vnet0")})),
    (Scope(), TableState("ip4", "filter", {"FI-a": Chain("FI-a")}, (("FORWARD", "-j DOCKER"),))),
])
def test_desired_content_we_would_not_read_back_is_refused(scope, state):
    runner = FakeRunner(sims())
    with pytest.raises(ConvergeError, match="nothing was changed"):
        _apply.converge({("ip4", "filter"): state}, runner, scope)
    assert runner.restores == []
