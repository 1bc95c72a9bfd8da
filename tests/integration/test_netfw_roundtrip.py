# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every virtual network golden survives the kernel: restore it with --noflush into a fresh
network namespace and *-save prints the same rules back, chain by chain, in the same order.

Needs root and iptables/ip6tables; skipped otherwise.
"""

import os
import shutil
import subprocess
import uuid

import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), os.pardir, "unit", "plugins", "module_utils", "fixtures", "netfw")
GOLDENS = sorted(f[:-4] for f in os.listdir(FIXTURES) if f.endswith(".txt"))
TOOLS = {"ip4": ("iptables-save", "iptables-restore"), "ip6": ("ip6tables-save", "ip6tables-restore")}

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(b) for pair in TOOLS.values() for b in pair) or not shutil.which("ip"),
    reason="needs root, ip, iptables-save/restore and ip6tables-save/restore",
)


@pytest.fixture
def netns():
    name = "hfwhfwe-%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def golden_sections(case):
    """{(tool, table): restore text} from a golden written by the unit tests."""
    sections, key = {}, None
    with open(os.path.join(FIXTURES, case + ".txt")) as handle:
        for line in handle:
            if line.startswith("# "):
                tool, table = line[2:].split()
                key = (tool, table)
                sections[key] = ""
            else:
                sections[key] += line
    return sections


def chains_of(text, table):
    """{chain: [rules]} of every -A line in one table's section of save or restore text."""
    chains, current = {}, None
    for line in text.splitlines():
        if line.startswith("*"):
            current = line[1:]
        elif current == table and line.startswith("-A "):
            chain, sep, rule = line[3:].partition(" ")
            chains.setdefault(chain, []).append(rule)
        elif current == table and line.startswith(":LIBVIRT_"):
            chains.setdefault(line[1:].split()[0], [])
    return chains


def in_netns(ns, argv, stdin=None):
    done = subprocess.run(["ip", "netns", "exec", ns] + argv, input=stdin, capture_output=True, text=True, check=False)
    assert done.returncode == 0, "%s failed: %s" % (" ".join(argv), done.stderr)
    return done.stdout


@pytest.mark.parametrize("case", GOLDENS)
def test_golden_round_trip(netns, case):
    sections = golden_sections(case)
    assert sections, "golden %s is empty" % case
    for tool in TOOLS:
        save, restore = TOOLS[tool]
        payload = "".join(text for (t, _table), text in sections.items() if t == tool)
        in_netns(netns, [restore, "--noflush"], payload)
        for (t, table), text in sections.items():
            if t != tool:
                continue
            live = chains_of(in_netns(netns, [save, "-t", table]), table)
            assert live == chains_of(text, table), "%s %s %s differs after restore" % (case, tool, table)
