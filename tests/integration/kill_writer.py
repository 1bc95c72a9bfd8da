# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One writer in a process of its own, for the fault-injection tests (test_kill_anywhere.py).

``python kill_writer.py JSON``: JSON names the module action (``guest_nic_filter`` or
``virt_network_fw``), its params and the hypervisor namespace's command prefix.  The runner's test
hook (HFW_TEST_KILL_AT / HFW_TEST_FAULT_LOG in the environment) kills this process at a chosen
tool call or store rename; a run that is not killed prints its result as JSON and exits 0.
"""

import json
import sys

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner


def main():
    job = json.loads(sys.argv[1])
    runner = HostRunner(prefix=job["prefix"])
    result = getattr(_actions, job["action"])(job["params"], False, runner)
    json.dump({"changed": result["changed"]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
