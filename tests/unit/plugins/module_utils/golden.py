# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Golden files: REGEN=1 in the environment rewrites them from the code under test (review the diff)."""

import os


def golden(path, text):
    """The golden text stored at ``path``; with REGEN set, ``text`` is written there first."""
    if os.environ.get("REGEN"):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    with open(path, encoding="utf-8") as handle:
        return handle.read()
