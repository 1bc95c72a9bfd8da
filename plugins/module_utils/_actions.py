# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each module does, as data in (validated params) and data out (the result dict).

Modules only build an AnsibleModule, call one function here and turn EngineError into
fail_json; everything else is testable without Ansible by faking the Runner.
"""

from __future__ import annotations

import dataclasses

from ._errors import FilterXMLError, StoreError
from . import _filterxml
from . import _names
from . import _netfw
from . import _ops
from . import _resolve
from . import _schema
from . import _service
from . import _store
from ._model import Binding
from ._runner import HostRunner as Runner


def _reconcile(params, mutate, check_mode, runner):
    return _service.reconcile(
        params["config_dir"], mutate, runner or Runner(), check_mode,
        lock_file=params["lock_file"], lock_timeout=params["lock_timeout"],
    )


def _base_result(outcome):
    return dict(
        changed=outcome.changed,
        diff=outcome.diff,
        warnings=outcome.warnings,
        rebuilt_devices=sorted(changed_devices(outcome)),
        changed_chains=list(outcome.changed_chains),
    )


def changed_devices(outcome):
    devices = set()
    for chain in outcome.changed_chains:
        dev = _names.device_of_chain(chain)
        if dev:
            devices.add(dev)
    return devices


# ---------------------------------------------------------------- nwfilter

def load_filter_param(params):
    if params.get("xml") is not None:
        new, warnings = _filterxml.parse_filter_xml(params["xml"], strict=params["strict"])
    else:
        new, warnings = _filterxml.filter_from_dict(params["definition"], strict=params["strict"])
    if params.get("name") and params["name"] != new.name:
        raise FilterXMLError(
            "name %r does not match the filter's own name %r: use the same name in both" % (params["name"], new.name),
            filter=new.name,
        )
    return new, warnings


def nwfilter(params, check_mode, runner=None):
    if params["state"] == "present":
        new, warnings = load_filter_param(params)
        name = new.name

        def mutate(state):
            return _ops.define_filter(state, new), warnings
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
    return result


def nwfilter_info(params):
    state = _store.load_store(params["config_dir"])
    filters = state.filters
    listing = [
        dict(name=f.name, uuid=f.uuid, chain=f.chain,
             priority=_schema.chain_priority(f.chain, f.priority),
             references=list(f.references))
        for f in (filters[n] for n in sorted(filters))
    ]
    result = dict(changed=False, filters=listing)
    name = params.get("name")
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

def binding_from_params(item):
    """One binding from module options (portdev, mac, filter, parameters) or binding_xml."""
    if item.get("binding_xml"):
        binding = _filterxml.parse_binding_xml(item["binding_xml"])
    else:
        for key in ("portdev", "mac", "filter"):
            if not item.get(key):
                raise FilterXMLError("a binding needs %s (got %r)" % (key, item), portdev=item.get("portdev"))
        pairs = []
        for key in sorted(item.get("parameters") or {}):
            values = item["parameters"][key]
            for value in values if isinstance(values, list) else [values]:
                pairs.append((str(key), str(value)))
        # the same checks as a <filterbinding> read back from the store: what we store must load
        ref = _filterxml._build_filterref(item["filter"], pairs, "binding of %s" % item["portdev"])
        binding = Binding(portdev=item["portdev"], mac=item["mac"], filter=ref.filter,
                          parameters=ref.parameters)
    _names.check_device(binding.portdev, "portdev")
    mac = _canonical_mac(binding.mac, binding.portdev)
    if mac != binding.mac:
        binding = Binding(binding.portdev, mac, binding.filter, binding.parameters,
                          binding.owner_name, binding.owner_uuid, binding.linkdev)
    return binding


def _canonical_mac(mac, portdev):
    try:
        return _schema.canonical_value("mac", "srcmacaddr", mac)
    except FilterXMLError:
        raise FilterXMLError(
            "binding of %s: mac %r is not a MAC address (write it as 52:54:00:12:34:56)" % (portdev, mac),
            portdev=portdev,
        )


def collect_bindings(params, portdev_only=False):
    """Bindings named by the call; for removal only their devices matter."""
    items = list(params.get("bindings") or [])
    if params.get("portdev") is not None or params.get("binding_xml"):
        items.append({k: params.get(k) for k in ("portdev", "mac", "filter", "parameters", "binding_xml")})
    if portdev_only:
        bindings = [Binding(portdev=_names.check_device(item.get("portdev"), "portdev"), mac="", filter="")
                    for item in items]
    else:
        bindings = [binding_from_params(item) for item in items]
    seen = set()
    for binding in bindings:
        if binding.portdev in seen:
            raise FilterXMLError("portdev %s is bound twice in one call: give each NIC once" % binding.portdev,
                                 portdev=binding.portdev)
        seen.add(binding.portdev)
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
        owned = set(runner.libvirt_bound_devices(_service.LIBVIRT_BINDING_DIR)) & {b.portdev for b in bindings}
        if owned:
            raise StoreError(
                "libvirtd's nwfilter driver already filters %s (see %s): set takeover=true to replace "
                "its rules with ours, or remove the libvirt binding" % (", ".join(sorted(owned)), _service.LIBVIRT_BINDING_DIR),
                devices=sorted(owned),
            )

    def mutate(state):
        return _ops.set_bindings(state, bindings, present=state_param == "present",
                                 exclusive=params.get("exclusive", False), check_mode=check_mode), []

    outcome = _reconcile(params, mutate, check_mode, runner)
    result = _base_result(outcome)
    result["bindings"] = [_binding_dict(b) for portdev, b in sorted(outcome.after.bindings.items())]
    return result


def _binding_dict(binding):
    params = {}
    for key, value in binding.parameters:
        params.setdefault(key, []).append(value)
    return dict(portdev=binding.portdev, mac=binding.mac, filter=binding.filter,
                parameters={k: v[0] if len(v) == 1 else v for k, v in params.items()})


def render_bindings(params, bindings):
    """Restore payloads for a host that holds none of our chains; reads the store only."""
    state = _store.load_store(params["config_dir"])
    state = _ops.set_bindings(state.with_changes(bindings={}, networks={}), bindings)
    desired, warnings = _service.build_desired(state, devices=None)
    return dict(changed=False, rendered=_service.render_payloads(desired), warnings=warnings)


def gather_bindings(params, runner):
    state = _store.load_store(params["config_dir"])
    live = _service.gather(runner, state)
    out = []
    for portdev, binding in sorted(state.bindings.items()):
        item = _binding_dict(binding)
        item["present"] = portdev in live["devices"]
        item["chains"] = live["chains_by_device"].get(portdev, {})
        out.append(item)
    return dict(changed=False, gathered=out)


# ---------------------------------------------------------------- virt_network_fw

def network_from_module(params):
    """The Network a present/rendered call describes: ``network_xml``, or the options with
    ``name`` defaulting to the bridge (libvirt's own default network is named after nothing else)."""
    if params.get("network_xml"):
        network = _netfw.parse_network_xml(params["network_xml"])
        if params.get("name") and params["name"] != network.name:
            raise FilterXMLError("name %r does not match the network XML's name %r: use the same name in both"
                                 % (params["name"], network.name), network=network.name)
        return network
    if not params.get("bridge"):
        raise FilterXMLError("network %r: state %s needs bridge (or network_xml): name the bridge device"
                             % (params.get("name"), params.get("state")), network=params.get("name"))
    options = {f.name: params.get(f.name) for f in dataclasses.fields(_netfw.Network)}
    options["name"] = options["name"] or options["bridge"]
    return _netfw.network_from_params(options)


def network_name_to_remove(params, state):
    """Name of the stored network an absent call means: ``name``, else the owner of ``bridge``."""
    if params.get("network_xml"):
        return _netfw.parse_network_xml(params["network_xml"]).name
    if params.get("name"):
        return params["name"]
    owners = [n.name for n in state.networks.values() if n.bridge == params.get("bridge")]
    return owners[0] if owners else params.get("bridge")


def network_dict(network):
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(network).items()}


def firewalld_warning(network):
    zone = _netfw.firewalld_zone_for(network)
    if zone is None:
        return ("firewalld is running: network %r (mode open) gets no rules from us, so firewalld's zone for %s "
                "alone decides its traffic" % (network.name, network.bridge))
    return ("firewalld is running: put bridge %s in firewalld's '%s' zone (firewall-cmd --permanent "
            "--zone=%s --change-interface=%s), or firewalld's own rules may block network %r"
            % (network.bridge, zone, zone, network.bridge, network.name))


def virt_network_fw(params, check_mode, runner=None):
    state_param = params["state"]
    network = network_from_module(params) if state_param in ("present", "rendered") else None
    if state_param == "rendered":
        desired = _netfw.compile_networks([network])
        return dict(changed=False, rendered=_service.render_payloads(desired))
    runner = runner or Runner()
    if state_param == "gathered":
        state = _store.load_store(params["config_dir"])
        return dict(changed=False, gathered=_service.gather(runner, state)["networks"])

    def mutate(state):
        if network is None:
            return _ops.remove_network(state, network_name_to_remove(params, state)), []
        return _ops.set_network(state, network), []

    outcome = _reconcile(params, mutate, check_mode, runner)
    result = _base_result(outcome)
    result["network"] = network_dict(network) if network is not None else None
    if network is not None and runner.firewalld_running():
        result["warnings"].append(firewalld_warning(network))
    return result
