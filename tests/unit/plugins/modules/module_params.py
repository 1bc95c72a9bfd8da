# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module parameters as Ansible would pass them: every documented default, then what a test gives."""

import yaml


def module_defaults(module):
    """The module's option defaults, read from its documentation (what ansible-doc shows)."""
    options = yaml.safe_load(module.DOCUMENTATION)["options"]
    return {name: spec.get("default") for name, spec in options.items()}


def module_params(module, tmp_path, **given):
    """The defaults with a store and lock file under ``tmp_path``, overridden by ``given``."""
    out = dict(module_defaults(module), config_dir=str(tmp_path / "store"), lock_file=str(tmp_path / "lock"),
               lock_timeout=5)
    out.update(given)
    return out
