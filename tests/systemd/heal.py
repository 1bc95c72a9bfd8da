"""What the systemd stage looks at: the rules we own, spoofed frames, and the time to heal.

The owned state is read from outside the container, in its network namespace, with the
machine's own tools: the ``*-save`` lines of our chains and jumps, and ``nft list table`` of
each nft table we own. Healed means byte-identical to the state right after the playbook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from lab import cases_by_name, run_battery

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import tables as _tables
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.names import is_owned_chain
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import TOOL_ORDER, is_builtin_chain
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import TOOLS
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import jump_target

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NFT_TABLES = _tables.owned(manage_networks=True)
SPOOF_CASES = cases_by_name("spoofed-src-mac", "spoofed-src-ip", "arp-spoofed-sender-ip", "arp-spoofed-sender-mac")
LEGIT_CASES = cases_by_name("ipv4-udp", "arp-request", "to-guest-udp")
POLL_TIMEOUT = 0.05  # how long one probe waits for its frames; it bounds the time resolution
HEAL_DEADLINE = 60.0


def owned_state(lab):
    """{tool: [save lines of our chains and jumps]} plus {'nft FAMILY TABLE': listing or None}."""
    found = {}
    for tool in TOOL_ORDER:
        kept, table = [], None
        text = lab.exec("hv", [TOOLS[tool][0]]).stdout
        for line in text.splitlines():
            words = line.split()
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":") and is_owned_chain(tool, table, words[0][1:]) \
                    and not is_builtin_chain(tool, table, words[0][1:]):
                kept.append("%s %s" % (table, words[0]))
            elif line.startswith("-A "):
                target = jump_target(" ".join(words[2:]))
                if is_owned_chain(tool, table, words[1]) or (target and is_owned_chain(tool, table, target)):
                    kept.append("%s %s" % (table, line))
        found[tool] = kept
    for family, name in NFT_TABLES:
        done = lab.exec("hv", ["nft", "list", "table", family, name], check=False)
        found["nft %s %s" % (family, name)] = done.stdout if done.returncode == 0 else None
    return found


def spoof_passed(lab):
    """Names of the spoofed frames that got anywhere (guest or host) in one probe."""
    results = run_battery(lab, SPOOF_CASES, timeout=POLL_TIMEOUT)
    return sorted(name for name, where in results.items() if any(where.values()))


def watch_heal(lab, expected, running=None, deadline=HEAL_DEADLINE):
    """Probe with spoofed frames and read the owned state, from now (the event was just asked for;
    ``running()`` says whether its command still runs) until the command returned, the state is
    back and a probe got nothing through.

    Times count from the moment the command returned (negative: while it ran). Returns
    dict(healed=time of the first read that found the state back after the command returned,
    last_pass=time of the last probe a spoofed frame got through in, or None, broken=whether a read
    ever found the state differing, probes=number of probe rounds)."""
    start = time.monotonic()
    returned = None if running is not None and running() else start
    last_pass_at, broken, probes = None, False, 0
    while True:
        passed = spoof_passed(lab)
        probes += 1
        if passed:
            last_pass_at = time.monotonic()
        same = owned_state(lab) == expected
        now = time.monotonic()
        broken = broken or not same
        if returned is None and not running():
            returned = now
        if returned is not None and same and not passed:
            return dict(healed=now - returned, last_pass=None if last_pass_at is None else last_pass_at - returned,
                        broken=broken, probes=probes)
        if now - start > deadline:
            raise AssertionError("not healed within %ss: spoofed frames passing %s, state %s, command %s"
                                 % (deadline, passed, "back" if same else "differs",
                                    "returned" if returned is not None else "still running"))


class Playbook:
    """ansible-playbook against the container over SSH, with this checkout as the collection."""

    def __init__(self, workdir, hostvars):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.inventory = os.path.join(workdir, "inventory.json")
        with open(self.inventory, "w", encoding="utf-8") as handle:
            json.dump({"all": {"children": {"hypervisors": {"hosts": {"hv": hostvars}}}}}, handle)

    def run(self, text, **extra_vars):
        """Run the playbook ``text``; returns (changed count, output). Fails the test on failure."""
        path = os.path.join(self.workdir, "play.yml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".build", "collections"),
                   ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_HOST_KEY_CHECKING="0",
                   ANSIBLE_PIPELINING="1",
                   ANSIBLE_LOCAL_TEMP=os.path.join(self.workdir, ".ansible-local"))
        argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", self.inventory, path,
                "-e", json.dumps(extra_vars)]
        proc = subprocess.run(argv, cwd=self.workdir, env=env, capture_output=True, text=True, timeout=900,
                              check=False)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output
        recap = [line for line in proc.stdout.splitlines() if line.startswith("hv ")]
        assert recap and "failed=0" in recap[-1] and "unreachable=0" in recap[-1], output
        changed = int(recap[-1].split("changed=")[1].split()[0])
        return changed, output
