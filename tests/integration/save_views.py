# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Views of *-save text that integration tests compare before and after a run."""

import os

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.names import is_owned_chain
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import is_builtin_chain
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import jump_target


def without_comments(text):
    """Save text without its '#' lines: they carry dates, so two equal dumps would differ."""
    return "".join(line for line in text.splitlines(True) if not line.startswith("#"))


def is_ours(tool, table, line):
    """Is a save line one of our chains, a rule in one, or our jump from a built-in chain?"""
    words = line.split()
    if line.startswith(":"):
        chain, target = words[0][1:], None
    elif line.startswith("-A "):
        chain, target = words[1], jump_target(" ".join(words[2:]))
    else:
        return False
    if is_owned_chain(tool, table, chain) and not is_builtin_chain(tool, table, chain):
        return True
    return bool(target) and is_owned_chain(tool, table, target)


def foreign_view(tool, text):
    """The lines of a dump that are not ours: what every run must leave byte-identical."""
    kept, table = [], None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        if not is_ours(tool, table, line):
            kept.append(line)
    return kept


def store_bytes(config_dir):
    """{path relative to the store: bytes} of every file in a host store, to compare before/after."""
    found = {}
    for folder, dirs, names in os.walk(config_dir):
        dirs.sort()
        for name in sorted(names):
            with open(os.path.join(folder, name), "rb") as handle:
                found[os.path.relpath(os.path.join(folder, name), config_dir)] = handle.read()
    return found
