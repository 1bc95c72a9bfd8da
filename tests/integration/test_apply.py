# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""converge() against real netfilter in a throw-away network namespace (root)."""

import os
import shutil
import subprocess
import uuid

import pytest

from save_views import foreign_view, without_comments

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import apply as _apply  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ApplyError, ToolMissingError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import TOOL_ORDER, Chain, TableState
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import TOOLS
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import Runner
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import builtin_policies, parse_save

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (network namespaces)"
)

FOREIGN = {
    "eb": "*filter\n:FORWARD DROP\n:DOCKER-EB ACCEPT\n-A FORWARD -j DOCKER-EB\n-A DOCKER-EB -p ARP -i eth0 -j ACCEPT\n"
          "*nat\n:ADMIN-CHAIN ACCEPT\n-A PREROUTING -j ADMIN-CHAIN\n-A ADMIN-CHAIN -d 01:80:c2:00:00:00 -j DROP\n",
    "ip4": "*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\n"
           "-A INPUT -s 10.0.0.1/32 -m comment --comment \"admin  rule, \\\"quoted\\\"\" -j ACCEPT\nCOMMIT\n",
    "ip6": "*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\n"
           "-A INPUT -s fd00::1/128 -m comment --comment \"admin  rule\" -j ACCEPT\nCOMMIT\n",
}


def state(tool, table, chains, hooks):
    policy = "ACCEPT" if tool == "eb" else "-"
    found = {name: Chain(name, tuple(rules), policy) for name, rules in chains.items()}
    return TableState(tool, table, found, tuple(hooks))


def desired(ip6_bad=False, changed=False):
    """A hand-written ruleset in the form the tools print back."""
    ip6_rules = ["-p ipv6-icmp -j ACCEPT", "-j DROP"] + (["-j FI-nope"] if ip6_bad else [])
    guest_ip, note = ("192.168.122.11", " changed") if changed else ("192.168.122.10", "")
    return {
        ("eb", "nat"): state("eb", "nat", {
            "libvirt-I-vnet0": ["-s ! 52:54:00:12:34:56 -j DROP", "-p IPv4 -j I-vnet0-ipv4"],
            "I-vnet0-ipv4": ["-p IPv4 --ip-src ! %s -j DROP" % guest_ip],
        }, [("PREROUTING", "-i vnet0 -j libvirt-I-vnet0")]),
        ("ip4", "filter"): state("ip4", "filter", {
            "libvirt-in": ["-m physdev --physdev-in vnet0 -g FI-vnet0"],
            "FI-vnet0": ['-p tcp -m tcp --dport 22 -m comment --comment "ssh  in, it\\\'s ok%s" -j ACCEPT' % note,
                         "-j DROP"],
        }, [("FORWARD", "-j libvirt-in")]),
        ("ip6", "filter"): state("ip6", "filter", {
            "libvirt-in": ["-m physdev --physdev-in vnet0 -g FI-vnet0"],
            "FI-vnet0": ip6_rules,
        }, [("FORWARD", "-j libvirt-in")]),
    }


@pytest.fixture
def runner():
    ns = "hfwd-apply-%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        run = Runner(prefix=["ip", "netns", "exec", ns])
        for tool in TOOL_ORDER:
            rc, _out, err = run.restore(tool, FOREIGN[tool])
            assert rc == 0, err
        yield run
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


def dumps(run):
    return {tool: without_comments(run.save(tool)) for tool in TOOL_ORDER}


def owned(run):
    found = {}
    for tool in TOOL_ORDER:
        found.update(parse_save(tool, run.save(tool)))
    return found


def test_apply_rerun_and_removal_leave_foreign_rules_and_policies_alone(runner):
    initial = dumps(runner)
    assert builtin_policies("ip4", initial["ip4"])[("filter", "FORWARD")] == "DROP"
    first = _apply.converge(desired(), runner)
    assert first.changed and set(first.payloads) == {"eb", "ip4", "ip6"}
    assert owned(runner) == desired()
    applied = dumps(runner)
    for tool in TOOL_ORDER:
        assert foreign_view(tool, applied[tool]) == foreign_view(tool, initial[tool])
        assert builtin_policies(tool, applied[tool]) == builtin_policies(tool, initial[tool])
    again = _apply.converge(desired(), runner)
    assert not again.changed and again.payloads == {} and again.diff == []
    assert dumps(runner) == applied
    removed = _apply.converge({}, runner)
    assert removed.changed
    assert dumps(runner) == initial


def test_check_mode_changes_nothing(runner):
    before = dumps(runner)
    result = _apply.converge(desired(), runner, check_mode=True)
    assert result.changed and "-I FORWARD 1 -j libvirt-in" in result.payloads["ip4"]
    assert [d["before_header"] for d in result.diff][0].startswith("ebtables nat")
    assert dumps(runner) == before


def test_failure_in_ip6_rolls_back_eb_and_ip4(runner):
    _apply.converge(desired(), runner)
    before = dumps(runner)
    with pytest.raises(ApplyError) as err:
        _apply.converge(desired(ip6_bad=True, changed=True), runner)
    ctx = err.value.context
    assert ctx["tool"] == "ip6" and ctx["rc"] != 0 and ctx["rolled_back"] == ["eb", "ip4"]
    assert ctx["rollback_errors"] == []
    assert any("-j FI-nope" in line for line in ctx["lines"])
    assert "FI-nope" in ctx["stderr"] and "rolled back" in str(err.value)
    assert dumps(runner) == before


def test_our_hooks_move_back_above_an_admin_rule(runner):
    _apply.converge(desired(), runner)
    rc, _out, err = runner.restore("ip4", "*filter\n-I FORWARD 1 -s 10.9.9.9/32 -j ACCEPT\nCOMMIT\n")
    assert rc == 0, err
    result = _apply.converge(desired(), runner)
    assert result.changed
    forward = [l for l in runner.save("ip4").splitlines() if l.startswith("-A FORWARD")]
    assert forward == ["-A FORWARD -j libvirt-in", "-A FORWARD -s 10.9.9.9/32 -j ACCEPT", "-A FORWARD -j DOCKER-USER"]
    assert not _apply.converge(desired(), runner).changed


def test_missing_binary_is_reported_before_anything_changes(runner, tmp_path):
    for tool in TOOL_ORDER:
        for binary in TOOLS[tool]:
            if binary != "ip6tables-restore":
                os.symlink(shutil.which(binary), tmp_path / binary)
    before = dumps(runner)
    limited = Runner(prefix=runner.prefix, path=str(tmp_path))
    with pytest.raises(ToolMissingError) as err:
        _apply.converge(desired(), limited)
    assert "ip6tables-restore" in str(err.value) and "'iptables'" in str(err.value)
    assert dumps(runner) == before
