#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: guest_nic_filter
short_description: Bind network filters to guest NICs and apply them atomically
version_added: "0.1.0"
description:
  - Binds a network filter (see M(hypervisor.firewall.nwfilter)) to a guest NIC (the tap device on
    the hypervisor, its MAC and the filter's parameters such as C(IP)) and compiles it into the
    ebtables, iptables and ip6tables chains libvirt's nwfilter driver would build, with libvirt's
    chain names (or, with O(backend=nftables), into one shared nftables table).
  - All given bindings are applied together, with one C(*-restore --noflush) transaction per tool, rolled
    back across tools if any fails, then read back and verified.
  - Only chains this collection owns are read, compared and written; everything else is left as it is.
  - Bindings are stored in O(config_dir) in libvirt's C(<filterbinding>) format so the host can
    re-apply them without the controller.
options:
  portdev:
    description:
      - The tap device of the guest NIC (libvirt's C(<target dev=...>)), e.g. C(vnet0), for taps with a
        fixed name. Give either O(portdev) or O(domain).
    type: str
  domain:
    description:
      - The libvirt domain (guest) whose NIC O(mac) the binding filters. Its rules follow the guest onto
        whichever tap libvirt gives it, and vanish when it stops; the tap is found through the runtime map
        the C(hypervisor.firewall.guest_hooks) role's qemu hook keeps, else as the device whose MAC is O(mac)
        with the first byte C(fe) (the MAC libvirt gives a guest's tap).
      - A guest that is not running gets no rules; RV(gathered) shows it as C(not running).
    type: str
  alias:
    description: With O(domain), only the NIC with this libvirt alias (C(<alias name=...>)) and O(mac).
    type: str
  mac:
    description: The guest NIC's MAC address; it fills the C(MAC) variable unless O(parameters) sets it.
    type: str
  filter:
    description: Name of the filter to bind.
    type: str
  parameters:
    description:
      - Filter variables, name to value or list of values, e.g. C(IP) (this collection does not learn
        addresses, so filters that use C($IP) need it here).
    type: dict
  binding_xml:
    description:
      - A libvirt C(<filterbinding>) document, as C(virsh nwfilter-binding-dumpxml) prints it.
      - When the host has libvirt's schemas (C(/usr/share/libvirt/schemas)), a document with a C(<portdev>) must
        validate against C(nwfilterbinding.rng); one without (a binding by guest) is this collection's extension.
    type: str
  bindings:
    description: Several bindings in one transaction; each item takes the options above.
    type: list
    elements: dict
    suboptions:
      portdev: {description: Tap device., type: str}
      domain: {description: Guest (libvirt domain name) instead of a tap., type: str}
      alias: {description: "Alias of the guest NIC (with O(bindings[].domain)).", type: str}
      mac: {description: Guest MAC., type: str}
      filter: {description: Filter name., type: str}
      parameters: {description: Filter variables., type: dict}
      binding_xml: {description: A libvirt C(<filterbinding>) document., type: str}
  state:
    description:
      - V(present) binds, V(absent) unbinds (only the key is needed, O(portdev) or O(domain) and O(mac)).
      - V(rendered) returns in RV(rendered) the exact restore payloads for a host that holds none of our
        chains, without touching the host (no root needed); filters are read from O(config_dir).
      - V(gathered) returns every stored binding with its live chains and packet counters.
    type: str
    choices: [present, absent, rendered, gathered]
    default: present
  exclusive:
    description:
      - With V(true), every stored binding not named in this call is removed (store and kernel).
        NICs whose filters libvirtd applies are never touched.
    type: bool
    default: false
  drop_unbound_taps:
    description:
      - V(true) adds one fail-closed rule (ebtables C(nat PREROUTING -i vnet+ -j DROP), after the jumps of
        every bound tap) that drops every frame from a C(vnet*) tap without a binding; libvirt leaves such
        taps open. V(false) removes it; unset leaves the host's setting as it is.
      - Refused while libvirtd's own nwfilter driver filters a C(vnet*) tap (its jumps would come after the DROP).
    type: bool
  takeover:
    description:
      - Replace libvirtd's own nwfilter rules for a NIC that has a binding under
        C(/run/libvirt/nwfilter-binding/). Without it such a NIC is refused.
    type: bool
    default: false
extends_documentation_fragment:
  - hypervisor.firewall.common
  - hypervisor.firewall.common.backend
  - hypervisor.firewall.common.attributes
notes:
  - iptables and ip6tables rules see bridged traffic only when the sysctls
    C(net.bridge.bridge-nf-call-iptables) and C(net.bridge.bridge-nf-call-ip6tables) are 1; the module
    warns when they are 0. Turning them on sends every bridge's traffic through FORWARD.
  - A binding for a device that does not exist is stored with a warning and gets no rules, so a
    guest that later receives that device name never inherits another guest's rules.
  - Device names must match C(^[A-Za-z0-9_.-]{1,15}$); C(vnet+) would be an iptables wildcard.
seealso:
  - module: hypervisor.firewall.nwfilter
  - module: hypervisor.firewall.virt_network_fw
author:
  - hypervisor.firewall contributors (@hypervisor-firewall)
"""

EXAMPLES = r"""
- name: Protect a guest NIC with clean-traffic
  hypervisor.firewall.guest_nic_filter:
    portdev: vnet0
    mac: "52:54:00:6b:3c:58"
    filter: clean-traffic
    parameters:
      IP: 192.168.122.10

- name: Filter a guest's NIC wherever libvirt puts it (needs the guest_hooks role on the host)
  hypervisor.firewall.guest_nic_filter:
    domain: web1
    mac: "52:54:00:6b:3c:58"
    filter: clean-traffic
    parameters:
      IP: 192.168.122.10
    drop_unbound_taps: true

- name: All guests of a host in one transaction; drop every other binding
  hypervisor.firewall.guest_nic_filter:
    bindings: "{{ hypervisor_guest_nics }}"
    exclusive: true

- name: Show what would be loaded, without a hypervisor
  hypervisor.firewall.guest_nic_filter:
    portdev: vnet0
    mac: "52:54:00:6b:3c:58"
    filter: clean-traffic
    parameters: {IP: [192.168.122.10, 192.168.122.11]}
    state: rendered
  register: payloads
"""

RETURN = r"""
bindings:
  description: Every binding stored on the host after the change.
  returned: when state is present or absent
  type: list
  elements: dict
rebuilt_devices:
  description: NICs whose chains were (or in check mode would be) rewritten.
  returned: when state is present or absent
  type: list
  elements: str
changed_chains:
  description: Owned chains the change rewrote or deleted (or would, in check mode).
  returned: when state is present or absent
  type: list
  elements: str
rendered:
  description:
    - Restore payloads by tool (C(ebtables), C(iptables), C(ip6tables); a tool without rules is left out).
    - With the V(nftables) backend also C(nft) (the C(nft -f) text) and C(nft_notes) (a list of notes on
      how the NICs share chains).
  returned: when state is rendered
  type: dict
gathered:
  description:
    - Every stored binding (its options as under RV(bindings)) with C(guest) (the domain, when known),
      C(tap) (the device its rules are on now, or C(not running), C(no device) or C(unplaced) with a
      warning saying why), C(present) (the tap exists) and C(chains).
    - C(chains) maps each live chain of the NIC (C(TOOL TABLE CHAIN)) to its rules in order, each with
      the kernel's counters since the rule was last written (C(*-save -c); reading never zeroes them).
    - With the C(nftables) backend, C(chains) also holds the nft chains the NIC's packets reach
      (C(nft FAMILY TABLE CHAIN)); these are shared by every NIC with the same rules, so their rules
      come without counters (counters are C(xtables)-only, the nft rules carry none). C(sets) holds the
      NIC's own values in the sets those rules look up (its MACs and addresses), by C(nft FAMILY TABLE SET).
  returned: when state is gathered
  type: list
  elements: dict
  contains:
    guest: {description: "The guest (libvirt domain) when known: O(domain), or the owner in O(binding_xml).", type: str}
    tap: {description: "Tap the rules are on, or V(not running), V(no device), V(unplaced).", type: str}
    present: {description: The tap exists on the host., type: bool}
    chains:
      description: Chain label to a list of C({rule, packets, bytes}) (C(xtables)) or C({rule}) (C(nftables)).
      type: dict
    sets:
      description: nftables set label to the NIC's own elements (empty with C(xtables)).
      type: dict
  sample:
    - portdev: vnet0
      mac: "52:54:00:6b:3c:58"
      filter: clean-traffic
      parameters: {IP: 192.168.122.10}
      guest: null
      tap: vnet0
      present: true
      chains:
        ebtables nat I-vnet0-ipv4-ip:
          - {rule: "-p IPv4 --ip-src 0.0.0.0 --ip-proto udp -j RETURN", packets: 2, bytes: 656}
          - {rule: "-p IPv4 --ip-src 192.168.122.10 -j RETURN", packets: 1187, bytes: 93114}
          - {rule: "-j DROP", packets: 3, bytes: 138}
drop_unbound_taps:
  description: Whether unbound C(vnet*) taps are dropped on this host (the stored setting).
  returned: when state is present, absent or gathered
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hypervisor.firewall.plugins.module_utils._module import (
    common_argument_spec,
    run_action,
)

BINDING_OPTIONS = dict(
    portdev=dict(type="str"),
    domain=dict(type="str"),
    alias=dict(type="str"),
    mac=dict(type="str"),
    filter=dict(type="str"),
    parameters=dict(type="dict"),
    binding_xml=dict(type="str"),
)


def main():
    module = AnsibleModule(
        argument_spec=common_argument_spec(
            bindings=dict(type="list", elements="dict", options=BINDING_OPTIONS),
            state=dict(type="str", choices=["present", "absent", "rendered", "gathered"], default="present"),
            exclusive=dict(type="bool", default=False),
            takeover=dict(type="bool", default=False),
            drop_unbound_taps=dict(type="bool"),
            **BINDING_OPTIONS
        ),
        mutually_exclusive=[("binding_xml", "portdev"), ("binding_xml", "domain"), ("portdev", "domain")],
        supports_check_mode=True,
    )
    run_action(module, "guest_nic_filter", module.check_mode)


if __name__ == "__main__":
    main()
