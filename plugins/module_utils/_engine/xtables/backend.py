# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The xtables backend behind the seam: ebtables, iptables and ip6tables chains named like libvirt's.

Desired state: a Ruleset (NIC chains, then the networks' LIBVIRT_* chains, so nwfilter's FORWARD
jumps stand first; see docs: design).  Converging is apply.converge: one ``*-restore
--noflush`` per tool, rolled back across tools on failure.
"""

from __future__ import annotations

from . import apply as _apply
from . import compile as _compile
from . import names as _names
from . import networks as _networks
from .plan import TOOL_LABEL, plan as plan_rules
from .ruleset import TOOL_ORDER, merge_rulesets
from .save_parse import parse_counters
from ..errors import StoreError, ToolMissingError
from ..host import ledger as _ledger
from ..shapes import Gathered, Result, TableChange

NAME = "xtables"
# firewalld's reload flushes the iptables-nft/ebtables-nft tables, our chains with them
FLUSHED_BY_FIREWALLD_RELOAD = True


def compile_host(instantiations, networks, unbound_taps=None):
    """The host's Ruleset; ``unbound_taps``: the placed taps when unbound vnet* taps are dropped."""
    nics = _compile.compile_nics(instantiations)
    if unbound_taps is not None:
        nics = _compile.add_unbound_drop(nics, unbound_taps)
    # nwfilter's FORWARD jumps first, then the networks' (see docs: design, ordering)
    return merge_rulesets([nics, _networks.compile_networks(networks)])


def ledger_of(desired):
    """What writing ``desired`` records in the store's ledger: chains and built-in-chain rules."""
    return _ledger.ledger_of(desired)


def device_of_chain(name):
    """The NIC a recorded chain belongs to, or None for the global and network chains."""
    return _names.device_of_chain(name)


def empty():
    return {}


def available(runner):
    """Whether the three tools are installed (a host without them has no rules of ours to remove)."""
    try:
        for tool in TOOL_ORDER:
            runner.which(tool)
    except ToolMissingError:
        return False
    return True


def probe(_runner, _desired):
    """Every kernel that runs the tools loads our chains: nothing to check beforehand."""


def notes(_desired):
    return []


def has_l3_rules(desired):
    """Whether some NIC has iptables/ip6tables rules (they need bridge-nf-call-iptables)."""
    return any(key[0] != "eb" and any(_names.device_of_chain(c) for c in state.chains)
               for key, state in desired.items())


def refuse_foreign(desired, foreign):
    """libvirt-in & co. hold every NIC's jump: rewriting them would unfilter libvirtd's NICs."""
    if not foreign:
        return
    for state in desired.values():
        if set(state.chains) & set(_names.NWF_GLOBAL):
            raise StoreError(
                "libvirtd's nwfilter driver filters %s on this host and shares the chains %s with "
                "us: take those NICs over (guest_nic_filter takeover=true) or stop libvirtd's "
                "nwfilter driver first" % (", ".join(sorted(foreign)), ", ".join(_names.NWF_GLOBAL)),
                devices=sorted(foreign),
            )


def network_warnings(_networks_list, _runner, _check_mode):
    return []  # the CHECKSUM rule fixes DHCP replies here


def _changes(the_plan):
    """(changed chains, TableChange per table) read off a plan's payload lines."""
    names, tables = set(), []
    for table in the_plan.tables:
        rewritten, removed, hooks = set(), set(), 0
        for line in table.lines:
            if line.startswith(":"):
                rewritten.add(line[1:].split()[0])
            elif line.startswith("-X "):
                removed.add(line.split()[1])
            elif line.startswith(("-I ", "-D ")):
                hooks += 1
        names |= rewritten | removed
        tables.append(TableChange("%s %s" % (TOOL_LABEL[table.tool], table.table), tuple(sorted(rewritten)),
                                  tuple(sorted(removed)), hooks))
    return sorted(names), tables


def _result(the_plan, payloads, warnings):
    chains, tables = _changes(the_plan)
    devices = sorted({dev for dev in map(_names.device_of_chain, chains) if dev})
    return Result(not the_plan.is_empty(), the_plan.diff(), payloads, chains, devices, tables, list(warnings))


def converge(desired, runner, scope, check_mode):
    found = _apply.converge(desired, runner, scope, check_mode=check_mode)
    return _result(found.plan, found.payloads, found.warnings)


def drifted(desired, runner, scope):
    live, positions = _apply.read_live(runner, scope)
    return not plan_rules(desired, live, positions).is_empty()


def render(desired):
    """Restore payloads that load ``desired`` on a host holding none of our chains."""
    the_plan = plan_rules(desired, {})
    return {TOOL_LABEL[tool]: the_plan.payload(tool) for tool in the_plan.tools_changed}


def gather(runner, scope):
    """Live owned chains with each rule's counters, read with ``*-save -c`` (a read only)."""
    out = Gathered()
    for tool in TOOL_ORDER:
        for (table, name), rules in sorted(parse_counters(tool, runner.save_counters(tool), scope).items()):
            label = "%s %s %s" % (TOOL_LABEL[tool], table, name)
            entries = [dict(rule=r.rule, packets=r.packets, bytes=r.bytes) for r in rules]
            device = _names.device_of_chain(name)
            if device:
                out.by_device.setdefault(device, {})[label] = entries
            elif name.startswith("LIBVIRT_"):
                out.networks[label] = entries
    return out
