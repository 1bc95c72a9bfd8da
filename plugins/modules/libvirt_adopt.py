#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: libvirt_adopt
short_description: Take over the firewall of a host that libvirtd filters today
version_added: "0.1.0"
description:
  - Imports what libvirtd enforces on a hypervisor into the host store (O(config_dir)) and replaces
    libvirtd's rules with this collection's.
  - Filters come from C(etc/libvirt/nwfilter/*.xml) and keep libvirt's uuids; live bindings from
    C(run/libvirt/nwfilter-binding/*.xml); networks from C(run/libvirt/network/*.xml) when running,
    else from C(etc/libvirt/qemu/networks/*.xml) when they autostart. All paths are below
    O(libvirt_root).
  - libvirt's chain names are this collection's chain names, so every chain libvirtd built is
    rewritten in place, one C(*-restore) transaction per tool. A guest NIC is never unfiltered
    during the takeover.
  - Networks whose forward mode gets no firewall from libvirt (bridge, macvtap modes, hostdev) and
    networks that neither run nor autostart are skipped and listed in RV(adopted.skipped).
  - Run it with C(--check --diff) first; see
    R(Adopting a host that libvirtd filters today,ansible_collections.hypervisor.firewall.docsite.adopt)
    for switching libvirtd's nwfilter driver off afterwards.
options:
  libvirt_root:
    description:
      - Directory under which libvirt's files are read, normally C(/).
    type: path
    default: /
  networks:
    description:
      - Also adopt the host's virtual networks (their C(LIBVIRT_*) chains become this collection's).
      - With V(false) only filters and bindings are adopted and libvirtd's network driver keeps its rules.
    type: bool
    default: true
  overwrite:
    description:
      - What to do when the store already holds a filter, binding or network of the same name
        with a different definition. With V(false) the task fails and nothing changes; with
        V(true) libvirt's definition replaces the stored one.
      - A stored filter equal to libvirt's apart from its uuid is always kept as it is.
    type: bool
    default: false
  binding_parameters:
    description:
      - "Variables to add to (or replace in) adopted bindings, by tap device, for example
        C({vnet0: {IP: 192.168.122.10}})."
      - libvirtd learns C(IP) at run time and never writes it to the binding file; this collection
        does not learn addresses, so a binding whose filter uses C(IP) needs it here.
    type: dict
    default: {}
extends_documentation_fragment:
  - hypervisor.firewall.common
  - hypervisor.firewall.common.backend
  - hypervisor.firewall.common.attributes
notes:
  - Run as root on the hypervisor.
  - Until libvirtd's nwfilter driver is switched off it re-instantiates its own filters on daemon
    restart, overwriting ours in place; see
    R(the adoption guide,ansible_collections.hypervisor.firewall.docsite.adopt).
seealso:
  - module: hypervisor.firewall.guest_nic_filter
  - module: hypervisor.firewall.nwfilter
  - module: hypervisor.firewall.virt_network_fw
author:
  - hypervisor.firewall contributors (@hypervisor-firewall)
"""

EXAMPLES = r"""
- name: Show what the takeover would change (run with --check --diff)
  hypervisor.firewall.libvirt_adopt:
  check_mode: true
  diff: true

- name: Take over, giving the address libvirtd learned for a clean-traffic guest
  hypervisor.firewall.libvirt_adopt:
    binding_parameters:
      vnet0:
        IP: 192.168.122.10

- name: Adopt the NIC filters only; libvirtd keeps managing the networks' rules
  hypervisor.firewall.libvirt_adopt:
    networks: false
"""

RETURN = r"""
adopted:
  description: What was found under O(libvirt_root) and imported.
  returned: success
  type: dict
  contains:
    filters:
      description: Names of the imported filters.
      type: list
      elements: str
    bindings:
      description: Tap devices of the imported bindings.
      type: list
      elements: str
      sample: [vnet0, vnet1]
    networks:
      description: Names of the imported networks.
      type: list
      elements: str
      sample: [default]
    skipped:
      description: Network definitions not imported, each with its path and the reason.
      type: list
      elements: dict
rebuilt_devices:
  description: Guest NICs whose chains the takeover rewrote (or would rewrite in check mode).
  returned: success
  type: list
  elements: str
changed_chains:
  description: Owned chains the takeover rewrote or deleted.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hypervisor.firewall.plugins.module_utils._module import (
    common_argument_spec,
    run_action,
)


def main():
    module = AnsibleModule(
        argument_spec=common_argument_spec(
            libvirt_root=dict(type="path", default="/"),
            networks=dict(type="bool", default=True),
            overwrite=dict(type="bool", default=False),
            binding_parameters=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    run_action(module, "libvirt_adopt", module.check_mode)


if __name__ == "__main__":
    main()
