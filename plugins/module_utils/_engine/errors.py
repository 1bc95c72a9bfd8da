# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed errors raised by the engine.

The engine never calls ``fail_json``; each module turns one of these into one ``fail_json``.
Every error carries a human message (naming the object and the fix) and a ``context`` dict
of structured fields that modules return next to ``msg``.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""

    def __init__(self, msg, **context):
        super().__init__(msg)
        self.msg = msg
        self.context = context

    def __str__(self):
        return self.msg


class FilterXMLError(EngineError):
    """A filter, binding or network document is malformed or invalid."""


class ResolveError(EngineError):
    """A filter graph cannot be resolved (cycle, unknown filter, bad reference)."""


class VariableError(ResolveError):
    """A variable is missing, empty, or indexed out of range at instantiation."""


class DeviceNameError(EngineError):
    """A device or chain name is not acceptable (too long, bad characters)."""


class StoreError(EngineError):
    """The host store (config_dir) is corrupt, foreign or cannot be written."""


class SaveParseError(EngineError):
    """Output of a *-save tool cannot be parsed."""


class ApplyError(EngineError):
    """Applying a plan failed; the previous state was restored."""


class ConvergeError(ApplyError):
    """After applying, the live rules still differ from the desired ones."""


class ToolMissingError(EngineError):
    """A required binary (ebtables-restore, iptables-restore, ...) is not installed."""


class OwnershipError(EngineError):
    """A chain we need already exists, and the store's ledger says we did not write it."""


class LockError(EngineError):
    """The shared lock could not be taken in time."""
