# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nftables backend behind the seam: whole tables we own, the whole host in one ``nft -f``.

Desired state: an NftDesired (writer Tables by key, and notes on how rules were shared): the NIC
tables (compile_l2, compile_l3) and the networks' tables (networks), converged together, so
layer 2, layer 3/4 and the virtual networks change in one kernel transaction.
"""

from __future__ import annotations

from . import compile_l2 as _compile_l2
from . import converge as _converge
from . import inspect as _inspect
from . import networks as _networks
from . import tables as _tables
from .writer import render_table
from ..errors import ToolMissingError
from ..host import ledger as _ledger
from ..shapes import Gathered

NAME = "nftables"
# firewalld's reload flushes only its own table: ours stay
FLUSHED_BY_FIREWALLD_RELOAD = False


def compile_host(instantiations, networks, unbound_taps=None):
    """The host's tables; ``unbound_taps``: the placed taps when unbound vnet* taps are dropped."""
    desired = _compile_l2.compile_nics(instantiations)
    if unbound_taps is not None:
        desired.tables[_tables.L2] = _compile_l2.drop_unbound(desired.tables.get(_tables.L2), unbound_taps)
    desired.tables.update(_networks.compile_networks(networks))
    return desired


def ledger_of(desired):
    """What writing ``desired`` records in the store's ledger: the tables, whole."""
    return _ledger.ledger_of({}, desired.tables)


def device_of_chain(_name):
    """No chain of ours is recorded by name: the ledger holds whole tables."""
    return None


def empty():
    return _compile_l2.NftDesired()


def available(runner):
    """False on hosts without the nft binary (nothing of ours can be there)."""
    try:
        runner.nft(["--version"])
    except ToolMissingError:
        return False
    return True


def probe(runner, desired):
    """Raise (with context backend='nftables') when this kernel cannot load ``desired``."""
    if desired.tables:
        _converge.probe(runner, layer34=_tables.L3 in desired.tables)


def notes(desired):
    return list(desired.notes)


def has_l3_rules(desired):
    """Whether some NIC has layer 3/4 rules (the inet table sees bridged packets only through
    bridge-nf-call-iptables)."""
    return _tables.L3 in desired.tables


def refuse_foreign(_desired, _foreign):
    """Our tables share no chain with libvirtd's: its NICs keep their own rules."""


def network_warnings(networks, runner, check_mode):
    """The DHCP checksum fix: libvirt's ``tc ... action csum`` is not installed.

    The probe adds and deletes a tc action, so check mode does not run it: the warning is given
    either way, only its reason is less precise."""
    if not any(net.dhcp for net in networks):
        return []
    warning = _networks.dhcp_checksum_warning(networks, True if check_mode else runner.tc_csum_available())
    return [warning] if warning else []


def owned_tables(scope):
    """The tables of ours on this host: named in tables.py and, where the store keeps a ledger,
    recorded in it (a table named like ours that we never wrote is someone else's)."""
    return tuple(key for key in _tables.owned(scope.manage_networks)
                 if scope.ledger is None or scope.ledger.has_nft_table(*key))


def converge(desired, runner, scope, check_mode):
    return _converge.converge(desired.tables, runner, check_mode=check_mode, tables=owned_tables(scope))


def drifted(desired, runner, scope):
    tables = owned_tables(scope)
    return not _converge.plan(desired.tables, _converge.read_live(runner, tables), tables).is_empty()


def render(desired):
    """The ``nft -f`` text that loads ``desired`` and how rules were shared (``nft_notes``)."""
    if not desired.tables:
        return {}
    return {"nft": "".join(render_table(table) for _key, table in sorted(desired.tables.items())),
            "nft_notes": list(desired.notes)}


def gather(runner, scope):
    """Per NIC, the chains its dispatch entries reach and its own set elements; the networks' chains."""
    live = {key: _converge.parse_table(text)
            for key, text in _converge.read_live(runner, owned_tables(scope)).items()}
    out = Gathered()
    indexes = _inspect.view_indexes(live)
    for dev in _inspect.devices(live):
        chains, sets = _inspect.device_view(live, dev, indexes)
        out.by_device[dev] = {label: [dict(rule=rule) for rule in rules] for label, rules in chains.items()}
        out.sets[dev] = sets
    for key in _tables.NETWORKS:
        for (kind, name), lines in sorted(live.get(key, {}).items()):
            if kind == "chain":
                rules = [dict(rule=line) for line in lines if not line.startswith("type ")]
                out.networks["nft %s %s %s" % (key + (name,))] = rules
    return out
