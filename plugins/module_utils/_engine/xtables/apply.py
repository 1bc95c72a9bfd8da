# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converge the host to a desired Ruleset: read, plan, apply tool by tool, roll back, verify.

Pure apart from the runner object it is given (see _runner.Runner); tests pass a fake one.
Each tool's restore is one transaction (nft variants), but the three tools are three: when a
later tool fails, the earlier ones are planned back to their snapshot and restored.
The caller holds the host lock around the whole call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..errors import ApplyError, ConvergeError
from .names import device_of_chain, is_fixed_hook, is_owned_chain
from .plan import TOOL_LABEL, Plan, plan
from .ruleset import TOOL_ORDER, is_builtin_chain
from ..host.runner import TOOLS
from .save_parse import Scope, jump_target, parse_live

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


def _rollback(runner, scope, snapshot, tools):
    """Plan each applied tool back to its snapshot; return failures as text."""
    failures = []
    for tool in reversed(tools):
        ruleset, positions = parse_live(tool, runner.save(tool), scope)
        back = plan(_of_tool(snapshot, tool), ruleset, positions)
        if back.is_empty():
            continue
        rc, _out, err = runner.restore(tool, back.payload(tool))
        if rc != 0:
            failures.append("%s: rc %d: %s" % (TOOLS[tool][1], rc, err.strip()))
    return failures


def _apply_error(tool, rc, err, payload, applied, failures):
    number, excerpt = failing_excerpt(payload, err)
    if failures:
        outcome = "rollback failed, the host is in a mixed state: %s" % "; ".join(failures)
    elif applied:
        outcome = "rolled back: %s" % ", ".join(TOOLS[t][1] for t in applied)
    else:
        outcome = "nothing was changed"
    where = " at line %d" % number if number else ""
    return ApplyError(
        "%s failed (rc %d)%s: %s\n%s\n%s" % (TOOLS[tool][1], rc, where, err.strip(), "\n".join(excerpt), outcome),
        tool=tool, rc=rc, stderr=err, line=number, lines=excerpt, payload=payload,
        rolled_back=applied, rollback_errors=failures,
    )


def _apply(the_plan, runner, scope, snapshot):
    """One restore per tool in TOOL_ORDER; on failure roll back the tools already applied."""
    applied = []
    for tool in the_plan.tools_changed:
        payload = the_plan.payload(tool)
        rc, _out, err = runner.restore(tool, payload)
        if rc != 0:
            failures = _rollback(runner, scope, snapshot, applied)
            raise _apply_error(tool, rc, err, payload, applied, failures)
        applied.append(tool)


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
    the_plan = plan(desired, snapshot, positions)
    result = Result(
        changed=not the_plan.is_empty(), diff=the_plan.diff(),
        payloads={tool: the_plan.payload(tool) for tool in the_plan.tools_changed}, plan=the_plan,
    )
    if not check_mode and result.changed:
        _apply(the_plan, runner, scope, snapshot)
        live, positions = read_live(runner, scope)
        rest = plan(desired, live, positions)
        if not rest.is_empty():
            raise ConvergeError(
                "the rules were applied but read back differently (%s); remaining changes:\n%s"
                % (_mismatch_cause(desired, live), "".join(rest.payload(tool) for tool in rest.tools_changed)),
                diff=rest.diff(), payloads={tool: rest.payload(tool) for tool in rest.tools_changed},
            )
    result.warnings = list(getattr(runner, "warnings", []))
    return result
