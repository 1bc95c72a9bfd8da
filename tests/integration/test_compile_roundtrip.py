# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every compiled construct survives the real *-restore / *-save round trip unchanged.

Needs root and the nft-variant tools; runs in a fresh network namespace per case.
"""

import importlib.util
import os
import shutil
import subprocess
import uuid

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables import compile as _compile_xt  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import render_table
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import TOOLS

_CASES_PATH = os.path.join(os.path.dirname(__file__), "..", "unit", "plugins", "module_utils", "compile_xt_cases.py")
_spec = importlib.util.spec_from_file_location("compile_xt_cases", _CASES_PATH)
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)

_BINARIES = ("ip", "ebtables-restore", "ebtables-save", "iptables-restore", "iptables-save",
             "ip6tables-restore", "ip6tables-save")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(any(shutil.which(b) is None for b in _BINARIES), reason="netfilter tools missing"),
]


@pytest.fixture
def netns():
    name = "hfwhfwc-rt-%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def run_in(ns, argv, stdin=None):
    proc = subprocess.run(["ip", "netns", "exec", ns] + argv, input=stdin, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, "%s failed: %s\ninput:\n%s" % (argv, proc.stderr, stdin)
    return proc.stdout


def saved_rules(save_text, table):
    """{chain: [rule text]} of one table in *-save output, in order."""
    rules, current = {}, None
    for line in save_text.splitlines():
        if line.startswith("*"):
            current = line[1:]
        elif current == table and line.startswith("-A "):
            chain, sep, rule = line[3:].partition(" ")
            rules.setdefault(chain, []).append(rule)
    return rules


@pytest.mark.parametrize("case", sorted(cases.CASES))
def test_roundtrip(case, netns):
    needed = cases.IPSETS.get(case, {})
    if needed and shutil.which("ipset") is None:
        pytest.skip("ipset tool missing (needed to create the sets the rules reference)")
    for name, family in needed.items():
        run_in(netns, ["ipset", "create", name, "hash:ip,port,ip", "family", family])
    ruleset = _compile_xt.compile_nics(cases.CASES[case])
    assert ruleset or case == "empty"
    for (tool, table), state in sorted(ruleset.items()):
        save_bin, restore_bin = TOOLS[tool]
        run_in(netns, [restore_bin, "--noflush"], render_table(state))
        live = saved_rules(run_in(netns, [save_bin]), table)
        for name, chain in state.chains.items():
            assert live.get(name, []) == list(chain.rules), "%s %s chain %s" % (tool, table, name)
        for builtin in {b for b, rule in state.hooks}:
            assert live.get(builtin, []) == list(state.hooks_of(builtin)), "%s %s %s" % (tool, table, builtin)
