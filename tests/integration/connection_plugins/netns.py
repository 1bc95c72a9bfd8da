# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible connection plugin for fleet tests: each inventory host is a network namespace."""

from __future__ import annotations

DOCUMENTATION = r"""
name: netns
short_description: run tasks inside a local network namespace (ip netns exec)
description:
  - Runs every command on the controller wrapped as C(ip netns exec <namespace> /bin/sh -c <cmd>),
    so several namespaces on one machine can act as separate inventory hosts in tests.
  - Files are copied with plain local file operations; namespaces share the filesystem, so give
    each host its own paths for state and configuration.
  - Needs root (or CAP_SYS_ADMIN) on the controller.
  - Only the integration and kvm stages use it, where one module or role at a time is tested
    against one namespace and the transport is not what is under test; an sshd and sudo per
    namespace would cost every task an SSH round trip for nothing those tests check. The fleet
    stage, which tests playbooks the way an admin runs them, reaches its hosts over SSH with key
    authentication and become (tests/lab/sshd.py).
author: contributors to hypervisor.firewall
options:
  netns_name:
    description:
      - Network namespace to run in, as listed by C(ip netns list).
      - Taken from C(netns_name), else C(ansible_host), else the inventory host name.
    type: str
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: netns_name
  become_success_timeout:
    description: Seconds to wait for become to succeed (as in the local plugin).
    type: int
    default: 10
    vars:
      - name: ansible_local_become_success_timeout
  become_strip_preamble:
    description: Strip internal become output preceding command execution.
    type: bool
    default: true
    vars:
      - name: ansible_local_become_strip_preamble
extends_documentation_fragment:
  - connection_pipelining
"""

import os
import re
import shlex

from ansible.errors import AnsibleConnectionFailure
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.connection.local import Connection as LocalConnection
from ansible.utils.display import Display

display = Display()

NETNS_DIR = "/run/netns"
# What `ip netns add` accepts as a file name under /run/netns, minus anything path-like.
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Connection(LocalConnection):
    """The local connection with every command moved into one network namespace."""

    transport = "netns"

    def _namespace(self):
        name = self.get_option("netns_name")
        if not name or not _NAME_RE.match(name) or name in (".", ".."):
            raise AnsibleConnectionFailure(
                "netns connection: %r is not a namespace name; set netns_name or ansible_host "
                "to a name from `ip netns list`" % (name,))
        if not os.path.exists(os.path.join(NETNS_DIR, name)):
            raise AnsibleConnectionFailure(
                "netns connection: network namespace %r does not exist (create it with "
                "`ip netns add %s` or fix netns_name/ansible_host)" % (name, name))
        return name

    def _connect(self):
        if not self._connected:
            display.vvv("ESTABLISH NETNS CONNECTION TO %s" % self._namespace(),
                        host=self._play_context.remote_addr)
        return super()._connect()

    def exec_command(self, cmd, in_data=None, sudoable=True):
        # Always through a shell: ansible may hand over a plain command line without one.
        wrapped = shlex.join(["ip", "netns", "exec", self._namespace(), "/bin/sh", "-c",
                              to_text(cmd)])
        return super().exec_command(wrapped, in_data=in_data, sudoable=sudoable)
