# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read and write libvirt's nwfilter XML (and its YAML-native twin) as the frozen model.

XML is parsed without DTDs, entities or network access and at most 1 MiB is accepted.
Literal attribute values are stored canonical (see ``_schema``); values that reference
variables are stored as written and checked once resolved.

libvirt accepts some sloppy documents silently (unknown elements or attributes, a rule
priority out of range -> 500, a second protocol inside one rule, ``statematch='no'`` meaning
*enabled*).  We report each of those as a warning, or as FilterXMLError with ``strict=True``.
Invalid typed values are always errors.

Dict form (``filter_to_dict`` / ``filter_from_dict``) mirrors the XML one to one::

    name: clean-web                 # required
    uuid: 6f1c...                   # optional; absent = the store generates one
    chain: root                     # optional, default root
    priority: -700                  # optional; only allowed with a non-default chain
    entries:                        # document order is kept
      - rule:
          action: accept            # drop | reject | accept | return | continue
          direction: in             # in | out | inout
          priority: 500             # optional, default 500
          statematch: true          # optional, default true
          matches:                  # optional; empty = match every frame
            - protocol: tcp
              match: false          # optional, default true; false = match='no'
              attrs: {dstportstart: 22, srcipaddr: $IP}
      - filterref:
          filter: clean-traffic
          parameters: [{name: IP, value: 10.0.0.2}, {name: IP, value: 10.0.0.3}]

Numbers and booleans may be YAML ints / bools; ``filter_to_dict`` writes numeric attributes
as ints and ``gratuitous`` as a bool, everything else as canonical strings.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from xml.sax.saxutils import escape

from . import schema as _schema
from ..errors import FilterXMLError, ToolMissingError

try:
    from lxml import etree
    LXML_IMPORT_ERROR = None
except ImportError as exc:  # the modules report the missing library; importing must not fail
    etree = None
    LXML_IMPORT_ERROR = str(exc)
from .model import Binding, Filter, FilterRef, Match, Rule

MAX_XML_BYTES = 1024 * 1024
ACTIONS = ("drop", "reject", "accept", "return", "continue")
DIRECTIONS = ("in", "out", "inout")
DEFAULT_RULE_PRIORITY = 500
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_]+\Z")
_PARAM_VALUE = re.compile(r"^[A-Za-z0-9_.:]+\Z")
_INT = re.compile(r"^\s*[-+]?[0-9]+\s*\Z")


class _Notes:
    """Collects libvirt's silently-accepted oddities as warnings, or raises when strict."""

    def __init__(self, strict):
        self.strict = strict
        self.warnings = []

    def note(self, msg, **context):
        if self.strict:
            raise FilterXMLError(msg + " (not accepted in strict mode: correct it, or set strict to false to accept it "
                                       "with a warning)", **context)
        self.warnings.append(msg)


# ---------------------------------------------------------------- safe XML reading


def _parse_document(text, root_tag):
    if isinstance(text, str):
        data = text.encode("utf-8")
    elif isinstance(text, bytes):
        data = text
    else:
        raise FilterXMLError("XML document must be text, got %s" % type(text).__name__)
    if len(data) > MAX_XML_BYTES:
        raise FilterXMLError("XML document is %d bytes, more than the limit of %d: split it"
                             % (len(data), MAX_XML_BYTES))
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise FilterXMLError("XML document contains a DOCTYPE or ENTITY declaration; "
                             "remove it (DTDs and entities are not accepted)")
    if etree is None:
        raise ToolMissingError("the Python library 'lxml' is required to read XML (%s): install it "
                               "(pip install lxml or the python3-lxml package)" % LXML_IMPORT_ERROR,
                               library="lxml")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             dtd_validation=False, huge_tree=False, remove_comments=True,
                             remove_pis=True, encoding="utf-8" if isinstance(text, str) else None)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise FilterXMLError("malformed XML: %s: fix the document" % exc) from None
    if root.getroottree().docinfo.doctype:
        raise FilterXMLError("XML document contains a DOCTYPE; remove it")
    if root_tag is not None and root.tag != root_tag:
        raise FilterXMLError("root element is <%s>, expected <%s>" % (root.tag, root_tag))
    return root


def _elements(node):
    return [child for child in node if isinstance(child.tag, str)]


def _check_attrs(node, known, where, notes):
    for name in node.attrib:
        if name not in known:
            notes.note("%s: unknown attribute %r of <%s> ignored" % (where, name, node.tag))


# ---------------------------------------------------------------- shared builders


def _canonical_uuid(value, where):
    text = str(value).strip()
    if not re.match(r"^[0-9A-Fa-f]{8}-?([0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}\Z", text):
        raise FilterXMLError("%s: malformed uuid %r (expected 8-4-4-4-12 hex digits)"
                             % (where, value), uuid=value)
    return str(uuidlib.UUID(text.replace("-", "")))


def _filter_head(name, chain, priority, notes):
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise FilterXMLError("filter has no usable name (%r): give a non-empty name "
                             "without '/'" % (name,))
    where = "filter %r" % name
    if chain is not None:
        try:
            _schema.check_chain_name(chain)
        except FilterXMLError as exc:
            raise FilterXMLError("%s: %s" % (where, exc), filter=name, chain=chain) from None
    if priority is None:
        return chain or "root", None
    text = str(priority)
    if isinstance(priority, bool) or not _INT.match(text):
        raise FilterXMLError("%s: chain priority %r is not an integer" % (where, priority),
                             filter=name)
    number = int(text)
    if not _schema.MIN_PRIORITY <= number <= _schema.MAX_PRIORITY:
        raise FilterXMLError("%s: chain priority %d is outside [-1000, 1000]: use a value in that range" % (where, number),
                             filter=name)
    if chain is None:
        notes.note("%s: priority %d ignored because the filter has no chain attribute "
                   "(libvirt only honours it together with chain)" % (where, number))
        return "root", None
    return chain, number


def _rule_priority(raw, where, notes):
    if raw is None:
        return DEFAULT_RULE_PRIORITY
    text = str(raw)
    if not isinstance(raw, bool) and _INT.match(text):
        number = int(text)
        if _schema.MIN_PRIORITY <= number <= _schema.MAX_PRIORITY:
            return number
    notes.note("%s: priority %r is not an integer in [-1000, 1000]; libvirt uses %d"
               % (where, raw, DEFAULT_RULE_PRIORITY))
    return DEFAULT_RULE_PRIORITY


def _statematch(raw, where, notes):
    if raw is None or raw is True:
        return True
    if raw is False:
        return False
    lowered = str(raw).strip().lower()
    if lowered in ("0", "false"):
        return False
    if lowered not in ("1", "true"):
        notes.note("%s: statematch %r is read as true by libvirt (only 0/false disable "
                   "state matching)" % (where, raw))
    return True


def _negate(raw, where, notes):
    if raw is None or raw is True:
        return False
    if raw is False:
        return True
    if raw == "no":
        return True
    if raw != "yes":
        notes.note("%s: match=%r is read as 'yes' by libvirt (only 'no' negates)"
                   % (where, raw))
    return False


def _attr_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return value


def _build_match(protocol, negate, pairs, where, notes):
    values = {}
    for name, raw in pairs:
        value = _attr_text(raw)
        if _schema.attr_type(protocol, name) is None:
            hint = (" (libvirt has no TCP flags match for IPv6: the rule matches any flags)"
                    if (protocol, name) == ("tcp-ipv6", "flags") else "")
            notes.note("%s: unknown attribute %r of <%s> ignored%s" % (where, name, protocol,
                                                                       hint))
            continue
        try:
            ref = _schema.canonical_var_ref(value)
            value = _schema.canonical_value(protocol, name, value) if ref is None else ref
        except FilterXMLError as exc:
            raise FilterXMLError("%s, %s" % (where, exc), **dict(exc.context)) from None
        values[name] = value
    attrs = tuple((name, values[name]) for name, datatype in _schema.PROTOCOLS[protocol]
                  if name in values)
    return Match(protocol=protocol, attrs=attrs, negate=negate)


def _check_ports(matches, where):
    """libvirt refuses ports in ip/ipv6 rules unless protocol is tcp, udp, dccp or sctp."""
    if not matches or matches[0].protocol not in ("ip", "ipv6"):
        return
    if not any(name in _schema.PORT_ATTRS for m in matches for name, attr_value in m.attrs):
        return
    protocols = [m.get("protocol") for m in matches if m.get("protocol") is not None]
    if any(_schema.parse_var_ref(p) is not None or p in _schema.PORT_PROTOCOLS
           for p in protocols):
        return
    raise FilterXMLError(
        "%s, <%s>: port attributes need protocol tcp, udp, sctp or 33 (dccp); add "
        "protocol='tcp' (or udp/sctp) or remove the ports" % (where, matches[0].protocol))


def _build_rule(fields, elements, where, notes):
    """fields: action, direction, priority, statematch (raw);
    elements: [(protocol or tag, match raw, [(attr, raw value)])]."""
    action, direction = fields.get("action"), fields.get("direction")
    if action not in ACTIONS:
        raise FilterXMLError("%s: action %r must be one of %s" % (where, action,
                                                                  ", ".join(ACTIONS)))
    if direction not in DIRECTIONS:
        raise FilterXMLError("%s: direction %r must be one of %s"
                             % (where, direction, ", ".join(DIRECTIONS)))
    matches = []
    for tag, match_raw, pairs in elements:
        if not isinstance(tag, str) or tag not in _schema.PROTOCOLS:
            notes.note("%s: unknown element <%s> ignored" % (where, tag))
            continue
        if matches and tag != matches[0].protocol:
            notes.note("%s: <%s> ignored because the rule already matches <%s> (libvirt "
                       "uses only the first protocol)" % (where, tag, matches[0].protocol))
            continue
        negate = _negate(match_raw, "%s, <%s>" % (where, tag), notes)
        matches.append(_build_match(tag, negate, pairs, where, notes))
    _check_ports(matches, where)
    return Rule(action=action, direction=direction,
                priority=_rule_priority(fields.get("priority"), where, notes),
                statematch=_statematch(fields.get("statematch"), where, notes),
                matches=tuple(matches))


def _build_filterref(name, params, where):
    if not isinstance(name, str) or not name.strip():
        raise FilterXMLError("%s: filterref needs a filter name" % where)
    checked = []
    for pname, pvalue in params:
        pvalue = _attr_text(pvalue)
        if not isinstance(pname, str) or not _PARAM_NAME.match(pname):
            raise FilterXMLError("%s: parameter name %r must be letters, digits and _"
                                 % (where, pname))
        if not isinstance(pvalue, str) or not _PARAM_VALUE.match(pvalue):
            raise FilterXMLError("%s: parameter %s value %r must be non-empty letters, "
                                 "digits, _ . :" % (where, pname, pvalue))
        checked.append((pname, pvalue))
    return FilterRef(filter=name, parameters=tuple(checked))


# ---------------------------------------------------------------- XML -> model


def parse_filter_xml(text, strict=False):
    """Parse one <filter> document; return (Filter, warnings)."""
    root = _parse_document(text, "filter")
    notes = _Notes(strict)
    name = root.get("name")
    chain, priority = _filter_head(name, root.get("chain"), root.get("priority"), notes)
    where = "filter %r" % name
    _check_attrs(root, ("name", "chain", "priority"), where, notes)
    uuid, entries, rule_no = None, [], 0
    for child in _elements(root):
        if child.tag == "uuid":
            if uuid is not None:
                notes.note("%s: extra <uuid> ignored" % where)
                continue
            uuid = _canonical_uuid(child.text or "", where)
        elif child.tag == "rule":
            rule_no += 1
            entries.append(_rule_from_xml(child, "%s, rule %d" % (where, rule_no), notes))
        elif child.tag == "filterref":
            entries.append(_filterref_from_xml(child, where, notes))
        else:
            notes.note("%s: unknown element <%s> ignored" % (where, child.tag))
    return Filter(name=name, uuid=uuid, chain=chain, priority=priority,
                  entries=tuple(entries)), notes.warnings


def _rule_from_xml(node, where, notes):
    _check_attrs(node, ("action", "direction", "priority", "statematch"), where, notes)
    elements = [(child.tag, child.get("match"),
                 [(k, v) for k, v in child.attrib.items() if k != "match"])
                for child in _elements(node)]
    return _build_rule(dict(node.attrib), elements, where, notes)


def _filterref_from_xml(node, where, notes):
    _check_attrs(node, ("filter",), where, notes)
    where = "%s, filterref %r" % (where, node.get("filter"))
    params = []
    for child in _elements(node):
        if child.tag != "parameter":
            notes.note("%s: unknown element <%s> ignored" % (where, child.tag))
            continue
        _check_attrs(child, ("name", "value"), where, notes)
        params.append((child.get("name"), child.get("value")))
    return _build_filterref(node.get("filter"), params, where)


# ---------------------------------------------------------------- model -> XML


def _q(value):
    # tabs and newlines must be character references, or XML attribute normalisation
    # turns them into spaces on the next parse
    return escape(str(value), {"'": "&apos;", '"': "&quot;", "\n": "&#10;", "\r": "&#13;",
                               "\t": "&#9;"})


def _format_match(match):
    parts = ["<%s" % match.protocol]
    if match.negate:
        parts.append(" match='no'")
    for name, value in match.attrs:
        parts.append(" %s='%s'" % (name, _q(_schema.xml_value(match.protocol, name, value))))
    return "".join(parts) + "/>"


def _format_rule(rule):
    head = "  <rule action='%s' direction='%s' priority='%d'" % (
        rule.action, rule.direction, rule.priority)
    if not rule.statematch:
        head += " statematch='false'"
    if not rule.matches:
        return [head + "/>"]
    return [head + ">"] + ["    " + _format_match(m) for m in rule.matches] + ["  </rule>"]


def _format_filterref(ref, indent="  "):
    head = "%s<filterref filter='%s'" % (indent, _q(ref.filter))
    if not ref.parameters:
        return [head + "/>"]
    lines = [head + ">"]
    lines += ["%s  <parameter name='%s' value='%s'/>" % (indent, _q(n), _q(v))
              for n, v in ref.parameters]
    return lines + [indent + "</filterref>"]


def format_filter_xml(flt):
    """Canonical XML of a Filter, shaped like ``virsh nwfilter-dumpxml`` output."""
    head = "<filter name='%s' chain='%s'" % (_q(flt.name), _q(flt.chain))
    if flt.priority is not None:
        head += " priority='%d'" % flt.priority
    lines = [head + ">"]
    if flt.uuid:
        lines.append("  <uuid>%s</uuid>" % flt.uuid)
    for entry in flt.entries:
        lines += _format_rule(entry) if isinstance(entry, Rule) else _format_filterref(entry)
    lines.append("</filter>")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- dict form


def _attr_out(protocol, name, value):
    datatype = _schema.attr_type(protocol, name)
    if _schema.parse_var_ref(value) is not None:
        return value
    value = _schema.xml_value(protocol, name, value)  # names read better than numbers
    if value.isdigit() and (datatype in _schema.NUMERIC_TYPES
                            or datatype == _schema.IP_PROTOCOL):
        return int(value)
    if datatype == _schema.BOOLEAN:
        return value == "true"
    return value


def filter_to_dict(flt):
    """The YAML-native form of a Filter (see the module docstring)."""
    data = {"name": flt.name}
    if flt.uuid:
        data["uuid"] = flt.uuid
    data["chain"] = flt.chain
    if flt.priority is not None:
        data["priority"] = flt.priority
    data["entries"] = [_entry_to_dict(entry) for entry in flt.entries]
    return data


def _entry_to_dict(entry):
    if isinstance(entry, FilterRef):
        return {"filterref": {"filter": entry.filter, "parameters": [
            {"name": n, "value": v} for n, v in entry.parameters]}}
    matches = []
    for match in entry.matches:
        item = {"protocol": match.protocol}
        if match.negate:
            item["match"] = False
        item["attrs"] = {n: _attr_out(match.protocol, n, v) for n, v in match.attrs}
        matches.append(item)
    return {"rule": {"action": entry.action, "direction": entry.direction,
                     "priority": entry.priority, "statematch": entry.statematch,
                     "matches": matches}}


def _mapping(value, what, where):
    if not isinstance(value, dict):
        raise FilterXMLError("%s: %s must be a mapping, got %s"
                             % (where, what, type(value).__name__))
    return value


def _list(value, what, where):
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise FilterXMLError("%s: %s must be a list, got %s"
                             % (where, what, type(value).__name__))
    return value


def _check_keys(data, known, where, notes):
    for key in data:
        if key not in known:
            notes.note("%s: unknown key %r ignored" % (where, key))


def filter_from_dict(data, strict=False):
    """Build a Filter from its dict form; return (Filter, warnings)."""
    notes = _Notes(strict)
    data = _mapping(data, "filter", "filter")
    name = data.get("name")
    chain, priority = _filter_head(name, data.get("chain"), data.get("priority"), notes)
    where = "filter %r" % name
    _check_keys(data, ("name", "uuid", "chain", "priority", "entries"), where, notes)
    uuid = data.get("uuid")
    uuid = None if uuid is None else _canonical_uuid(uuid, where)
    entries, rule_no = [], 0
    for raw in _list(data.get("entries"), "entries", where):
        raw = _mapping(raw, "an entry", where)
        if set(raw) == {"rule"}:
            rule_no += 1
            entries.append(_rule_from_dict(raw["rule"], "%s, rule %d" % (where, rule_no),
                                           notes))
        elif set(raw) == {"filterref"}:
            entries.append(_filterref_from_dict(raw["filterref"], where, notes))
        else:
            raise FilterXMLError("%s: each entry needs exactly one key, 'rule' or "
                                 "'filterref' (got %s)" % (where, ", ".join(map(str, raw))))
    return Filter(name=name, uuid=uuid, chain=chain, priority=priority,
                  entries=tuple(entries)), notes.warnings


def _rule_from_dict(raw, where, notes):
    raw = _mapping(raw, "rule", where)
    _check_keys(raw, ("action", "direction", "priority", "statematch", "matches"), where,
                notes)
    elements = []
    for item in _list(raw.get("matches"), "matches", where):
        item = _mapping(item, "a match", where)
        _check_keys(item, ("protocol", "match", "attrs"), where, notes)
        attrs = _mapping(item.get("attrs") or {}, "attrs", where)
        elements.append((item.get("protocol"), item.get("match"), list(attrs.items())))
    return _build_rule(raw, elements, where, notes)


def _filterref_from_dict(raw, where, notes):
    raw = _mapping(raw, "filterref", where)
    _check_keys(raw, ("filter", "parameters"), where, notes)
    where = "%s, filterref %r" % (where, raw.get("filter"))
    params = []
    for item in _list(raw.get("parameters"), "parameters", where):
        item = _mapping(item, "a parameter", where)
        _check_keys(item, ("name", "value"), where, notes)
        params.append((item.get("name"), item.get("value")))
    return _build_filterref(raw.get("filter"), params, where)


# ---------------------------------------------------------------- <filterbinding>


def _one(root, tag):
    found = [child for child in _elements(root) if child.tag == tag]
    return found[0] if found else None


def _required_attr(node, tag, attr):
    value = None if node is None else node.get(attr)
    if not value:
        raise FilterXMLError("filterbinding: <%s %s='...'> is required" % (tag, attr))
    return value


def parse_binding_status_xml(text):
    """Parse the file libvirtd keeps for a live binding (run/libvirt/nwfilter-binding/TAP.xml)
    into a Binding: libvirt writes the <filterbinding> inside a <filterbindingstatus> element; a
    bare <filterbinding> is read as well."""
    if _root_tag(text) != "filterbindingstatus":
        return parse_binding_xml(text)
    root = _parse_document(text, "filterbindingstatus")
    inner = [child for child in _elements(root) if child.tag == "filterbinding"]
    if len(inner) != 1:
        raise FilterXMLError("filterbindingstatus holds %d <filterbinding> elements, expected one: "
                             "fix or remove the file" % len(inner))
    return parse_binding_xml(etree.tostring(inner[0]))


def _root_tag(text):
    return _parse_document(text, None).tag


def parse_binding_xml(text):
    """Parse libvirt's <filterbinding> document into a Binding."""
    root = _parse_document(text, "filterbinding")
    owner = _one(root, "owner")
    owner_name = owner_uuid = None
    if owner is not None:
        name_node, uuid_node = _one(owner, "name"), _one(owner, "uuid")
        if name_node is not None and (name_node.text or "").strip():
            owner_name = name_node.text.strip()
        if uuid_node is not None:
            owner_uuid = _canonical_uuid(uuid_node.text or "", "filterbinding owner")
    portdev_node = _one(root, "portdev")
    # no <portdev>: the binding follows its guest (owner name + MAC); the tap is found when it runs
    portdev = None if portdev_node is None and owner_name else _required_attr(portdev_node, "portdev", "name")
    alias_node = _one(root, "alias")
    alias = None if alias_node is None else _required_attr(alias_node, "alias", "name")
    linkdev_node = _one(root, "linkdev")
    linkdev = None if linkdev_node is None else _required_attr(linkdev_node, "linkdev", "name")
    mac = _required_attr(_one(root, "mac"), "mac", "address")
    try:
        mac = _schema.canonical_value("mac", "srcmacaddr", mac)
    except FilterXMLError:
        raise FilterXMLError("filterbinding: <mac address=%r> is not a MAC address" % mac,
                             mac=mac) from None
    ref_node = _one(root, "filterref")
    if ref_node is None:
        raise FilterXMLError("filterbinding: <filterref filter='...'> is required")
    ref = _filterref_from_xml(ref_node, "filterbinding", _Notes(False))
    return Binding(portdev=portdev, mac=mac, filter=ref.filter, parameters=ref.parameters,
                   owner_name=owner_name, owner_uuid=owner_uuid, linkdev=linkdev, alias=alias)


def format_binding_xml(binding):
    """libvirt-shaped <filterbinding> XML of a Binding."""
    lines = ["<filterbinding>"]
    if binding.owner_name is not None or binding.owner_uuid is not None:
        lines.append("  <owner>")
        if binding.owner_name is not None:
            lines.append("    <name>%s</name>" % escape(binding.owner_name))
        if binding.owner_uuid is not None:
            lines.append("    <uuid>%s</uuid>" % binding.owner_uuid)
        lines.append("  </owner>")
    if binding.portdev is not None:
        lines.append("  <portdev name='%s'/>" % _q(binding.portdev))
    if binding.alias is not None:
        lines.append("  <alias name='%s'/>" % _q(binding.alias))
    if binding.linkdev is not None:
        lines.append("  <linkdev name='%s'/>" % _q(binding.linkdev))
    lines.append("  <mac address='%s'/>" % _q(binding.mac))
    lines += _format_filterref(FilterRef(binding.filter, binding.parameters))
    lines.append("</filterbinding>")
    return "\n".join(lines) + "\n"
