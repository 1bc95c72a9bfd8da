# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converge the host to a desired Ruleset: read, plan, apply make-before-break, roll back, verify.

Pure apart from the runner object it is given (see host.runner.Runner); tests pass a fake one.
Each tool's restore is one transaction (nft variants), but the three tools are three, so an
apply is two steps in every tool: first the bridge state (new chains and jumps in, nothing out),
then the desired state (old chains and jumps out).  A kill between any two restores leaves every
NIC filtered by its old rules, its new rules or both, in every tool; the next writer plans from
whatever it reads.  A failed restore, a timeout, a signal or an unexpected exception moves every
tool back to its snapshot the same way.  The caller holds the host lock around the whole call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..errors import ApplyError, ConvergeError, EngineError
from ..host.runner import TOOLS, Interrupted, signals_interrupt
from .names import NWF_GLOBAL, device_of_chain, is_fixed_hook, is_owned_chain
from .plan import TOOL_LABEL, Plan, plan, stale_hooks
from .ruleset import TOOL_ORDER, Chain, TableState, is_builtin_chain
from .save_parse import Scope, jump_target, parse_live, printable

_ERROR_LINE = re.compile(r"line:? (\d+)")
CONTEXT_LINES = 3


@dataclass
class Result:
    changed: bool
    diff: List[dict]
    payloads: Dict[str, str]
    plan: Plan
    warnings: List[str] = field(default_factory=list)


def read_live(runner, scope):
    """(owned Ruleset, HookPositions) of all three tools."""
    live, positions = {}, {}
    for tool in TOOL_ORDER:
        ruleset, pos = parse_live(tool, runner.save(tool), scope)
        live.update(ruleset)
        positions.update(pos)
    return live, positions


def _of_tool(ruleset, tool):
    return {key: state for key, state in ruleset.items() if key[0] == tool}


def _check_desired(desired, scope):
    """Everything we write must be something the parser will read back as ours."""
    for (tool, table), state in desired.items():
        for name in state.chains:
            ours = is_owned_chain(tool, table, name, scope.manage_networks) and not is_builtin_chain(tool, table, name)
            if not ours or device_of_chain(name) in scope.foreign_devices:
                raise ConvergeError(
                    "chain %s in %s %s is not owned by this host store (foreign device, network chains "
                    "not managed, or not a name we generate): nothing was changed" % (name, TOOL_LABEL[tool], table),
                    chain=name, table=table, tool=tool,
                )
        for builtin, rule in state.hooks:
            if not is_builtin_chain(tool, table, builtin) or (
                    jump_target(rule) not in state.chains and not is_fixed_hook(tool, table, builtin, rule)):
                raise ConvergeError(
                    "hook %r in %s %s %s must jump from a built-in chain to one of our chains: nothing "
                    "was changed" % (rule, TOOL_LABEL[tool], table, builtin),
                    chain=builtin, table=table, tool=tool,
                )


def failing_excerpt(payload, stderr):
    """Payload lines around the line the tool's stderr names (nft often names the COMMIT line)."""
    lines = payload.splitlines()
    match = _ERROR_LINE.search(stderr or "")
    if not match:
        return None, []
    number = int(match.group(1))
    low, high = max(1, number - CONTEXT_LINES), min(len(lines), number + CONTEXT_LINES)
    return number, ["%s%4d: %s" % (">" if n == number else " ", n, lines[n - 1]) for n in range(low, high + 1)]


def bridge_state(desired, live):
    """The state an apply passes through: every desired chain and hook, plus everything live
    that ``desired`` drops, kept as it is.

    In the shared dispatch chains (``libvirt-in`` & co.) the jumps of NICs that lose their chains
    follow the new jumps.  Reached from ``live`` and left for ``desired`` by one transaction per
    tool each, it keeps every NIC filtered by its old rules, its new rules or both, in every tool
    at every instant: nothing is removed from any tool before every tool holds its new rules.
    """
    bridge = {}
    for key in set(desired) | set(live):
        want = desired.get(key) or TableState(*key)
        have = live.get(key) or TableState(*key)
        chains = dict(want.chains)
        for name, chain in have.chains.items():
            if name not in chains:
                chains[name] = chain
            elif name in NWF_GLOBAL:
                old_jumps = tuple(rule for rule in chain.rules if rule not in chains[name].rules)
                if old_jumps:
                    chains[name] = Chain(name, chains[name].rules + old_jumps, chains[name].policy)
        hooks = list(want.hooks)
        for builtin in dict.fromkeys(b for b, _rule in have.hooks):
            rules = have.hooks_of(builtin)
            hooks += [(builtin, rules[i]) for i in stale_hooks(want.hooks_of(builtin), rules)]
        bridge[key] = TableState(key[0], key[1], chains, tuple(hooks))
    return bridge


class _StepFailed(Exception):
    """A restore of one step returned non-zero (the tool's transaction applied nothing)."""

    def __init__(self, tool, rc, err, payload):
        super().__init__("%s rc %d" % (TOOLS[tool][1], rc))
        self.tool, self.rc, self.err, self.payload = tool, rc, err, payload


@dataclass
class _Progress:
    """Which tools a transition has restored so far, and the one it is restoring now."""

    applied: List[str] = field(default_factory=list)
    current: Optional[str] = None
    payload: str = ""


def _restore_each(runner, the_plan, order, progress):
    for tool in order:
        if tool not in the_plan.tools_changed:
            continue
        progress.current, progress.payload = tool, the_plan.payload(tool)
        rc, _out, err = runner.restore(tool, progress.payload)
        if rc != 0:
            raise _StepFailed(tool, rc, err, progress.payload)
        if tool not in progress.applied:
            progress.applied.append(tool)
        progress.current = None


def _transition(runner, scope, target, live, positions, order, progress):
    """Make, then break: restore the bridge state in every tool, then ``target`` in every tool."""
    bridge = bridge_state(target, live)
    make = plan(bridge, live, positions)
    _restore_each(runner, make, order, progress)
    if plan(target, bridge).is_empty():
        return
    if not make.is_empty():
        live, positions = read_live(runner, scope)
    _restore_each(runner, plan(target, live, positions), order, progress)


def _describe(exc):
    """What interrupted an apply, in one line."""
    if isinstance(exc, Interrupted):
        return "interrupted by %s" % exc.name
    if isinstance(exc, EngineError):
        return exc.msg
    return "unexpected %s: %s (a bug: please report it)" % (type(exc).__name__, exc)


def _tool_states(runner, scope, snapshot, desired):
    """{tool label: 'as before' | 'new rules' | 'neither ...'} read from the kernel after a rollback."""
    states = {}
    for tool in TOOL_ORDER:
        try:
            ruleset, positions = parse_live(tool, runner.save(tool), scope)
        except Exception as exc:  # the report must not hide the first failure
            states[TOOL_LABEL[tool]] = "unknown (%s)" % _describe(exc)
            continue
        if plan(_of_tool(snapshot, tool), ruleset, positions).is_empty():
            states[TOOL_LABEL[tool]] = "as before"
        elif plan(_of_tool(desired, tool), ruleset, positions).is_empty():
            states[TOOL_LABEL[tool]] = "new rules"
        else:
            states[TOOL_LABEL[tool]] = "between old and new (each NIC filtered by old, new or both)"
    return states


def _roll_back(runner, scope, snapshot):
    """Converge every tool back to ``snapshot`` (make before break too); '' or why it failed."""
    progress = _Progress()
    try:
        live, positions = read_live(runner, scope)
        _transition(runner, scope, snapshot, live, positions, tuple(reversed(TOOL_ORDER)), progress)
    except _StepFailed as failed:
        return "%s: rc %d: %s" % (TOOLS[failed.tool][1], failed.rc, failed.err.strip())
    except Exception as exc:  # reported in the apply's one error message
        return _describe(exc)
    return ""


def _apply_error(cause, progress, rollback_failure, states):
    """One message: what failed, where, and the state of each tool afterwards."""
    failed = cause if isinstance(cause, _StepFailed) else None
    tool = progress.current
    number, excerpt = failing_excerpt(progress.payload, failed.err) if failed else (None, [])
    if failed:
        where = " at line %d" % number if number else ""
        what = "%s failed (rc %d)%s: %s" % (TOOLS[tool][1], failed.rc, where, failed.err.strip())
    else:
        what = "applying the rules %s%s" % ("during %s: " % TOOLS[tool][1] if tool else "stopped: ", _describe(cause))
    state_text = ", ".join("%s: %s" % item for item in states.items())
    if rollback_failure:
        outcome = ("rollback failed, the host is in a mixed state (%s): %s; run again to converge"
                   % (rollback_failure, state_text))
    elif progress.applied or (tool and not failed):
        outcome = "rolled back: %s" % state_text
    else:
        outcome = "nothing was changed: %s" % state_text
    lines = [what] + (["\n".join(excerpt)] if failed else []) + [outcome]
    return ApplyError(
        printable("\n".join(lines)), tool=tool, rc=failed.rc if failed else None,
        stderr=printable(failed.err) if failed else None,
        line=number, lines=excerpt, payload=progress.payload, rolled_back=list(progress.applied),
        rollback_errors=[rollback_failure] if rollback_failure else [], tool_states=states,
        interrupted_by=cause.name if isinstance(cause, Interrupted) else None,
    )


def _apply(desired, runner, scope, snapshot, positions):
    """Move the host from ``snapshot`` to ``desired``; on any failure, a signal or an unexpected
    exception, move it back and raise one ApplyError that says what state each tool is in."""
    progress = _Progress()
    with signals_interrupt() as guard:
        try:
            _transition(runner, scope, desired, snapshot, positions, TOOL_ORDER, progress)
        except BaseException as exc:  # noqa: B902  signals and bugs roll back like a failed restore
            if not isinstance(exc, (Exception, Interrupted, KeyboardInterrupt)):
                raise
            guard.defer()
            failure = _roll_back(runner, scope, snapshot)
            raise _apply_error(exc, progress, failure, _tool_states(runner, scope, snapshot, desired)) from None


def _mismatch_cause(desired, live):
    """Why a read-back differs: a printed form never makes a chain disappear, another program does."""
    gone = sorted(name for key, state in desired.items() for name in state.chains
                  if key not in live or name not in live[key].chains)
    if gone:
        return ("another program removed %s meanwhile, e.g. a firewall reload or `nft flush ruleset`: "
                "run again" % ", ".join(gone[:5] + (["..."] if len(gone) > 5 else [])))
    return "the tool prints them in another form: this is a bug in the rule compiler"


def converge(desired, runner, scope: Optional[Scope] = None, check_mode=False):
    """Make the owned chains of all three tools equal ``desired``; Result says what changed."""
    scope = scope or Scope()
    _check_desired(desired, scope)
    for tool in TOOL_ORDER:
        runner.which(tool)
    snapshot, positions = read_live(runner, scope)
    scope = scope.unclaimed()  # the chains it claims exist from now on because we write them
    the_plan = plan(desired, snapshot, positions)
    result = Result(
        changed=not the_plan.is_empty(), diff=the_plan.diff(),
        payloads={tool: the_plan.payload(tool) for tool in the_plan.tools_changed}, plan=the_plan,
    )
    if not check_mode and result.changed:
        _apply(desired, runner, scope, snapshot, positions)
        live, positions = read_live(runner, scope)
        rest = plan(desired, live, positions)
        if not rest.is_empty():
            # the store keeps its old state on any error: put the kernel back too, so both agree
            failure = _roll_back(runner, scope, snapshot)
            outcome = ("every tool was rolled back to its rules from before this run, like the store"
                       if not failure else "the rollback failed (%s): the kernel may differ from the store, "
                       "run again" % failure)
            raise ConvergeError(
                "the rules were applied but read back differently (%s); %s; the differences were:\n%s"
                % (_mismatch_cause(desired, live), outcome,
                   "".join(rest.payload(tool) for tool in rest.tools_changed)),
                diff=rest.diff(), payloads={tool: rest.payload(tool) for tool in rest.tools_changed},
                rolled_back=not failure, rollback_error=failure,
            )
    result.warnings = list(getattr(runner, "warnings", []))
    return result
