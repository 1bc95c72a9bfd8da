# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A second check of the documents users give: libvirt's own RELAX NG schemas, when the host has them.

Our parsers are the first check and say precisely what is wrong; the schema catches what they
accept and libvirt would not (libvirt ships the schemas with libvirt0 and validates against them
with ``virsh ... --validate``). A host without the schemas (or without lxml, which the parsers
report themselves) skips this check: it adds safety, never a dependency.
"""

from __future__ import annotations

import os

from ..errors import FilterXMLError

try:
    from lxml import etree
except ImportError:  # the parsers report the missing library
    etree = None

SCHEMA_DIR = "/usr/share/libvirt/schemas"
SCHEMAS = {"filter": "nwfilter.rng", "filterbinding": "nwfilterbinding.rng", "network": "network.rng"}
MAX_ERRORS = 3

_cache = {}


def _schema(path):
    """The compiled schema at ``path`` (recompiled when the file changes), or None without one."""
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return None
    cached = _cache.get(path)
    if cached is None or cached[0] != stamp:
        try:
            cached = (stamp, etree.RelaxNG(etree.parse(path)))
        except (etree.XMLSyntaxError, etree.RelaxNGParseError, OSError):
            return None  # a broken system schema is the host's problem, not the document's
        _cache[path] = cached
    return cached[1]


def validate(kind, text, label, fix, schema_dir=SCHEMA_DIR):
    """Check ``text`` (a document our parser accepted) against libvirt's schema for ``kind``.

    Returns the schema path used, or None when the host has no schema (nothing was checked).
    Raises FilterXMLError naming ``label``, the schema, the first errors with their lines and ``fix``.
    """
    if etree is None:
        return None
    path = os.path.join(schema_dir, SCHEMAS[kind])
    schema = _schema(path)
    if schema is None:
        return None
    data = text.encode("utf-8") if isinstance(text, str) else text
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    document = etree.fromstring(data, parser)
    if schema.validate(document):
        return path
    errors = ["line %d: %s" % (error.line, error.message) for error in schema.error_log][:MAX_ERRORS]
    raise FilterXMLError("%s does not validate against libvirt's schema %s (%s): %s"
                         % (label, path, "; ".join(errors), fix), schema=path, schema_errors=errors)
