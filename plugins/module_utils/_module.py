# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection shares: options, library checks, the error edge."""

from __future__ import annotations

import errno
import os
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


# The libraries the modules need on the host, with the packages that provide them there.
LIBRARIES = (("lxml", "python3-lxml"), ("netaddr", "python3-netaddr"))


def missing_libraries():
    """[(library, package, traceback)] of every library that failed to import, in one list."""
    errors = {"lxml": LXML_IMPORT_ERROR, "netaddr": NETADDR_IMPORT_ERROR}
    return [(name, package, errors[name]) for name, package in LIBRARIES if errors[name]]


def check_libraries(module):
    """Fail once, naming every missing library (not the first one, then the next one next run)."""
    missing = missing_libraries()
    if missing:
        names = ", ".join(name for name, _package, _error in missing)
        packages = " ".join(package for _name, package, _error in missing)
        module.fail_json(msg="%s (the distribution packages: %s)" % (missing_required_lib(names), packages),
                         missing_libraries=[name for name, _package, _error in missing],
                         exception="\n".join(error for _name, _package, error in missing))


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
    if not module._diff:
        # the before/after text of every owned chain is big on a big host: only --diff asks for it
        result.pop("diff", None)
    module.exit_json(**result)


# What the kernel and the file system say to a user who is not root (strerror of EACCES, EPERM).
_DENIED = (os.strerror(errno.EACCES), os.strerror(errno.EPERM), "you must be root")


def privilege_hint(msg, euid=None):
    """``msg`` with "run as root (become: true)" when it failed for want of privilege, else as it is.

    The engine's own advice (fix config_dir, fix its permissions) points the wrong way when the
    task simply did not run as root, which is the common case."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0 and any(text in msg for text in _DENIED):
        return "%s; the task does not run as root: run it as root (become: true)" % msg
    return msg


def fail_on_engine_error(module, exc):
    """The one place an engine error becomes a module failure."""
    context = {k: v for k, v in exc.context.items() if v is not None}
    module.fail_json(msg=privilege_hint(exc.msg), error=type(exc).__name__, **context)
