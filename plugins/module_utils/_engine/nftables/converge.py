# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converge the nftables tables we own: read, plan by diff, apply in one ``nft -f``, verify.

We own whole tables by name (tables.py) and never read or write any other.  A changed table
is replaced in one transaction: ``table F N`` (creates it if absent) + ``delete table F N`` +
its full definition, all in one ``nft -f`` file, which the kernel commits atomically: a packet
sees the old table or the new one, never none.

Desired and live tables compare as parsed structures: objects by (kind, name), set elements
sorted (the kernel lists them in hash order) and integers canonical; the elements of dynamic
sets (connlimit counting) are packet state and are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Tuple

from . import inspect as _inspect
from . import tables as _tables
from .writer import render_table
from ..errors import ApplyError, ConvergeError
from ..shapes import Result, TableChange

_OBJECT = re.compile(r"^(set|map|chain)\s+(\S+)\s*\{$")
_INT = re.compile(r"^(0x[0-9a-fA-F]+|[0-9]+)$")
PROBE_TABLE = "hfw_probe"
# what the bridge table needs from the kernel: verdict maps, concatenated sets, raw payloads
PROBE = """table bridge %s {
\tset s { type ether_addr . ifname; }
\tset r { typeof @nh,64,48 . iifname; }
\tmap m { type ifname : verdict; }
\tchain c {
\t\tether saddr . iifname @s return
\t\t@nh,64,48 . iifname @r return
\t}
\tchain p {
\t\ttype filter hook prerouting priority dstnat; policy accept;
\t\tiifname vmap @m
\t}
}
""" % PROBE_TABLE


def _element(text):
    parts = [p.strip() for p in text.split(" . ")]
    # not int(p, 0): it refuses a decimal with a leading zero ("010")
    return " . ".join(str(int(p, 16) if p[:2].lower() == "0x" else int(p)) if _INT.match(p) else p for p in parts)


def parse_table(text) -> Dict[Tuple[str, str], Tuple[str, ...]]:
    """``nft list table`` text (or our rendering) -> {(kind, name): lines}, order-free sets."""
    objects: Dict[Tuple[str, str], Tuple[str, ...]] = {}
    current, lines, elements = None, [], None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("table ") or (current is None and line == "}"):
            continue
        if elements is not None:
            elements += " " + line
        elif current is None:
            match = _OBJECT.match(line)
            if not match:
                raise ConvergeError("cannot read nft output line %r" % line, line=line)
            current, lines = (match.group(1), match.group(2)), []
            continue
        elif line.startswith("elements = {"):
            elements = line[len("elements = {"):]
        elif line == "}":
            if "flags dynamic" in lines:
                # filled by the packet path (connlimit counts): its elements are state, not rules
                lines = [item for item in lines if not item.startswith("elements = ")]
            objects[current] = tuple(lines)
            current = None
            continue
        else:
            lines.append(line)
            continue
        if elements.rstrip().endswith("}"):
            body = elements.rstrip()[:-1]
            lines.append("elements = " + ", ".join(sorted(_element(e) for e in body.split(",") if e.strip())))
            elements = None
    return objects


@dataclass
class NftPlan:
    """Tables to replace (desired text, '' = remove) and their before/after text."""

    changes: Dict[Tuple[str, str], str] = field(default_factory=dict)
    before: Dict[Tuple[str, str], str] = field(default_factory=dict)

    def is_empty(self):
        return not self.changes

    def payload(self):
        out = []
        for (family, name), text in sorted(self.changes.items()):
            out.append("table %s %s\ndelete table %s %s\n" % (family, name, family, name))
            if text:
                out.append(text)
        return "".join(out)

    def diff(self):
        return [{"before_header": "nft %s %s (live)" % key, "after_header": "nft %s %s (desired)" % key,
                 "before": self.before.get(key, ""), "after": text}
                for key, text in sorted(self.changes.items())]


def read_live(runner, tables=_tables.NICS):
    """{(family, name): text} of the owned tables that exist.

    Each table is asked for by name: ``nft list tables`` fetches the whole ruleset first, which
    costs a quarter second beside 1000 NICs' xtables rules; a missing table fails at once (ENOENT).
    """
    live = {}
    for key in tables:
        rc, text, err = runner.nft(["list", "table", key[0], key[1]])
        if rc == 0:
            live[key] = text
        elif "No such file or directory" not in err:
            raise ApplyError("nft list table %s %s failed: %s" % (key + (err.strip(),)), rc=rc, stderr=err)
    return live


def plan(desired, live, tables=_tables.NICS) -> NftPlan:
    """The tables of ``tables`` whose desired form (a writer Table, absent = none) differs from the live text."""
    result = NftPlan()
    for key in tables:
        want, have = render_table(desired[key]) if key in desired else "", live.get(key, "")
        if parse_table(want) != parse_table(have):
            result.changes[key] = want
            result.before[key] = have
    return result


# what layer 3/4 NIC rules need: marks set in the bridge family, and fib, conntrack and reject
# behind verdict maps in an inet table (br_netfilter carries the mark across)
PROBE_L3 = """table bridge %s {
\tchain q {
\t\ttype filter hook prerouting priority filter; policy accept;
\t\tmeta mark set iifname map { "lo" : 0x1 }
\t}
}
table inet %s {
\tmap m { type mark : verdict; }
\tchain c {
\t\tct state established ct direction reply return
\t\treject with icmp port-unreachable
\t}
\tchain p {
\t\ttype filter hook prerouting priority mangle; policy accept;
\t\tfib daddr type local return
\t\tmeta mark vmap @m
\t}
}
""" % (PROBE_TABLE, PROBE_TABLE)


def probe(runner, layer34=False):
    """Fail clearly when the kernel lacks what our tables use (checked, never committed)."""
    rc, _out, err = runner.nft(["-c", "-f", "-"], data=PROBE + (PROBE_L3 if layer34 else ""))
    if rc != 0:
        raise ApplyError(
            "this kernel cannot load the nftables backend's tables (nf_tables bridge family, verdict "
            "maps, concatenated sets; for layer 3/4 rules also inet fib, conntrack, reject): %s; "
            "use backend 'xtables' on this host" % err.strip(),
            stderr=err, backend="nftables",
        )


def changed_chains(the_plan):
    """Labels (``FAMILY TABLE CHAIN``) of the chains a plan adds, rewrites or removes."""
    out = []
    for key, text in sorted(the_plan.changes.items()):
        want, have = parse_table(text), parse_table(the_plan.before.get(key, ""))
        names = {name for kind, name in list(want) + list(have) if kind == "chain"}
        out += ["%s %s %s" % (key + (name,)) for name in sorted(names)
                if want.get(("chain", name)) != have.get(("chain", name))]
    return out


def table_changes(the_plan):
    out = []
    for key, text in sorted(the_plan.changes.items()):
        want, have = parse_table(text), parse_table(the_plan.before.get(key, ""))
        chains = [name for kind, name in set(want) | set(have) if kind == "chain"
                  and want.get(("chain", name)) != have.get(("chain", name))]
        out.append(TableChange("nft %s %s" % key, tuple(sorted(c for c in chains if ("chain", c) in want)),
                               tuple(sorted(c for c in chains if ("chain", c) not in want))))
    return out


def converge(desired, runner, check_mode=False, tables=_tables.NICS) -> Result:
    """Make the owned nft tables equal ``desired``; one ``nft -f`` (one transaction); verify by
    reading back.  The only write is that one call: a kill at any instant leaves the old tables
    or the new ones."""
    live = read_live(runner, tables)
    the_plan = plan(desired, live, tables)
    rebuilt = []
    if the_plan.changes:
        rebuilt = _inspect.rebuilt_devices({key: parse_table(render_table(desired[key])) for key in tables if key in desired},
                                           {key: parse_table(text) for key, text in live.items()})
    result = Result(not the_plan.is_empty(), the_plan.diff(), {"nft": the_plan.payload()} if the_plan.changes else {},
                    changed_chains(the_plan), rebuilt, table_changes(the_plan))
    if check_mode or the_plan.is_empty():
        return result
    if any(desired.get(key) for key in the_plan.changes):
        probe(runner, layer34=bool(desired.get(_tables.L3)))
    payload = result.payloads["nft"]
    rc, _out, err = runner.nft(["-f", "-"], data=payload)
    if rc != 0:
        # nft -f is one transaction: nothing of it was applied
        raise ApplyError("nft -f failed (rc %d), nothing was changed: %s" % (rc, err.strip()),
                         rc=rc, stderr=err, payload=payload)
    rest = plan(desired, read_live(runner, tables), tables)
    if not rest.is_empty():
        # the store keeps its old state on any error: put the tables back too, so both agree
        back = NftPlan({key: live.get(key, "") for key in the_plan.changes})
        rc, _out, err = runner.nft(["-f", "-"], data=back.payload())
        outcome = ("the tables were rolled back to their state from before this run, like the store" if rc == 0
                   else "the rollback failed (rc %d: %s): the kernel may differ from the store, run again"
                   % (rc, err.strip()))
        raise ConvergeError(
            "the nftables rules were applied but read back differently: this is a bug in the nft "
            "compiler; %s; tables: %s" % (outcome, ", ".join("%s %s" % key for key in rest.changes)),
            diff=rest.diff(), rolled_back=rc == 0,
        )
    return result
