# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One entry point for every writer: change the store, converge the kernel, or neither.

Every module (and the re-apply command) calls reconcile() with a pure function that turns the
current StoreState into the desired one.  The desired ruleset is always computed for the WHOLE
host (all bindings, all networks), so a filter redefinition rebuilds every NIC that uses it, and
any drift of chains we own is healed by whichever writer runs next.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field, replace
from typing import Callable, List

from .errors import ApplyError, EngineError, ResolveError, StoreError
from . import backend as _backend
from .host import placement as _guests
from .language import resolve as _resolve
from .language.devices import check_injective
from .host import runtime as _runtime
from .host import store as _store
from .host.ledger import Ledger
from .host.runner import host_lock
from .shapes import Result, Scope
from .host.defaults import DEFAULT_LOCK_FILE, LIBVIRT_BINDING_DIR


@dataclass
class Outcome:
    changed: bool
    store_changed: bool
    rules_changed: bool
    diff: List[dict] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    before: object = None
    after: object = None
    result: Result = field(default_factory=Result)
    backend: object = None  # the backend module that filtered the host in this run
    nft_notes: List[str] = field(default_factory=list)

    @property
    def payloads(self):
        return self.result.payloads

    @property
    def changed_chains(self):
        return self.result.changed_chains

    @property
    def rebuilt_devices(self):
        return self.result.rebuilt_devices


def build_desired(state: _store.StoreState, impl, devices=None, skip_unresolvable=False, resolved=None,
                  links=None, runtime=None):
    """(desired state of backend ``impl`` for the whole host, warnings), from a store state.

    ``devices``: names of the network devices present on the host, or None to treat every bound
    device as present (rendered output).  A binding whose device is absent gets no rules: the
    name may later be given to another guest, which must never inherit these rules.
    ``links`` (device -> MAC) replaces ``devices`` where MACs are known; ``runtime`` is the qemu
    hook's map of running guests.  Both place the bindings that follow guests (see _guests).
    ``resolved``: instantiations already computed by check_bindings_resolve, by binding key.
    """
    resolved = resolved or {}
    if links is None and devices is not None:
        links = {dev: None for dev in devices}
    placements, warnings = _guests.place_bindings(state.bindings, runtime or {}, links)
    check_injective(p.tap for p in placements if p.tap is not None)
    instantiations, memo = [], _resolve.new_memo()
    for placement in placements:
        if placement.tap is None:
            continue
        try:
            inst = resolved.get(placement.key) or _resolve.instantiate(placement.binding, state.filters, memo)
        except EngineError as exc:
            if not skip_unresolvable:
                raise
            warnings.append("check mode: the rules of %s cannot be computed yet (%s)"
                            % (placement.binding.label, exc.msg))
            continue
        instantiations.append(replace(inst, portdev=placement.tap))
    unbound = _guests.placed_taps(placements) if state.drop_unbound_taps else None
    networks = [state.networks[name] for name in sorted(state.networks)]
    return impl.compile_host(instantiations, networks, unbound), warnings


def check_bindings_resolve(state: _store.StoreState):
    """Every stored binding must still resolve; a filter change that breaks one is refused.

    Returns the instantiations by device, so build_desired need not resolve them a second time.
    """
    resolved, memo = {}, _resolve.new_memo()
    for key in sorted(state.bindings):
        binding = state.bindings[key]
        try:
            resolved[key] = _resolve.instantiate(binding, state.filters, memo)
        except EngineError as exc:
            raise ResolveError(
                "the change would break the binding of %s: %s" % (binding.label, exc.msg),
                portdev=binding.portdev, binding=key,
            )
    return resolved


def host_view(config_dir, state, runner):
    """(links, runtime, warnings): what placing guest bindings needs to know about the host.

    MACs are read only when some binding follows a guest, so hosts (and test fakes) with fixed
    bindings only keep asking the runner for device names alone.
    """
    if not any(b.portdev is None for b in state.bindings.values()):
        return {dev: None for dev in runner.list_devices()}, {}, []
    runtime, warnings = _runtime.load_runtime(config_dir)
    return runner.list_links(), runtime, warnings


def placements(config_dir, state, runner):
    """Where each stored binding is now (a list of _guests.Placement) and warnings."""
    links, runtime, warnings = host_view(config_dir, state, runner)
    placed, more = _guests.place_bindings(state.bindings, runtime, links)
    return placed, warnings + more


def _refuse_drop_with_foreign(state, foreign):
    """Our DROP for unbound vnet* taps stands above libvirtd's jumps: it would cut its NICs off."""
    cut_off = sorted(dev for dev in foreign if dev.startswith("vnet"))
    if state.drop_unbound_taps and cut_off:
        raise StoreError(
            "drop_unbound_taps would drop the traffic of %s, which libvirtd's nwfilter driver filters: "
            "take those NICs over first (guest_nic_filter takeover=true)" % ", ".join(cut_off),
            devices=cut_off,
        )


@dataclass
class HostDesired:
    """Everything a host should hold, computed from a store state and the host's devices."""

    backend: object  # the backend module filtering this host in this run (see _backend)
    desired: object  # its desired state
    scope: Scope
    warnings: List[str]
    # the ledger while this run writes (the old one and everything desired), and once it succeeded
    ledger_during: object = None
    ledger_after: object = None

    @property
    def notes(self):
        return self.backend.notes(self.desired)


def desired_for_host(config_dir, state, runner, libvirt_binding_dir=LIBVIRT_BINDING_DIR, backend=None,
                     skip_unresolvable=False, resolved=None, fallback=None, owner=None):
    """The whole desired state of a host; shared by reconcile and the re-apply watcher.

    The backend is chosen here, once.  When it cannot take the host (a rule it cannot express, a
    kernel that lacks a feature: its probe runs first when fallback is allowed) and fallback is
    allowed (``fallback``, else the stored choice), the host is compiled for the fallback backend
    instead, with a warning (see _backend).

    ``owner``: the store state whose ledger says what is ours in the kernel now (default ``state``;
    reconcile passes the state before its change)."""
    chosen = _backend.select(_backend.choose(config_dir, backend, runner))
    allowed = _backend.fallback_allowed(config_dir, fallback)
    args = (config_dir, state, runner, libvirt_binding_dir, skip_unresolvable, resolved, owner or state)
    try:
        host = _desired_on(chosen, *args)
        if allowed:
            chosen.probe(runner, host.desired)
        return host
    except EngineError as exc:
        instead = _backend.fallback_for(chosen, exc, allowed)
        if instead is None:
            raise
    host = _desired_on(instead[0], *args)
    host.warnings.append(instead[1])
    return host


def _desired_on(impl, config_dir, state, runner, libvirt_binding_dir, skip_unresolvable, resolved, owner):
    links, runtime, warnings = host_view(config_dir, state, runner)
    placed, _placement_warnings = _guests.place_bindings(state.bindings, runtime, links)
    ours = _bound_taps(state, placed)
    # a NIC libvirtd filters stays libvirtd's unless our store binds it (takeover)
    libvirt_bound = frozenset(runner.libvirt_bound_devices(libvirt_binding_dir))
    foreign = libvirt_bound - ours
    desired, build_warnings = build_desired(state, impl, skip_unresolvable=skip_unresolvable, resolved=resolved,
                                            links=links, runtime=runtime)
    if owner is state:
        owner_taps = ours
    else:  # an entry that no longer parses has no tap to place (require_sound keeps it out of ``state``)
        sound = {k: b for k, b in owner.bindings.items() if not isinstance(b, _store.Broken)}
        owner_taps = _bound_taps(owner.with_changes(bindings=sound),
                                 _guests.place_bindings(sound, runtime, links)[0])
    during, implied, claims, wanted = _backend.ownership(impl, owner.ledger, owner_taps, desired,
                                                         libvirt_bound & ours)
    scope = Scope(manage_networks=state.manage_networks, foreign_devices=foreign, ledger=during,
                  implied_devices=implied, adopted_devices=libvirt_bound & ours, claims=claims,
                  wanted=wanted.chains)
    impl.refuse_foreign(desired, foreign)
    _refuse_drop_with_foreign(state, foreign)
    return HostDesired(impl, desired, scope, warnings + build_warnings, ledger_during=during, ledger_after=wanted)


def _bound_taps(state, placed):
    return {b.portdev for b in state.bindings.values() if b.portdev} | _guests.placed_taps(placed)


def _bridge_nf_warnings(host, runner):
    if not host.backend.has_l3_rules(host.desired):
        return []
    return ["%s is 0: layer 3/4 rules never see bridged guest traffic; set it to 1 "
            "(the hypervisor role does, when asked)" % sysctl for sysctl in runner.bridge_nf_disabled()]


@contextlib.contextmanager
def collector_paused():
    """Python's cyclic garbage collector off for the block, as it was afterwards.

    A run at 1,000 NICs allocates about a million small objects that all stay alive until it
    ends (rule instances, compiled rules, parsed live rules): the collector walked them again
    and again and found nothing, a sixth to a quarter of the run's CPU (bench/README.md, third
    round).  Reference counting still frees everything that is not a cycle, and the collector
    runs again as soon as the block ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _nothing_to_record(state, ledger):
    """True for an empty store without a ledger and nothing of ours in the kernel: a run that
    changed nothing must not create a store (a decommissioned host stays without one)."""
    return state.ledger is None and ledger == Ledger() and state == _store.StoreState()


def reconcile(config_dir, mutate: Callable, runner, check_mode, lock_file=DEFAULT_LOCK_FILE, lock_timeout=30,
              libvirt_binding_dir=LIBVIRT_BINDING_DIR, backend=None, fallback=None):
    """Apply ``mutate`` to the store and converge the kernel to the result, under the host lock.

    The store is written first and put back if the kernel apply fails, so store and kernel move
    together.  In check mode nothing is written and the same plan decides ``changed``.
    """
    with host_lock(lock_file, lock_timeout), collector_paused():
        before = _store.load_store(config_dir)
        after, warnings = mutate(before)
        # an entry that no longer parses blocks only the runs that keep it (redefine or remove it)
        _store.require_sound(after)
        resolved = {} if check_mode else check_bindings_resolve(after)
        host = desired_for_host(config_dir, after, runner, libvirt_binding_dir, backend,
                                skip_unresolvable=check_mode, resolved=resolved, fallback=fallback, owner=before)
        store_changed = before != after
        outcome = Outcome(False, store_changed, False, before=before, after=after, nft_notes=host.notes,
                          warnings=list(before.warnings) + list(warnings) + _bridge_nf_warnings(host, runner)
                          + host.warnings)
        outcome.diff.extend(_store.store_diff(before, after))
        writer = None
        # recorded before written: at every instant the ledger holds everything of ours in the kernel
        during = after if before.ledger is None else after.with_changes(ledger=host.ledger_during)
        # a format 1 store is replaced by the document on first use, changed or not
        if (store_changed or before.legacy or during.ledger != before.ledger) and not check_mode:
            writer = _store.write_changes(config_dir, before, during)
        try:
            result = _backend.converge_all(host.backend, host.desired, runner, host.scope, check_mode)
        except BaseException as exc:  # noqa: B902  any failure of the kernel apply puts the store back
            if writer is not None:
                writer.rollback()
            if isinstance(exc, EngineError) or not isinstance(exc, Exception):
                raise
            # a bug outside the xtables apply (which reports its own): one message, no traceback
            raise ApplyError("unexpected %s while converging the kernel: %s (a bug: please report it); the "
                             "store was put back, run again to converge" % (type(exc).__name__, exc),
                             store_rolled_back=writer is not None) from exc
        if not check_mode and during.ledger != host.ledger_after and not _nothing_to_record(during, host.ledger_after):
            _store.write_changes(config_dir, during, during.with_changes(ledger=host.ledger_after))
        outcome.result = result
        outcome.backend = host.backend
        outcome.rules_changed = result.changed
        outcome.diff.extend(result.diff)
        outcome.warnings.extend(result.warnings)
        outcome.changed = store_changed or result.changed
        outcome.warnings.extend(host.backend.network_warnings(list(after.networks.values()), runner, check_mode))
        if _backend.record(config_dir, backend, check_mode, fallback, default=_backend.host_default(runner)):
            outcome.changed = True
        return outcome


def gather(runner, state):
    """Live rules we own (shapes.Gathered), from every backend that holds any; a read only."""
    return _backend.gather_all(runner, Scope(manage_networks=state.manage_networks, ledger=state.ledger))
