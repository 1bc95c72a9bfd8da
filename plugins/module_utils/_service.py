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

from dataclasses import dataclass, field
from typing import Callable, List

from ._errors import EngineError, ResolveError, StoreError
from . import _apply
from . import _compile_xt
from . import _names
from . import _netfw
from . import _resolve
from . import _store
from ._ruleset import merge_rulesets

from ._plan import TOOL_LABEL, plan as plan_rules
from ._runner import host_lock
from ._saveparse import Scope
from ._defaults import DEFAULT_LOCK_FILE, LIBVIRT_BINDING_DIR


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


def build_desired(state: _store.StoreState, devices=None, skip_unresolvable=False, resolved=None):
    """Compile the whole desired ruleset from a store state.

    ``devices``: names of the network devices present on the host, or None to treat every bound
    device as present (rendered output).  A binding whose device is absent gets no rules: the
    name may later be given to another guest, which must never inherit these rules.
    ``resolved``: instantiations already computed by check_bindings_resolve, by device.
    """
    resolved = resolved or {}
    warnings = []
    instantiations = []
    for portdev in sorted(state.bindings):
        binding = state.bindings[portdev]
        if devices is not None and portdev not in devices:
            warnings.append(
                "binding for %s stored, but no device %s exists: no rules were installed for it"
                % (portdev, portdev)
            )
            continue
        try:
            instantiations.append(resolved.get(portdev) or _resolve.instantiate(binding, state.filters))
        except EngineError as exc:
            if not skip_unresolvable:
                raise
            warnings.append("check mode: the rules of %s cannot be computed yet (%s)" % (portdev, exc.msg))
    nics = _compile_xt.compile_nics(instantiations)
    networks = _netfw.compile_networks([state.networks[name] for name in sorted(state.networks)])
    # nwfilter's FORWARD jumps first, then the networks' (see docs/design.md: ordering)
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
    resolved = {}
    for portdev in sorted(state.bindings):
        try:
            resolved[portdev] = _resolve.instantiate(state.bindings[portdev], state.filters)
        except EngineError as exc:
            raise ResolveError(
                "the change would break the binding of %s: %s" % (portdev, exc.msg),
                portdev=portdev,
            )
    return resolved


def reconcile(config_dir, mutate: Callable, runner, check_mode, lock_file=DEFAULT_LOCK_FILE, lock_timeout=30,
              libvirt_binding_dir=LIBVIRT_BINDING_DIR):
    """Apply ``mutate`` to the store and converge the kernel to the result, under the host lock.

    The store is written first and put back if the kernel apply fails, so store and kernel move
    together.  In check mode nothing is written and the same plan decides ``changed``.
    """
    with host_lock(lock_file, lock_timeout):
        before = _store.load_store(config_dir)
        after, warnings = mutate(before)
        resolved = {} if check_mode else check_bindings_resolve(after)
        # a NIC libvirtd filters stays libvirtd's unless our store binds it (takeover)
        foreign = frozenset(runner.libvirt_bound_devices(libvirt_binding_dir)) - set(after.bindings)
        desired, build_warnings = build_desired(after, runner.list_devices(), skip_unresolvable=check_mode,
                                                resolved=resolved)
        scope = Scope(manage_networks=after.manage_networks, foreign_devices=foreign)
        _refuse_shared_chains(desired, foreign)
        if any(key[0] != "eb" and any(_names.device_of_chain(c) for c in st.chains) for key, st in desired.items()):
            for sysctl in runner.bridge_nf_disabled():
                warnings = list(warnings) + [
                    "%s is 0: iptables/ip6tables rules never see bridged guest traffic; set it to 1 "
                    "(the hypervisor role does, when asked)" % sysctl]
        store_changed = before != after
        outcome = Outcome(False, store_changed, False, warnings=list(warnings) + build_warnings,
                          before=before, after=after)
        outcome.diff.extend(_store.store_diff(before, after))
        writer = None
        if store_changed and not check_mode:
            writer = _store.write_changes(config_dir, before, after)
        try:
            result = _apply.converge(desired, runner, scope, check_mode=check_mode)
        except EngineError:
            if writer is not None:
                writer.rollback()
            raise
        outcome.rules_changed = result.changed
        outcome.diff.extend(result.diff)
        outcome.payloads = result.payloads
        outcome.changed_chains = changed_chains(result.plan)
        outcome.warnings.extend(result.warnings)
        outcome.changed = store_changed or result.changed
        return outcome


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


def render_payloads(desired):
    """Restore payloads that load ``desired`` on a host holding none of our chains."""
    the_plan = plan_rules(desired, {})
    return {TOOL_LABEL[tool]: the_plan.payload(tool) for tool in the_plan.tools_changed}


def gather(runner, state):
    """Live owned chains, grouped by guest device and by network chain."""
    live, _positions = _apply.read_live(runner, Scope(manage_networks=state.manage_networks))
    by_device, networks = {}, {}
    for (tool, table), table_state in sorted(live.items()):
        for name, chain in sorted(table_state.chains.items()):
            label = "%s %s %s" % (TOOL_LABEL[tool], table, name)
            device = _names.device_of_chain(name)
            if device:
                by_device.setdefault(device, {})[label] = list(chain.rules)
            elif name.startswith("LIBVIRT_"):
                networks[label] = list(chain.rules)
    devices = runner.list_devices()
    return {"chains_by_device": by_device, "networks": networks, "devices": devices}
