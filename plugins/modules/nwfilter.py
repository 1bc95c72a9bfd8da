#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: nwfilter
short_description: Define, redefine and undefine libvirt network filters on a hypervisor
version_added: "0.1.0"
description:
  - Manages one network filter in libvirt's nwfilter language (C(<filter>) XML, as
    C(virsh nwfilter-dumpxml) prints it) or in an equivalent YAML form.
  - Filters are kept in the host store (O(config_dir)), one canonical XML file per filter.
  - Redefining a filter rebuilds, in one transaction per tool, the netfilter chains of every guest
    NIC whose filter tree uses it; if any NIC cannot be rebuilt, nothing changes.
    The diff shows the filter XML and every chain the redefinition rewrites.
  - A filter keeps its uuid across redefinitions; a name/uuid conflict is an error.
    Reference cycles are refused with the cycle path. References to filters that are not defined
    yet are allowed until a NIC binding needs them.
options:
  name:
    description:
      - Name of the filter. Required with O(state=absent); with O(xml) or O(definition) it must
        match the name given there, if any.
    type: str
  xml:
    description:
      - The filter as libvirt XML. Mutually exclusive with O(definition).
    type: str
  definition:
    description:
      - The filter in YAML form, the same shape M(hypervisor.firewall.nwfilter_info) returns.
        Mutually exclusive with O(xml).
    type: dict
  filters:
    description:
      - Several filters defined in one call (one store update and one rule transaction). Each item
        is either libvirt XML (a string) or a filter in YAML form (a dict). May be combined with
        O(xml) or O(definition). The default_filters role installs the whole set this way.
    type: list
    elements: raw
  strict:
    description:
      - With V(true) (the default) an unknown element or attribute, or a bad rule priority, is an error and
        nothing changes. A typo such as C(<tpc dstportstart='25'/>) in a rule would otherwise leave a rule
        without a protocol, which matches ALL traffic, and libvirt's own schema rejects such a document.
      - With V(true), a filter given as O(xml) must also validate against libvirt's schema C(nwfilter.rng) when the
        host has libvirt's schemas (C(/usr/share/libvirt/schemas), from libvirt's library package); a host without
        them skips that second check.
      - With V(false) the module accepts what libvirt's parser accepts, as libvirt does (unknown elements and
        attributes ignored, a bad priority turned into 500), and warns for each.
    type: bool
    default: true
  state:
    description:
      - V(present) defines or redefines the filter; V(absent) removes it. Removal is refused while
        another filter references it or a NIC binding uses it.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - hypervisor.firewall.common
  - hypervisor.firewall.common.backend
  - hypervisor.firewall.common.attributes
notes:
  - Run on the hypervisor as root when bindings exist (their chains are rebuilt).
seealso:
  - module: hypervisor.firewall.nwfilter_info
  - module: hypervisor.firewall.guest_nic_filter
  - module: hypervisor.firewall.virt_network_fw
author:
  - hypervisor.firewall contributors (@hypervisor-firewall)
"""

EXAMPLES = r"""
- name: A filter that drops outgoing SMTP (reference it from the filter a guest NIC is bound to)
  hypervisor.firewall.nwfilter:
    xml: |
      <filter name='no-spamming' chain='root'>
        <rule action='drop' direction='out' priority='500'>
          <tcp dstportstart='25'/>
        </rule>
      </filter>

- name: The same filter written in YAML
  hypervisor.firewall.nwfilter:
    definition:
      name: no-spamming
      chain: root
      entries:
        - rule:
            action: drop
            direction: out
            matches:
              - protocol: tcp
                attrs:
                  dstportstart: 25

- name: Remove it
  hypervisor.firewall.nwfilter:
    name: no-spamming
    state: absent
"""

RETURN = r"""
filter:
  description:
    - The filter as stored, in YAML form. With O(filters) and neither O(xml) nor O(definition), the
      last filter of O(filters).
  returned: success and state is present
  type: dict
uuid:
  description: The uuid of the filter RV(filter) shows.
  returned: success and state is present
  type: str
  sample: 6ff2f6a4-9b0e-4f55-9a0f-5c1e8a7d9d41
xml:
  description: The canonical XML stored for the filter RV(filter) shows.
  returned: success and state is present
  type: str
uuids:
  description: The uuid of every filter the call defines, by name.
  returned: success and state is present
  type: dict
  sample: {no-spamming: 6ff2f6a4-9b0e-4f55-9a0f-5c1e8a7d9d41}
changed_chains:
  description: Owned chains the change rewrote or deleted (or would, in check mode).
  returned: success
  type: list
  elements: str
rebuilt_devices:
  description: Guest NICs whose chains the change rewrote (or would rewrite in check mode).
  returned: success
  type: list
  elements: str
  sample: [vnet0, vnet3]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hypervisor.firewall.plugins.module_utils._module import (
    common_argument_spec,
    run_action,
)


def main():
    module = AnsibleModule(
        argument_spec=common_argument_spec(
            name=dict(type="str"),
            xml=dict(type="str"),
            definition=dict(type="dict"),
            filters=dict(type="list", elements="raw"),
            strict=dict(type="bool", default=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        mutually_exclusive=[("xml", "definition")],
        required_if=[("state", "present", ("xml", "definition", "filters"), True), ("state", "absent", ("name",))],
        supports_check_mode=True,
    )
    run_action(module, "nwfilter", module.check_mode)


if __name__ == "__main__":
    main()
