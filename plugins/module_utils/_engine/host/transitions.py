# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure store transitions: StoreState in, StoreState out (or a typed error).

Each function here is what one module state means for the host store; _service.reconcile runs
it under the lock and converges the kernel to the result.
"""

from __future__ import annotations

import difflib
import uuid as uuidlib
from dataclasses import replace

from ..errors import ResolveError, StoreError
from ..language import resolve as _resolve
from .store import check_object_name


def define_filter(state, new, new_uuid=None):
    """Define or redefine a filter, keeping its uuid across redefinitions like libvirt."""
    check_object_name("filters", new.name)
    existing = state.filters.get(new.name)
    if new.uuid is None:
        keep = existing.uuid if existing is not None else (new_uuid or str(uuidlib.uuid4()))
        new = replace(new, uuid=keep)
    elif existing is not None and existing.uuid and existing.uuid.lower() != new.uuid.lower():
        raise StoreError(
            "filter '%s' already exists with uuid %s, not %s: drop the <uuid> element or use the "
            "existing uuid" % (new.name, existing.uuid, new.uuid),
            filter=new.name,
        )
    for other in state.filters.values():
        if other.name != new.name and other.uuid and other.uuid.lower() == new.uuid.lower():
            raise StoreError(
                "uuid %s already belongs to filter '%s': a filter cannot take another filter's uuid"
                % (new.uuid, other.name),
                filter=new.name,
            )
    _resolve.find_cycle(state.filters, new)
    filters = dict(state.filters)
    filters[new.name] = new
    return state.with_changes(filters=filters)


def undefine_filter(state, name):
    """Remove a filter nobody uses; refuse with the list of users otherwise."""
    if name not in state.filters:
        return state
    referrers = sorted(f.name for f in state.filters.values() if f.name != name and name in f.references)
    users_of_name = set(_resolve.dependants(state.filters, name)) | {name}
    bound = sorted(b.label for b in state.bindings.values() if b.filter in users_of_name)
    if referrers or bound:
        users = ["filter '%s'" % r for r in referrers] + ["binding on %s" % d for d in bound]
        raise ResolveError(
            "filter '%s' is still in use by %s: remove those references first" % (name, ", ".join(users)),
            filter=name,
            referenced_by=referrers,
            bound_devices=bound,
        )
    filters = dict(state.filters)
    del filters[name]
    return state.with_changes(filters=filters)


def set_bindings(state, bindings, present=True, exclusive=False, check_mode=False):
    """Store the given bindings (or remove them); ``exclusive`` drops every other binding.

    In check mode a filter that is not defined yet is allowed: an earlier task of the same run
    may define it; the binding is then planned without rules and a warning says so.
    """
    current = dict(state.bindings)
    named = set()
    for binding in bindings:
        named.add(binding.key)
        if present:
            if binding.filter not in state.filters and not check_mode:
                close = difflib.get_close_matches(binding.filter, list(state.filters), n=1)
                raise ResolveError(
                    "binding of %s uses filter '%s', which is not defined on this host%s: define it "
                    "first (e.g. with the default_filters role)"
                    % (binding.label, binding.filter, " (did you mean '%s'?)" % close[0] if close else ""),
                    portdev=binding.portdev,
                )
            current[binding.key] = binding
        else:
            current.pop(binding.key, None)
    if exclusive:
        current = {dev: b for dev, b in current.items() if dev in named and present}
    return state.with_changes(bindings=current)


def set_network(state, network):
    """Define or redefine a network; from then on this store owns the LIBVIRT_* chains."""
    networks = dict(state.networks)
    check_object_name("networks", network.name)
    for other in networks.values():
        if other.name != network.name and other.bridge == network.bridge:
            raise StoreError(
                "bridge %s already belongs to network '%s': one network per bridge; use another bridge or remove that network"
                % (network.bridge, other.name),
                network=network.name,
            )
    networks[network.name] = network
    return state.with_changes(networks=networks, manage_networks=True)


def remove_network(state, name):
    """Forget a network.  Removing one that is not stored changes nothing: in particular it does not
    make this store claim the host's LIBVIRT_* chains (libvirt's own network driver may own them)."""
    if name not in state.networks:
        return state
    networks = dict(state.networks)
    del networks[name]
    return state.with_changes(networks=networks, manage_networks=True)
