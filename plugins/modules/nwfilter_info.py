#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: nwfilter_info
short_description: List network filters, dump one, and show its reference tree
version_added: "0.1.0"
description:
  - Reads the host store (O(config_dir)) and lists every defined filter with its uuid, chain,
    chain priority and the filters it references.
  - With O(name), also returns that filter's canonical XML (as C(virsh nwfilter-dumpxml) would print it),
    its YAML form (usable as O(hypervisor.firewall.nwfilter#module:definition)), its resolved reference tree
    and the filters that use it.
options:
  name:
    description: A filter to dump in full.
    type: str
extends_documentation_fragment:
  - hypervisor.firewall.common
  - hypervisor.firewall.common.info_attributes
seealso:
  - module: hypervisor.firewall.nwfilter
author:
  - hypervisor.firewall contributors (@hypervisor-firewall)
"""

EXAMPLES = r"""
- name: List the filters of a hypervisor
  hypervisor.firewall.nwfilter_info:
  register: filters

- name: Dump clean-traffic and its tree
  hypervisor.firewall.nwfilter_info:
    name: clean-traffic
  register: ct

- name: Show what clean-traffic pulls in
  ansible.builtin.debug:
    var: ct.tree
"""

RETURN = r"""
filters:
  description: Every defined filter, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Filter name.
      type: str
    uuid:
      description: Filter uuid.
      type: str
    chain:
      description: Chain suffix (root, ipv4, arp-mac, ...).
      type: str
    priority:
      description: Effective chain priority.
      type: int
    references:
      description: Filters referenced directly, in document order.
      type: list
      elements: str
  sample: [{name: clean-traffic, uuid: 0ad0e5a5-6b4c-4fbe-9b1a-3f3f6f0d2b11, chain: root, priority: 0,
            references: [no-mac-spoofing, no-ip-spoofing]}]
xml:
  description: Canonical XML of O(name).
  returned: when O(name) is given
  type: str
definition:
  description: YAML form of O(name).
  returned: when O(name) is given
  type: dict
tree:
  description:
    - Reference tree of O(name), each node C({name, references}); an unknown reference is marked
      C(missing), a reference back into its own path C(cycle), and a filter whose subtree is already shown
      earlier in the tree C(repeated) (without its references).
  returned: when O(name) is given
  type: dict
used_by:
  description: Filters whose tree uses O(name).
  returned: when O(name) is given
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
        argument_spec=common_argument_spec(with_backend=False, name=dict(type="str")),
        supports_check_mode=True,
    )
    run_action(module, "nwfilter_info")


if __name__ == "__main__":
    main()
