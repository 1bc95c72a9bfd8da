# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each module does, as data in (validated params) and data out (the result dict).

Modules only build an AnsibleModule, call one function here and turn EngineError into
fail_json; everything else is testable without Ansible by faking the Runner.
"""

from __future__ import annotations

import dataclasses
import difflib

from .errors import EngineError, FilterXMLError, StoreError
from . import adopt as _adopt
from .language import filter_xml as _filterxml
from .host import placement as _guests
from .language import network as _network
from .host import transitions as _ops
from . import backend as _backend
from . import firewalld_zone as _zone
from .language import resolve as _resolve
from .language import rng as _rng
from .language import schema as _schema
from . import service as _service
from .host import store as _store
from .language.devices import check_device
from .language.model import Binding
from .host.runner import HostRunner as Runner


def _reconcile(params, mutate, check_mode, runner, **options):
    return _service.reconcile(
        params["config_dir"], mutate, runner or Runner(), check_mode,
        lock_file=params["lock_file"], lock_timeout=params["lock_timeout"], backend=params.get("backend"),
        fallback=params.get("backend_fallback"), **options,
    )


def _base_result(outcome):
    return dict(
        changed=outcome.changed,
        diff=outcome.diff,
        warnings=outcome.warnings,
        rebuilt_devices=list(outcome.rebuilt_devices),
        changed_chains=list(outcome.changed_chains),
    )


# ---------------------------------------------------------------- nwfilter

def load_filter_param(params):
    if params.get("xml") is not None:
        new, warnings = _filterxml.parse_filter_xml(params["xml"], strict=params["strict"])
        if params["strict"]:
            _rng.validate("filter", params["xml"], "filter '%s'" % new.name,
                          "fix the document, or set strict to false to accept what libvirt's parser accepts")
    else:
        new, warnings = _filterxml.filter_from_dict(params["definition"], strict=params["strict"])
    if params.get("name") and params["name"] != new.name:
        raise FilterXMLError(
            "name %r does not match the filter's own name %r: use the same name in both" % (params["name"], new.name),
            filter=new.name,
        )
    return new, warnings


def load_filter_batch(params):
    """The filters of one call: ``xml``/``definition``, or each item of ``filters``."""
    items = []
    for item in params.get("filters") or []:
        if isinstance(item, str):
            items.append(dict(xml=item))
        elif isinstance(item, dict):
            items.append(dict(definition=item))
        else:
            raise FilterXMLError("each item of filters is libvirt XML (a string) or a YAML definition (a "
                                 "dict), not %s" % type(item).__name__)
    if params.get("xml") is not None or params.get("definition") is not None:
        items.append(dict(xml=params.get("xml"), definition=params.get("definition"), name=params.get("name")))
    loaded, warnings = [], []
    for item in items:
        new, more = load_filter_param(dict(item, strict=params["strict"]))
        if new.name in [f.name for f in loaded]:
            raise FilterXMLError("filter '%s' is given twice in one call: give each filter once" % new.name,
                                 filter=new.name)
        loaded.append(new)
        warnings.extend(more)
    if not loaded:
        raise FilterXMLError("state present needs a filter: give xml, definition or a non-empty filters list")
    return loaded, warnings


def nwfilter(params, check_mode, runner=None):
    if params["state"] == "present":
        batch, warnings = load_filter_batch(params)
        name = batch[-1].name

        def mutate(state):
            for new in batch:
                state = _ops.define_filter(state, new)
            return state, warnings
    else:
        name = params["name"]

        def mutate(state):
            return _ops.undefine_filter(state, name), []

    outcome = _reconcile(params, mutate, check_mode, runner)
    result = _base_result(outcome)
    stored = outcome.after.filters.get(name)
    if stored is not None:
        result.update(filter=_filterxml.filter_to_dict(stored), uuid=stored.uuid,
                      xml=_filterxml.format_filter_xml(stored))
    if params["state"] == "present":
        result["uuids"] = {new.name: outcome.after.filters[new.name].uuid for new in batch}
    return result


def nwfilter_info(params):
    state = _store.load_store(params["config_dir"])
    broken = [b for b in _store.broken_objects(state) if b.kind == "filters"]
    filters = {n: f for n, f in state.filters.items() if not isinstance(f, _store.Broken)}
    listing = [
        dict(name=f.name, uuid=f.uuid, chain=f.chain,
             priority=_schema.chain_priority(f.chain, f.priority),
             references=list(f.references))
        for f in (filters[n] for n in sorted(filters))
    ]
    result = dict(changed=False, filters=listing, warnings=[b.message for b in broken])
    name = params.get("name")
    if name in state.filters and name not in filters:
        _store.require_sound(state.with_changes(filters={name: state.filters[name]}, bindings={}, networks={}))
    if name:
        if name not in filters:
            raise StoreError(
                "filter '%s' is not defined in %s%s" % (name, params["config_dir"], _suggest(name, filters)),
                filter=name,
            )
        result.update(xml=_filterxml.format_filter_xml(filters[name]),
                      definition=_filterxml.filter_to_dict(filters[name]),
                      tree=_resolve.tree(filters, name),
                      used_by=_resolve.dependants(filters, name))
    return result


def _suggest(name, names):
    import difflib
    close = difflib.get_close_matches(name, list(names), n=1)
    return " (did you mean '%s'?)" % close[0] if close else ""


# ---------------------------------------------------------------- guest_nic_filter

# Variables libvirt itself reads from a binding, whatever the filter's rules say.
LIBVIRT_VARIABLES = frozenset(("MAC", "IP", "IPV6", "CTRL_IP_LEARNING", "DHCPSERVER"))


def check_parameters(binding, filters):
    """Warnings for binding parameters no rule of the filter's tree reads; an error for one that
    differs from such a variable only in case (``ip`` for ``IP``), which libvirt ignores too,
    leaving the real variable without a value."""
    if binding.filter not in filters:
        return []
    used = _resolve.variables_used(filters, binding.filter)
    warnings = []
    for name in sorted({key for key, _value in binding.parameters}):
        if name in used or name in LIBVIRT_VARIABLES:
            continue
        same = sorted(var for var in used | LIBVIRT_VARIABLES if var.lower() == name.lower())
        if same:
            raise FilterXMLError(
                "binding of %s: parameter '%s' is not a variable of filter '%s' (names are case-sensitive): "
                "did you mean '%s'?" % (binding.label, name, binding.filter, same[0]),
                portdev=binding.portdev, parameter=name)
        close = difflib.get_close_matches(name, sorted(used), n=1)
        hint = " (did you mean '%s'?)" % close[0] if close else ""
        warnings.append("binding of %s: parameter '%s' has no effect: no rule of filter '%s' (or of the filters "
                        "it references) uses it%s" % (binding.label, name, binding.filter, hint))
    return warnings


def _nothing_named(params, bindings):
    """A present/absent call that names no binding and asks for no host-wide change does nothing:
    most likely the options went missing (a variable that is not set, an empty dict)."""
    return (not bindings and not params.get("exclusive") and params.get("drop_unbound_taps") is None)


def _check_target(item):
    """A binding names its tap (portdev) or its guest (domain), never both, never neither."""
    if bool(item.get("portdev")) == bool(item.get("domain")):
        raise FilterXMLError(
            "a binding needs either portdev (a fixed tap) or domain (a guest; its tap is found when it "
            "runs), not %s (got %r)" % ("both" if item.get("portdev") else "neither", item),
            portdev=item.get("portdev"), domain=item.get("domain"))
    if item.get("alias") and not item.get("domain"):
        raise FilterXMLError("alias needs domain: it names a NIC of a guest (got %r)" % (item,),
                             portdev=item.get("portdev"))


def check_domain_name(domain):
    """libvirt domain names are free text; refuse only what cannot be one (and what a log line breaks on)."""
    if not isinstance(domain, str) or not domain.strip() or len(domain) > 255 or any(
            ord(char) < 32 for char in domain):
        raise FilterXMLError("domain %r is not a libvirt domain name: give the name virsh list shows" % (domain,),
                             domain=domain)
    return domain


def binding_from_params(item):
    """One binding from module options (portdev or domain [+ alias], mac, filter, parameters) or binding_xml."""
    if item.get("binding_xml"):
        binding = _filterxml.parse_binding_xml(item["binding_xml"])
    else:
        _check_target(item)
        label = item.get("portdev") or "guest %s" % item.get("domain")
        if not item.get("mac"):
            raise FilterXMLError("binding of %s: mac is missing: give the guest NIC's MAC address (virsh "
                                 "domiflist GUEST shows it)" % label, portdev=item.get("portdev"), option="mac")
        if not item.get("filter"):
            raise FilterXMLError("binding of %s: filter is missing: name the filter to bind (nwfilter_info "
                                 "lists the defined ones)" % label, portdev=item.get("portdev"), option="filter")
        pairs = []
        for key in sorted(item.get("parameters") or {}):
            values = item["parameters"][key]
            for value in values if isinstance(values, list) else [values]:
                pairs.append((str(key), str(value)))
        # the same checks as a <filterbinding> read back from the store: what we store must load
        ref = _filterxml._build_filterref(item["filter"], pairs, "binding of %s" % label)
        binding = Binding(portdev=item.get("portdev"), mac=item["mac"], filter=ref.filter,
                          parameters=ref.parameters, owner_name=item.get("domain"), alias=item.get("alias"))
    if binding.portdev is None:
        check_domain_name(binding.owner_name)
    else:
        check_device(binding.portdev, "portdev")
    mac = _canonical_mac(binding.mac, binding.label)
    if mac != binding.mac:
        binding = dataclasses.replace(binding, mac=mac)
    if item.get("binding_xml") and binding.portdev is not None:
        # libvirt's form, checked last (our checks name the problem better); a binding by guest
        # (no <portdev>) is this collection's own extension, which libvirt's schema does not know
        _rng.validate("filterbinding", item["binding_xml"], "binding_xml of %s" % binding.portdev,
                      "fix the document (virsh nwfilter-binding-dumpxml prints a valid one)")
    return binding


def _canonical_mac(mac, label):
    return _guests.canonical_mac(mac, "binding of %s: mac" % label, portdev=label)


BINDING_KEYS = ("portdev", "domain", "alias", "mac", "filter", "parameters", "binding_xml")


def _binding_to_remove(item):
    """For removal only the key matters: the tap, or the guest and its NIC's MAC."""
    if item.get("binding_xml"):
        return binding_from_params(item)
    if item.get("domain"):
        _check_target(item)
        return Binding(portdev=None, mac=_canonical_mac(item.get("mac"), "guest %s" % item["domain"]), filter="",
                       owner_name=check_domain_name(item["domain"]))
    return Binding(portdev=check_device(item.get("portdev"), "portdev"), mac="", filter="")


def collect_bindings(params, portdev_only=False):
    """Bindings named by the call; for removal only their keys matter."""
    items = list(params.get("bindings") or [])
    if params.get("portdev") is not None or params.get("domain") is not None or params.get("binding_xml"):
        items.append({k: params.get(k) for k in BINDING_KEYS})
    if portdev_only:
        bindings = [_binding_to_remove(item) for item in items]
    else:
        bindings = [binding_from_params(item) for item in items]
    seen = set()
    for binding in bindings:
        if binding.key in seen:
            what = "portdev %s" % binding.portdev if binding.portdev else binding.label
            raise FilterXMLError("%s is bound twice in one call: give each NIC once" % what,
                                 portdev=binding.portdev)
        seen.add(binding.key)
    return bindings


def guest_nic_filter(params, check_mode, runner=None):
    state_param = params["state"]
    bindings = collect_bindings(params, portdev_only=state_param == "absent")
    if state_param == "rendered":
        return render_bindings(params, bindings)
    runner = runner or Runner()
    if state_param == "gathered":
        return gather_bindings(params, runner)
    takeover = params.get("takeover")
    if state_param == "present" and not takeover:
        owned = set(runner.libvirt_bound_devices(_service.LIBVIRT_BINDING_DIR)) & {b.portdev for b in bindings
                                                                                   if b.portdev}
        if owned:
            raise StoreError(
                "libvirtd's nwfilter driver already filters %s (see %s): set takeover=true to replace "
                "its rules with ours, or remove the libvirt binding" % (", ".join(sorted(owned)), _service.LIBVIRT_BINDING_DIR),
                devices=sorted(owned),
            )

    drop_unbound = params.get("drop_unbound_taps")
    if _nothing_named(params, bindings):
        raise FilterXMLError(
            "guest_nic_filter with state=%s names no binding: give portdev or domain with mac and filter, a "
            "bindings list or binding_xml (an empty bindings list removes every binding only with exclusive=true)"
            % state_param)

    def mutate(state):
        warnings = []
        if state_param == "present":
            for binding in bindings:
                warnings.extend(check_parameters(binding, state.filters))
        state = _ops.set_bindings(state, bindings, present=state_param == "present",
                                  exclusive=params.get("exclusive", False), check_mode=check_mode)
        if drop_unbound is not None:
            state = state.with_changes(drop_unbound_taps=bool(drop_unbound))
        return state, warnings

    outcome = _reconcile(params, mutate, check_mode, runner)
    result = _base_result(outcome)
    result["bindings"] = [_binding_dict(b) for key, b in sorted(outcome.after.bindings.items())]
    result["drop_unbound_taps"] = outcome.after.drop_unbound_taps
    if outcome.after.bindings and outcome.backend.FLUSHED_BY_FIREWALLD_RELOAD and runner.firewalld_running():
        result["warnings"].append(_zone.XTABLES_WARNING)
    return result


def _binding_dict(binding):
    params = {}
    for key, value in binding.parameters:
        params.setdefault(key, []).append(value)
    item = dict(portdev=binding.portdev, mac=binding.mac, filter=binding.filter,
                parameters={k: v[0] if len(v) == 1 else v for k, v in params.items()})
    if binding.portdev is None:
        item.update(domain=binding.domain, alias=binding.alias)
    return item


def render_bindings(params, bindings):
    """Restore payloads for a host that holds none of our chains; reads the store only."""
    state = _store.load_store(params["config_dir"])
    state = _ops.set_bindings(state.with_changes(bindings={}, networks={}), bindings)
    chosen = _backend.select(_backend.choose(params["config_dir"], params.get("backend")))
    try:
        desired, warnings = _service.build_desired(state, chosen, devices=None)
    except EngineError as exc:
        instead = _backend.fallback_for(
            chosen, exc, _backend.fallback_allowed(params["config_dir"], params.get("backend_fallback")))
        if instead is None:
            raise
        chosen = instead[0]
        desired, warnings = _service.build_desired(state, chosen, devices=None)
        warnings.append(instead[1])
    return dict(changed=False, rendered=chosen.render(desired), warnings=warnings)


def gather_bindings(params, runner):
    state = _store.load_store(params["config_dir"])
    live = _service.gather(runner, state)
    placed, warnings = _service.placements(params["config_dir"], state, runner)
    devices = runner.list_devices()
    out = []
    for placement in placed:
        item = _binding_dict(placement.binding)
        # tap: where the rules are now, or why there is none ('not running', 'no device', 'unplaced')
        item["guest"] = placement.binding.owner_name
        item["tap"] = placement.tap or placement.status
        item["present"] = placement.tap is not None and placement.tap in devices
        item["chains"] = dict(live.by_device.get(placement.tap, {})) if placement.tap else {}
        item["sets"] = dict(live.sets.get(placement.tap, {})) if placement.tap else {}
        out.append(item)
    return dict(changed=False, gathered=out, drop_unbound_taps=state.drop_unbound_taps, warnings=warnings)


# ---------------------------------------------------------------- virt_network_fw

def network_from_module(params):
    """The Network a present/rendered call describes: ``network_xml``, or the options with
    ``name`` defaulting to the bridge (libvirt's own default network is named after nothing else)."""
    if params.get("network_xml"):
        network = _network.parse_network_xml(params["network_xml"])
        _rng.validate("network", params["network_xml"], "network_xml of network '%s'" % network.name,
                      "fix the document (virsh net-dumpxml prints a valid one)")
        if params.get("name") and params["name"] != network.name:
            raise FilterXMLError("name %r does not match the network XML's name %r: use the same name in both"
                                 % (params["name"], network.name), network=network.name)
        return network
    if not params.get("bridge"):
        raise FilterXMLError("network %r: state %s needs bridge (or network_xml): name the bridge device"
                             % (params.get("name"), params.get("state")), network=params.get("name"))
    options = {f.name: params.get(f.name) for f in dataclasses.fields(_network.Network)}
    options["name"] = options["name"] or options["bridge"]
    return _network.network_from_params(options)


def network_name_to_remove(params, state):
    """Name of the stored network an absent call means: ``name``, else the owner of ``bridge``."""
    if params.get("network_xml"):
        return _network.parse_network_xml(params["network_xml"]).name
    if params.get("name"):
        return params["name"]
    owners = [n.name for n in state.networks.values() if n.bridge == params.get("bridge")]
    return owners[0] if owners else params.get("bridge")


def network_dict(network):
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(network).items()}


def virt_network_fw(params, check_mode, runner=None):
    state_param = params["state"]
    network = network_from_module(params) if state_param in ("present", "rendered") else None
    if state_param == "rendered":
        chosen = _backend.select(_backend.choose(params["config_dir"], params.get("backend")))
        return dict(changed=False, rendered=chosen.render(chosen.compile_host([], [network])))
    runner = runner or Runner()
    if state_param == "gathered":
        state = _store.load_store(params["config_dir"])
        return dict(changed=False, gathered=_service.gather(runner, state).networks)

    removed = []

    def mutate(state):
        if network is None:
            name = network_name_to_remove(params, state)
            removed[:] = [state.networks[name]] if name in state.networks else []
            return _ops.remove_network(state, name), []
        return _ops.set_network(state, network), []

    outcome = _reconcile(params, mutate, check_mode, runner)
    result = _base_result(outcome)
    result["network"] = network_dict(network) if network is not None else None
    if network is not None:
        placed, zone, warnings = _zone.place_bridge(runner, network, check_mode)
        result["warnings"].extend(warnings)
    else:
        placed, zone = _zone.release_bridge(runner, removed[0] if removed else None, check_mode), None
    result["firewalld_zone"] = zone
    result["changed"] = result["changed"] or placed
    return result


# ---------------------------------------------------------------- libvirt_adopt

def libvirt_adopt(params, check_mode, runner=None):
    """Import libvirtd's filters, live bindings and networks and take their rules over."""
    root = params["libvirt_root"]
    docs = _adopt.read_documents(root, networks=params["networks"])
    host = _adopt.import_documents(docs, params.get("binding_parameters"))

    def mutate(state):
        return _adopt.adopt(state, host, overwrite=params["overwrite"]), list(host.warnings)

    # the adopted NICs are in the store from now on, so reconcile does not count them as libvirtd's
    outcome = _reconcile(params, mutate, check_mode, runner, libvirt_binding_dir=_adopt.binding_dir(root))
    result = _base_result(outcome)
    result["adopted"] = host.summary()
    return result
