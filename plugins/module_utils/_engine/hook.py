# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt's qemu hook: a guest's bindings follow it onto its taps and off them (docs/docsite/rst/guest-hooks.rst).

libvirt runs ``qemu DOMAIN OPERATION SUB-OPERATION EXTRA`` with the domain XML on stdin.  libvirt
creates a guest's taps while it builds QEMU's command line and runs ``start begin`` right after,
before QEMU exists: that is the first moment the taps and their names (``<target dev>``) are
known, and the last one before the guest can send a frame.  So:

- ``start``, ``started``, ``reconnect``, ``attach``: record the domain's NICs (MAC, tap, alias)
  in the runtime map and reconcile.  ``start`` is the one that counts; ``started`` repeats it
  (nothing changes then); ``reconnect`` runs after a libvirtd restart, ``attach`` when libvirt
  adopts a QEMU process.
- ``prepare``, ``migrate``, ``restore``: no tap exists yet (an incoming migration and a restore go
  on with ``prepare`` and ``start`` on this host).  Only check that the domain's bindings resolve
  here, so a guest whose filters this host lacks is refused before anything starts.  Nothing is
  ever written to stdout: for ``migrate`` and ``restore`` libvirt reads stdout as a replacement
  domain XML, and empty means "unchanged".
- ``stopped``, ``release``: record the domain as stopped and reconcile: its rules vanish.
  ``stopped`` runs before libvirt deletes the taps, so the record, not the tap's disappearance,
  is what takes the rules away.

Fail-closed by default: when the rules of a starting guest cannot be applied, the hook exits 1 and
libvirt does not start the guest (or aborts the incoming migration).  ``fail_open = yes`` in the
hook's config file turns that into a logged warning.  ``reconnect`` and ``attach`` never fail:
libvirt would kill a guest that is already running.  A failed ``stopped``/``release`` exits 1 so
libvirt logs it (libvirt cannot undo a stop).  Errors go to stderr (libvirt logs them when the
hook fails) and to syslog.

Only bindings of the domain in question make the hook reconcile; other guests' taps are never
looked at beyond what every reconcile does.  The host lock is taken with a short timeout.
"""

from __future__ import annotations

import math
import os
import sys

from .host.defaults import DEFAULT_CONFIG_DIR, DEFAULT_LOCK_FILE
from .errors import EngineError, StoreError
from .host import placement as _guests
from .language import resolve as _resolve
from .host import runtime as _runtime
from . import service as _service
from .host import store as _store
from .host.runner import HostRunner
from .language import filter_xml as _filterxml
from .language.model import domain_key

PROG = "hypervisor-firewall-qemu-hook"
DEFAULT_HOOK_CONF = "/etc/hypervisor-firewall/hook.conf"
CONF_ENV = "HYPERVISOR_FIREWALL_HOOK_CONF"
EXIT_OK, EXIT_FAIL = 0, 1
# libvirtd's live domain XML, which may carry large <metadata>
MAX_DOMAIN_XML_BYTES = 64 * 1024 * 1024
UP_OPS = ("start", "started", "reconnect", "attach")
PREFLIGHT_OPS = ("prepare", "migrate", "restore")
DOWN_OPS = ("stopped", "release")
# a guest that is already running is killed by libvirt when these fail
NEVER_FAIL_OPS = ("reconnect", "attach")
DEFAULTS = {"config_dir": DEFAULT_CONFIG_DIR, "lock_file": DEFAULT_LOCK_FILE, "lock_timeout": "10",
            "fail_open": "no", "tool_timeout": "20"}


class HookError(Exception):
    """A bad call or config: reported like every engine error."""


# ---------------------------------------------------------------- settings

def parse_conf(text):
    """``key = value`` lines ('#' comments) over DEFAULTS; unknown keys are an error (typos)."""
    settings = dict(DEFAULTS)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in DEFAULTS:
            raise HookError("hook config line %d: %r is not one of %s = VALUE" % (number, raw, ", ".join(DEFAULTS)))
        settings[key] = value
    for key in ("lock_timeout", "tool_timeout"):
        try:
            # 'nan' and 'inf' parse as floats, but a lock wait or tool run must end
            if not math.isfinite(float(settings[key])) or float(settings[key]) < 0:
                raise ValueError
        except ValueError:
            raise HookError("hook config: %s = %r is not a number of seconds" % (key, settings[key])) from None
    if settings["fail_open"].lower() not in ("yes", "no", "true", "false", "1", "0"):
        raise HookError("hook config: fail_open = %r: use yes or no" % settings["fail_open"])
    return settings


def load_settings(environ):
    path = environ.get(CONF_ENV) or DEFAULT_HOOK_CONF
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_conf(handle.read())
    except FileNotFoundError:
        return dict(DEFAULTS)
    except OSError as exc:
        raise HookError("cannot read the hook config %s: %s" % (path, exc.strerror or exc)) from None


def fail_open(settings):
    return settings["fail_open"].lower() in ("yes", "true", "1")


# ---------------------------------------------------------------- what a domain has in the store

def guest_bindings(state, domain):
    """The domain's bindings, and entries of the store that no longer parse but are keyed like them."""
    prefix = domain_key(domain) + "--"
    return [b for key, b in state.bindings.items()
            if (b.portdev is None and b.domain == domain) or (isinstance(b, _store.Broken) and key.startswith(prefix))]


def has_fixed_bindings(state):
    return any(b.portdev is not None for b in state.bindings.values())


def read_domain_nics(xml):
    """The NICs of libvirt's live domain XML.  libvirtd wrote it and it may carry megabytes of
    <metadata>, so the limit here is MAX_DOMAIN_XML_BYTES, not the 1 MiB of user documents."""
    data = xml.encode("utf-8", "surrogateescape") if isinstance(xml, str) else xml
    if len(data) > MAX_DOMAIN_XML_BYTES:
        raise HookError("the domain XML is %d bytes, more than %d" % (len(data), MAX_DOMAIN_XML_BYTES))
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise HookError("the domain XML holds a DOCTYPE or ENTITY declaration")
    if _filterxml.etree is None:
        raise HookError("the Python library lxml is required to read the domain XML: install python3-lxml")
    parser = _filterxml.etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                        remove_comments=True, remove_pis=True)
    try:
        root = _filterxml.etree.fromstring(data, parser)
    except _filterxml.etree.XMLSyntaxError as exc:
        raise HookError("the domain XML is malformed: %s" % exc) from None
    if root.tag != "domain":
        raise HookError("the domain XML has root <%s>, not <domain>" % root.tag)
    return _guests.domain_nics(root)


def concerns(state, domain, nics):
    """True when the domain has bindings, or a fixed binding names one of its taps."""
    taps = {nic.tap for nic in nics if nic.tap}
    return bool(guest_bindings(state, domain)) or any(b.portdev in taps for b in state.bindings.values())


def preflight(state, domain):
    """Every binding of the domain must resolve on this host (filters defined, variables given)."""
    for binding in guest_bindings(state, domain):
        if isinstance(binding, _store.Broken):
            raise StoreError(binding.message, domain=domain)
        _resolve.instantiate(binding, state.filters)


def _record_then_keep(config_dir, record):
    """A reconcile mutation that writes the runtime record under the host lock, store unchanged."""
    def mutate(state):
        _runtime.save_record(config_dir, record)
        return state, []
    return mutate


def unplaced(placements, domain, nics):
    """Labels of the domain's bindings whose NIC it has but whose rules have no tap."""
    macs = {nic.mac for nic in nics}
    return sorted(p.binding.label for p in placements
                  if p.binding.portdev is None and p.binding.domain == domain and p.binding.mac in macs
                  and p.tap is None)


def converge_domain(settings, record, runner):
    """Record the domain's state and converge the host; returns warnings.  Raises EngineError."""
    config_dir = settings["config_dir"]
    state = _store.load_store(config_dir)
    if not concerns(state, record.domain, record.nics):
        _runtime.save_record(config_dir, record)
        return []
    outcome = _service.reconcile(config_dir, _record_then_keep(config_dir, record), runner, False,
                                 lock_file=settings["lock_file"], lock_timeout=float(settings["lock_timeout"]))
    if record.running:
        placed, _warnings = _service.placements(config_dir, outcome.after, runner)
        missing = unplaced(placed, record.domain, record.nics)
        if missing:
            raise StoreError("no tap found for %s although guest %s runs: its NICs would be unfiltered"
                             % (", ".join(missing), record.domain), domain=record.domain)
    return list(outcome.warnings)


# ---------------------------------------------------------------- entry point

def handle(argv, xml, settings, runner):
    """Do what OPERATION asks; returns warnings.  Raises HookError or EngineError."""
    if len(argv) < 2:
        raise HookError("usage: qemu DOMAIN OPERATION [SUB-OPERATION [EXTRA]] with the domain XML on stdin")
    domain, op = argv[0], argv[1]
    if not os.path.isdir(settings["config_dir"]):
        return []  # no store on this host: nothing of ours to place, nothing to record
    if op in PREFLIGHT_OPS:
        preflight(_store.load_store(settings["config_dir"]), domain)
        return []
    if op in DOWN_OPS:
        return converge_domain(settings, _guests.GuestRecord(domain, False), runner)
    if op in UP_OPS:
        try:
            nics = read_domain_nics(xml)
        except (HookError, EngineError) as exc:
            return _unreadable_domain(settings, domain, runner, " ".join(str(exc).split()))
        return converge_domain(settings, _guests.GuestRecord(domain, True, nics), runner)
    return []  # an operation this hook has no business with (e.g. one a later libvirt adds)


def _unreadable_domain(settings, domain, runner, why):
    """A domain whose XML we cannot read (too big, a tap name we refuse, ...).  It blocks only a
    guest that has bindings (fail-closed); for any other guest the hook records nothing, re-applies
    the fixed-tap bindings when there are any (one of them may be on its taps), and lets it start."""
    state = _store.load_store(settings["config_dir"])
    if guest_bindings(state, domain):
        raise HookError("cannot read the NICs of guest %s, which has bindings here (%s): its NICs would be "
                        "unfiltered; fix the domain definition" % (domain, why))
    warnings = ["cannot read the NICs of guest %s (%s): it has no binding here, so it starts; its taps are "
                "not recorded" % (domain, why)]
    if has_fixed_bindings(state):
        outcome = _service.reconcile(settings["config_dir"], lambda s: (s, []), runner, False,
                                     lock_file=settings["lock_file"], lock_timeout=float(settings["lock_timeout"]))
        warnings.extend(outcome.warnings)
    return warnings


def _log(lines):
    for line in lines:
        sys.stderr.write("%s: %s\n" % (PROG, line))
    sys.stderr.flush()
    try:
        import syslog
        for line in lines:
            syslog.syslog(syslog.LOG_WARNING, "%s: %s" % (PROG, line))
    except ImportError:
        pass


def main(argv, stdin, environ=None, runner=None):
    """Run the hook; returns the exit code.  Never writes to stdout (see the module docstring)."""
    environ = os.environ if environ is None else environ
    # libvirt writes the whole XML before it waits for us: always drain stdin
    xml = stdin.read()
    op = argv[1] if len(argv) > 1 else ""
    try:
        settings = load_settings(environ)
    except HookError as exc:
        _log(["error: %s" % exc])
        return EXIT_OK if op in NEVER_FAIL_OPS else EXIT_FAIL
    try:
        runner = runner or HostRunner(timeout=float(settings["tool_timeout"]))
        warnings = handle(argv, xml, settings, runner)
    except (HookError, EngineError) as exc:
        message = " ".join(str(exc).split())
        if op in NEVER_FAIL_OPS or fail_open(settings):
            _log(["warning: %s %s: %s (continuing: %s)" % (
                op, argv[0], message, "fail_open" if op not in NEVER_FAIL_OPS else "the guest already runs")])
            return EXIT_OK
        _log(["error: %s %s: %s" % (op, argv[0] if argv else "?", message)])
        return EXIT_FAIL
    if warnings:
        _log(["warning: %s" % w for w in warnings])
    return EXIT_OK
