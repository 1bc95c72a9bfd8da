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

from dataclasses import dataclass, field, replace
from typing import Callable, List

from .errors import ApplyError, EngineError, ResolveError, StoreError
from . import backend as _backend
from .nftables import compile_l2 as _compile_nft
from .xtables import compile as _compile_xt
from .host import placement as _guests
from .xtables import names as _names
from .xtables import networks as _netfw
from .nftables import networks as _netfw_nft
from .nftables.writer import render_table
from .language import resolve as _resolve
from .host import runtime as _runtime
from .host import ledger as _ledger
from .host import store as _store
from .xtables.ruleset import TOOL_ORDER, merge_rulesets

from .xtables.plan import TOOL_LABEL, plan as plan_rules
from .host.runner import host_lock
from .xtables.save_parse import Scope, parse_counters
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
    payloads: dict = field(default_factory=dict)
    changed_chains: List[str] = field(default_factory=list)
    nft_notes: List[str] = field(default_factory=list)


def build_desired(state: _store.StoreState, devices=None, skip_unresolvable=False, resolved=None,
                  links=None, runtime=None, nft_out=None):
    """Compile the whole desired ruleset from a store state.

    ``nft_out``: a list when the nftables backend filters the NICs: their rules are compiled by
    _compile_nft and appended to it (an NftDesired) instead of going into the xtables ruleset;
    the networks' tables (_netfw_nft) join that NftDesired's tables.

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
    _names.check_injective(p.tap for p in placements if p.tap is not None)
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
    if nft_out is not None:
        nft_out.append(_compile_nft.compile_nics(instantiations))
        instantiations = []
    nics = _compile_xt.compile_nics(instantiations)
    if state.drop_unbound_taps:
        nics = _compile_xt.add_unbound_drop(nics, _guests.placed_taps(placements))
    ordered = [state.networks[name] for name in sorted(state.networks)]
    if nft_out is not None:
        nft_out[0].tables.update(_netfw_nft.compile_networks(ordered))
        ordered = []
    networks = _netfw.compile_networks(ordered)
    # nwfilter's FORWARD jumps first, then the networks' (see docs/docsite/rst/design.rst: ordering)
    return merge_rulesets([nics, networks]), warnings


def _refuse_shared_chains(desired, foreign):
    """libvirt-in & co. hold every NIC's jump: rewriting them would unfilter libvirtd's NICs."""
    if not foreign:
        return
    for state in desired.values():
        if set(state.chains) & set(_names.NWF_GLOBAL):
            raise StoreError(
                "libvirtd's nwfilter driver filters %s on this host and shares the chains %s with "
                "us: take those NICs over (guest_nic_filter takeover=true) or stop libvirtd's "
                "nwfilter driver first" % (", ".join(sorted(foreign)), ", ".join(_names.NWF_GLOBAL)),
                devices=sorted(foreign),
            )


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

    xtables: dict  # Ruleset for ebtables/iptables/ip6tables
    nft_tables: dict  # {(family, table): nft text} when the nftables backend is chosen
    nft_notes: List[str]
    scope: Scope
    backend: str
    warnings: List[str]
    # the ledger while this run writes (the old one and everything desired), and once it succeeded
    ledger_during: object = None
    ledger_after: object = None


def desired_for_host(config_dir, state, runner, libvirt_binding_dir=LIBVIRT_BINDING_DIR, backend=None,
                     skip_unresolvable=False, resolved=None, fallback=None, owner=None):
    """The whole desired state of a host; shared by reconcile and the re-apply watcher.

    With nftables chosen and fallback allowed (``fallback``, else the stored choice), the kernel is
    probed first, and when nftables cannot take the host (a rule it cannot express, a missing
    kernel feature) the host is compiled for xtables instead, with a warning (see _backend).

    ``owner``: the store state whose ledger says what is ours in the kernel now (default ``state``;
    reconcile passes the state before its change)."""
    chosen = _backend.choose(config_dir, backend)
    allowed = _backend.fallback_allowed(config_dir, fallback)
    args = (config_dir, state, runner, libvirt_binding_dir, skip_unresolvable, resolved, owner or state)
    try:
        host = _desired_on(chosen, *args)
        if chosen == "nftables" and allowed:
            _backend.check_kernel(runner, host.nft_tables)
        return host
    except EngineError as exc:
        warning = _backend.fallback_warning(exc, chosen, allowed)
        if warning is None:
            raise
    host = _desired_on("xtables", *args)
    host.warnings.append(warning)
    return host


def _desired_on(chosen, config_dir, state, runner, libvirt_binding_dir, skip_unresolvable, resolved, owner):
    links, runtime, warnings = host_view(config_dir, state, runner)
    placed, _placement_warnings = _guests.place_bindings(state.bindings, runtime, links)
    ours = _bound_taps(state, placed)
    # a NIC libvirtd filters stays libvirtd's unless our store binds it (takeover)
    libvirt_bound = frozenset(runner.libvirt_bound_devices(libvirt_binding_dir))
    foreign = libvirt_bound - ours
    nft_out = [] if chosen == "nftables" else None
    desired, build_warnings = build_desired(state, skip_unresolvable=skip_unresolvable, resolved=resolved,
                                            links=links, runtime=runtime, nft_out=nft_out)
    nft_tables = nft_out[0].tables if nft_out else {}
    if owner is state:
        owner_taps = ours
    else:  # an entry that no longer parses has no tap to place (require_sound keeps it out of ``state``)
        sound = {k: b for k, b in owner.bindings.items() if not isinstance(b, _store.Broken)}
        owner_taps = _bound_taps(owner.with_changes(bindings=sound),
                                 _guests.place_bindings(sound, runtime, links)[0])
    during, implied, claims, wanted = ownership(owner.ledger, owner_taps, desired, nft_tables, libvirt_bound & ours)
    scope = Scope(manage_networks=state.manage_networks, foreign_devices=foreign, ledger=during,
                  implied_devices=implied, adopted_devices=libvirt_bound & ours, claims=claims,
                  wanted=wanted.chains)
    _refuse_shared_chains(desired, foreign)
    _refuse_drop_with_foreign(state, foreign)
    return HostDesired(desired, nft_tables, nft_out[0].notes if nft_out else [],
                       scope, chosen, warnings + build_warnings, ledger_during=during, ledger_after=wanted)


def _bound_taps(state, placed):
    return {b.portdev for b in state.bindings.values() if b.portdev} | _guests.placed_taps(placed)


def ownership(old, owner_taps, desired, nft_tables, taken_over):
    """(ledger while writing, implied devices, claims, ledger once written) of one run.

    ``old`` is the store's ledger, or None for a store kept before the ledger existed: then the
    chains of the devices it binds (``owner_taps``) are taken as ours, and the ledger is recorded
    only once the run succeeded.  A per-device chain the run writes for the first time is a claim
    (see Scope), except on a NIC taken over from libvirtd (``taken_over``), whose chains libvirtd
    wrote under our names; the global and network chains are libvirt's shared layout, taken over
    as before.
    """
    wanted = _ledger.ledger_of(desired, nft_tables)
    if old is not None:
        during, implied = old.union(wanted), None
        fresh = wanted.chains - old.chains
    else:
        during, implied = None, frozenset(owner_taps)
        fresh = {c for c in wanted.chains if _names.device_of_chain(c[2]) not in implied}
    claims = frozenset(c for c in fresh if _names.device_of_chain(c[2]) not in (None, *taken_over))
    return during, implied, claims, wanted


def _bridge_nf_warnings(desired, runner):
    if not any(key[0] != "eb" and any(_names.device_of_chain(c) for c in st.chains) for key, st in desired.items()):
        return []
    return ["%s is 0: iptables/ip6tables rules never see bridged guest traffic; set it to 1 "
            "(the hypervisor role does, when asked)" % sysctl for sysctl in runner.bridge_nf_disabled()]


def reconcile(config_dir, mutate: Callable, runner, check_mode, lock_file=DEFAULT_LOCK_FILE, lock_timeout=30,
              libvirt_binding_dir=LIBVIRT_BINDING_DIR, backend=None, fallback=None):
    """Apply ``mutate`` to the store and converge the kernel to the result, under the host lock.

    The store is written first and put back if the kernel apply fails, so store and kernel move
    together.  In check mode nothing is written and the same plan decides ``changed``.
    """
    with host_lock(lock_file, lock_timeout):
        before = _store.load_store(config_dir)
        after, warnings = mutate(before)
        # an entry that no longer parses blocks only the runs that keep it (redefine or remove it)
        _store.require_sound(after)
        resolved = {} if check_mode else check_bindings_resolve(after)
        host = desired_for_host(config_dir, after, runner, libvirt_binding_dir, backend,
                                skip_unresolvable=check_mode, resolved=resolved, fallback=fallback, owner=before)
        store_changed = before != after
        outcome = Outcome(False, store_changed, False, before=before, after=after,
                          warnings=list(before.warnings) + list(warnings) + _bridge_nf_warnings(host.xtables, runner)
                          + host.warnings)
        outcome.diff.extend(_store.store_diff(before, after))
        writer = None
        # recorded before written: at every instant the ledger holds everything of ours in the kernel
        during = after if before.ledger is None else after.with_changes(ledger=host.ledger_during)
        # a format 1 store is replaced by the document on first use, changed or not
        if (store_changed or before.legacy or during.ledger != before.ledger) and not check_mode:
            writer = _store.write_changes(config_dir, before, during)
        try:
            result, nft_result = _backend.converge_both(host.backend, host.xtables, host.nft_tables, runner,
                                                        host.scope, check_mode)
        except BaseException as exc:  # noqa: B902  any failure of the kernel apply puts the store back
            if writer is not None:
                writer.rollback()
            if isinstance(exc, EngineError) or not isinstance(exc, Exception):
                raise
            # a bug outside the xtables apply (which reports its own): one message, no traceback
            raise ApplyError("unexpected %s while converging the kernel: %s (a bug: please report it); the "
                             "store was put back, run again to converge" % (type(exc).__name__, exc),
                             store_rolled_back=writer is not None) from exc
        if not check_mode and during.ledger != host.ledger_after:
            _store.write_changes(config_dir, during, during.with_changes(ledger=host.ledger_after))
        outcome.rules_changed = result.changed
        outcome.diff.extend(result.diff)
        outcome.payloads = result.payloads
        outcome.changed_chains = changed_chains(result.plan)
        outcome.warnings.extend(result.warnings)
        outcome.changed = store_changed or result.changed
        _add_nft(outcome, nft_result, host.nft_notes)
        outcome.warnings.extend(_backend.network_warnings(host.backend, list(after.networks.values()), runner,
                                                          check_mode))
        if _backend.record(config_dir, backend, check_mode, fallback):
            outcome.changed = True
        return outcome


def _add_nft(outcome, nft_result, nft_notes):
    """Fold the nftables backend's result into the outcome."""
    outcome.nft_notes = list(nft_notes)
    if nft_result is None or not nft_result.changed:
        return
    outcome.rules_changed = outcome.changed = True
    outcome.diff.extend(nft_result.diff)
    outcome.payloads["nft"] = nft_result.payload


def changed_chains(the_plan):
    """Names of the owned chains a plan declares (rewrites) or deletes."""
    names = set()
    for table in the_plan.tables:
        for line in table.lines:
            if line.startswith(":"):
                names.add(line[1:].split()[0])
            elif line.startswith("-X "):
                names.add(line.split()[1])
    return sorted(names)


def render_payloads(desired, nft_out=None):
    """Restore payloads that load ``desired`` on a host holding none of our chains; with the
    nftables backend also the ``nft -f`` text (key ``nft``) and how rules were shared (``nft_notes``)."""
    the_plan = plan_rules(desired, {})
    rendered = {TOOL_LABEL[tool]: the_plan.payload(tool) for tool in the_plan.tools_changed}
    if nft_out:
        rendered["nft"] = "".join(render_table(table) for _key, table in sorted(nft_out[0].tables.items()))
        rendered["nft_notes"] = list(nft_out[0].notes)
    return rendered


def gather(runner, state):
    """Live owned chains, grouped by guest device and by network chain, each rule with its counters.

    Each chain is a list of {rule, packets, bytes}, read with ``*-save -c`` (a read only: the
    counters are neither zeroed nor written back).
    """
    scope = Scope(manage_networks=state.manage_networks, ledger=state.ledger)
    by_device, networks = {}, {}
    for tool in TOOL_ORDER:
        counted = parse_counters(tool, runner.save_counters(tool), scope)
        for (table, name), rules in sorted(counted.items()):
            label = "%s %s %s" % (TOOL_LABEL[tool], table, name)
            entries = [dict(rule=r.rule, packets=r.packets, bytes=r.bytes) for r in rules]
            device = _names.device_of_chain(name)
            if device:
                by_device.setdefault(device, {})[label] = entries
            elif name.startswith("LIBVIRT_"):
                networks[label] = entries
    devices = runner.list_devices()
    return {"chains_by_device": by_device, "networks": networks, "devices": devices}
