# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection shares: options, library checks, the error edge."""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import missing_required_lib

from ._engine.host.defaults import DEFAULT_CONFIG_DIR, DEFAULT_LOCK_FILE

try:
    import lxml.etree  # noqa: F401 pylint: disable=unused-import
    LXML_IMPORT_ERROR = None
except ImportError:
    LXML_IMPORT_ERROR = traceback.format_exc()

try:
    import netaddr  # noqa: F401 pylint: disable=unused-import
    NETADDR_IMPORT_ERROR = None
except ImportError:
    NETADDR_IMPORT_ERROR = traceback.format_exc()


def common_argument_spec(with_backend=True, **extra):
    """Options every module takes (the common doc fragment; ``backend``: common.backend)."""
    spec = dict(
        config_dir=dict(type="path", default=DEFAULT_CONFIG_DIR),
        lock_file=dict(type="path", default=DEFAULT_LOCK_FILE),
        lock_timeout=dict(type="int", default=30),
    )
    if with_backend:
        spec["backend"] = dict(type="str", choices=["xtables", "nftables"])
        # no default: not given means the host's stored choice (see common.backend)
        spec["backend_fallback"] = dict(type="bool")
    spec.update(extra)
    return spec


def check_libraries(module):
    for name, error in (("lxml", LXML_IMPORT_ERROR), ("netaddr", NETADDR_IMPORT_ERROR)):
        if error:
            module.fail_json(msg=missing_required_lib(name), exception=error)


def run_action(module, action, *args):
    """Check the libraries, run ``_actions.<action>(module.params, *args)``, report, exit.

    The one place an engine error becomes a module failure.
    """
    check_libraries(module)
    from ._engine import actions as _actions
    from ._engine.errors import EngineError

    try:
        result = getattr(_actions, action)(module.params, *args)
    except EngineError as exc:
        fail_on_engine_error(module, exc)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


def fail_on_engine_error(module, exc):
    """The one place an engine error becomes a module failure."""
    context = {k: v for k, v in exc.context.items() if v is not None}
    module.fail_json(msg=exc.msg, error=type(exc).__name__, **context)
