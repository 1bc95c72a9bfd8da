# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which backend filters guest NICs on a host (xtables or nftables), and converging both.

The choice is per call (the ``backend`` option) and per host: the last backend a call asked for
is kept in ``config_dir/backend`` so later writers (and the re-apply command) use it.  Whatever
the choice, both backends are converged in one run: the chosen one to the desired rules, the other
one to no NIC rules, so switching a host removes the old backend's rules.  The new backend is
applied first: for a moment both filter (stricter, never open).
"""

from __future__ import annotations

import os

from ._errors import StoreError, ToolMissingError
from . import _apply
from . import _netfw_nft
from . import _nft

BACKENDS = ("xtables", "nftables")
DEFAULT = "xtables"
BACKEND_FILE = "backend"


def stored(config_dir):
    """The host's default backend from the store, or None."""
    path = os.path.join(config_dir, BACKEND_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            name = handle.read().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError("cannot read %s: %s" % (path, exc), path=path)
    if name not in BACKENDS:
        raise StoreError("%s holds %r, not one of %s: fix or remove the file" % (path, name[:40], ", ".join(BACKENDS)),
                         path=path)
    return name


def choose(config_dir, requested=None):
    if requested is not None and requested not in BACKENDS:
        raise StoreError("backend %r is not one of %s" % (requested, ", ".join(BACKENDS)), backend=requested)
    return requested or stored(config_dir) or DEFAULT


def record(config_dir, requested, check_mode):
    """Keep ``requested`` as the host default; True when the stored default changed."""
    if requested is None or stored(config_dir) == requested:
        return False
    if not check_mode:
        os.makedirs(config_dir, mode=0o700, exist_ok=True)
        tmp = os.path.join(config_dir, "." + BACKEND_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(requested + "\n")
        os.replace(tmp, os.path.join(config_dir, BACKEND_FILE))
    return True


def nft_available(runner):
    """False for runners without nft (fake runners, hosts without the nft binary)."""
    if not hasattr(runner, "nft"):
        return False
    try:
        runner.nft(["--version"])
    except ToolMissingError:
        return False
    return True


def owned_tables(scope):
    """nft tables we own: the NIC table always; ``ip``/``ip6 libvirt_network`` only once the store
    declares networks (the same rule as for the LIBVIRT_* chains), so libvirtd's stay untouched."""
    return _nft.OWNED_TABLES + (_netfw_nft.TABLES if scope.manage_networks else ())


def converge_both(backend, xt_desired, nft_tables, runner, scope, check_mode):
    """(xtables Result, nft NftResult or None): chosen backend first, the other one emptied."""
    tables = owned_tables(scope)
    if backend == "nftables":
        nft_result = _nft.converge(nft_tables, runner, check_mode=check_mode, tables=tables)
        return _apply.converge(xt_desired, runner, scope, check_mode=check_mode), nft_result
    result = _apply.converge(xt_desired, runner, scope, check_mode=check_mode)
    nft_result = _nft.converge({}, runner, check_mode=check_mode, tables=tables) if nft_available(runner) else None
    return result, nft_result


def network_warnings(backend, networks, runner):
    """Warnings about the networks on this backend: the DHCP checksum fix on nftables."""
    if backend != "nftables" or not any(net.dhcp for net in networks):
        return []
    available = runner.tc_csum_available() if hasattr(runner, "tc_csum_available") else False
    warning = _netfw_nft.dhcp_checksum_warning(networks, available)
    return [warning] if warning else []
