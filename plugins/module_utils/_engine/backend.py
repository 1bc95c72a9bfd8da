# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backend seam: which backend filters a host, chosen once per reconcile, and converging all.

A backend is a module with one interface (xtables/backend.py, nftables/backend.py):
``compile_host`` (instantiations, networks -> desired state), ``converge`` (read the live state
we own, plan, apply, verify -> shapes.Result), ``drifted``, ``gather``, ``render``, ``probe``,
``available``, ``empty`` and a few questions the service asks (``notes``, ``has_l3_rules``,
``refuse_foreign``, ``network_warnings``).  ``select`` is the only place a backend name is
looked at.

The choice is per call (the ``backend`` option) and per host: the last backend a call asked for
is kept in ``config_dir/backend`` so later writers (and the re-apply command) use it.  Whatever
the choice, every backend is converged in one run (``converge_all``): the chosen one to the
desired rules, the others to nothing, so switching a host removes the old backend's rules by the
same mechanism as any other change.  The chosen backend is applied first: for a moment both
filter (stricter, never open).

Fallback (``backend_fallback``): when nftables cannot express a binding's rules or the kernel
lacks a feature our tables use, a host that allows it is filtered by xtables instead, whole host
(NICs and networks), for that run only.  The permission is kept next to the backend (a second
line ``fallback`` in ``config_dir/backend``) so the re-apply command and the qemu hook behave
like the last module call; the fallback itself is never stored: the stored backend stays
nftables, and every run tries it again and warns again until the cause is fixed.
"""

from __future__ import annotations

import os

from .errors import StoreError, ToolMissingError
from .host import store as _store
from .nftables import backend as _nftables
from .xtables import backend as _xtables

IMPLEMENTATIONS = {"xtables": _xtables, "nftables": _nftables}
BACKENDS = tuple(IMPLEMENTATIONS)
DEFAULT = "xtables"
# a backend that may give way, and to which (backend_fallback)
FALLBACK = {"nftables": "xtables"}
BACKEND_FILE = "backend"


FALLBACK_WORD = "fallback"


def _read(config_dir):
    """(backend, fallback allowed) kept in the store, or (None, None)."""
    path = os.path.join(config_dir, BACKEND_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            words = handle.read().split()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise StoreError("cannot read %s: %s" % (path, exc), path=path)
    if not words or words[0] not in BACKENDS or words[1:] not in ([], [FALLBACK_WORD]):
        raise StoreError("%s holds %r, not one of %s (optionally followed by a line '%s'): fix or remove the file"
                         % (path, " ".join(words)[:40], ", ".join(BACKENDS), FALLBACK_WORD), path=path)
    return words[0], len(words) > 1


def stored(config_dir):
    """The host's default backend from the store, or None."""
    return _read(config_dir)[0]


def choose(config_dir, requested=None, runner=None):
    """The backend name for a call: the requested one, else the stored one, else the default for
    this host (``runner`` given): nftables where the ebtables tools are absent, else xtables."""
    if requested is not None and requested not in BACKENDS:
        raise StoreError("backend %r is not one of %s" % (requested, ", ".join(BACKENDS)), backend=requested)
    return requested or stored(config_dir) or host_default(runner)


def host_default(runner=None):
    """xtables, the default, unless this host lacks the ebtables tools (RHEL 10 and its kind):
    then nftables, which needs none of them."""
    if runner is None:
        return DEFAULT
    try:
        runner.which("eb")
    except ToolMissingError:
        return "nftables"
    return DEFAULT


def fallback_allowed(config_dir, requested=None):
    """Whether nftables may give way to xtables: the call's ``backend_fallback``, else the stored one."""
    return bool(requested) if requested is not None else bool(_read(config_dir)[1])


def record(config_dir, requested, check_mode, fallback=None, default=DEFAULT):
    """Keep ``requested`` (and ``fallback``, when given) as the host defaults; True when they changed.
    ``default``: the backend to keep when none was ever requested (see host_default)."""
    old_backend, old_fallback = _read(config_dir)
    new_backend = requested or old_backend or default
    new_fallback = bool(old_fallback) if fallback is None else bool(fallback)
    if (requested is None or old_backend == requested) and new_fallback == bool(old_fallback):
        return False
    if not check_mode:
        try:
            os.makedirs(config_dir, mode=0o755, exist_ok=True)  # the store's own mode (see _store)
        except OSError as exc:
            raise StoreError("cannot create %s: %s; fix config_dir" % (config_dir, exc.strerror or exc),
                             path=config_dir) from None
        text = new_backend + "\n" + (FALLBACK_WORD + "\n" if new_fallback else "")
        _store.atomic_replace(os.path.join(config_dir, BACKEND_FILE), text.encode())
    return True


def select(name):
    """The backend module called ``name`` (one of BACKENDS)."""
    return IMPLEMENTATIONS[name]


def others(chosen):
    return [impl for impl in IMPLEMENTATIONS.values() if impl is not chosen]


def fallback_for(chosen, exc, allowed):
    """(backend, warning) to filter the host with instead of ``chosen``, or None when ``exc`` stands.

    Only an error raised for ``chosen`` itself (context ``backend``: a rule it cannot express, a
    kernel that lacks a feature) gives way, and only where fallback is allowed."""
    name = FALLBACK.get(chosen.NAME)
    if name is None or not allowed or exc.context.get("backend") != chosen.NAME:
        return None
    return select(name), ("backend %s cannot filter this host (%s); backend_fallback is on, so %s filters every "
                          "NIC and network of this host in this run. The stored backend stays %s: this warning "
                          "repeats on every run until the cause is fixed or backend %s is chosen"
                          % (chosen.NAME, exc.msg, name, chosen.NAME, name))


def ownership(impl, old, owner_taps, desired, taken_over):
    """(ledger while writing, implied devices, claims, ledger once written) of one run.

    ``old`` is the store's ledger, or None for a store kept before the ledger existed: then the
    chains of the devices it binds (``owner_taps``) are taken as ours, and the ledger is recorded
    only once the run succeeded.  A per-device chain the run writes for the first time is a claim
    (see shapes.Scope), except on a NIC taken over from libvirtd (``taken_over``), whose chains
    libvirtd wrote under our names; the global and network chains are libvirt's shared layout,
    taken over as before.
    """
    wanted = impl.ledger_of(desired)
    if old is not None:
        during, implied = old.union(wanted), None
        fresh = wanted.chains - old.chains
    else:
        during, implied = None, frozenset(owner_taps)
        fresh = {c for c in wanted.chains if impl.device_of_chain(c[2]) not in implied}
    claims = frozenset(c for c in fresh if impl.device_of_chain(c[2]) not in (None, *taken_over))
    return during, implied, claims, wanted


def converge_all(chosen, desired, runner, scope, check_mode):
    """The chosen backend converged to ``desired``, then every other one, where its tools exist,
    to nothing: one Result for the host."""
    result = chosen.converge(desired, runner, scope, check_mode)
    for other in others(chosen):
        if other.available(runner):
            result = result.merged(other.converge(other.empty(), runner, scope, check_mode))
    return result


def drifted_all(chosen, desired, runner, scope):
    """Whether the live rules differ from what converge_all would leave (it reads, never writes)."""
    if chosen.drifted(desired, runner, scope):
        return True
    return any(other.available(runner) and other.drifted(other.empty(), runner, scope) for other in others(chosen))


def gather_all(runner, scope):
    """The live rules every available backend holds, merged (after a converge only one holds any)."""
    found = None
    for impl in IMPLEMENTATIONS.values():
        if impl.available(runner):
            part = impl.gather(runner, scope)
            found = part if found is None else found.merged(part)
    return found if found is not None else _xtables.gather(runner, scope)
