# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Valid inputs that look like injections stay inside quotes; random filters converge.

Property tests (hypothesis): a random valid filter bound to a NIC applies and then plans
nothing; random attribute values only ever raise the engine's typed errors.
"""

import re
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import schema as _schema  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import EngineError
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import hostile_host as H

QUOTED = re.compile(r'"(?:\\.|[^"\\])*"')
LINE_START = re.compile(r"^(\*(filter|nat|mangle)|:[A-Za-z0-9_.:-]+ (-|ACCEPT|DROP|RETURN)( \[0:0\])?|"
                        r"-[AIDX] [A-Za-z0-9_.:-]+( .*)?|COMMIT)$")
LOOKALIKES = ("HOSTILE -j ACCEPT", "HOSTILE COMMIT", 'HOSTILE" -j ACCEPT "', "HOSTILE\\", "HOSTILE'", "HOSTILE $(reboot)",
              "HOSTILE; -A FORWARD -j ACCEPT", "HOSTILE\t-j\tACCEPT")


def check_payload(payload):
    """Every line is a restore line we generate; hostile text only ever inside one quoted word."""
    assert payload.endswith("\n")
    for line in payload.splitlines():
        assert LINE_START.match(line), line
        assert "HOSTILE" not in QUOTED.sub("", line), line


def apply_filter(xml, params=None):
    root = tempfile.mkdtemp(prefix="hfwp-")
    host = H.FakeHost()
    _actions.nwfilter(H.filter_params(root, xml=xml), False, host)
    result = _actions.guest_nic_filter(H.nic_params(root, portdev="vnet0", mac="52:54:00:00:00:10",
                                                    filter="f", parameters=params or {}), False, host)
    return root, host, result


@pytest.mark.parametrize("text", LOOKALIKES)
def test_comment_lookalikes_stay_quoted(text):
    xml = ("<filter name='f' chain='root'><rule action='accept' direction='inout'><tcp comment='%s'/></rule>"
           "<rule action='drop' direction='in'><ip comment='$C'/></rule></filter>"
           % text.replace("'", "&apos;").replace("\t", "&#9;"))
    root, host, result = apply_filter(xml, {"C": "HOSTILE.var"})
    assert result["changed"] and host.restores
    for _tool, payload in host.restores:
        check_payload(payload)
    again = _actions.guest_nic_filter(H.nic_params(root, portdev="vnet0", mac="52:54:00:00:00:10", filter="f",
                                                   parameters={"C": "HOSTILE.var"}), False, host)
    assert not again["changed"]


PORT = st.integers(0, 65535)
IPV4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: "%d.%d.%d.%d" % t)
# a comment starting with "$" is a variable reference, not text
COMMENT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(lambda c: "c" + c)
MATCH = st.one_of(
    st.builds(lambda p, a, c: "<tcp dstportstart='%d' srcipaddr='%s' comment='%s'/>" % (p, a, c), PORT, IPV4,
              COMMENT.map(lambda c: c.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;"))),
    st.builds(lambda p, q: "<udp srcportstart='%d' srcportend='%d'/>" % (min(p, q), max(p, q)), PORT, PORT),
    st.builds(lambda a, m: "<ip srcipaddr='%s' srcipmask='%d'/>" % (a, m), IPV4, st.integers(0, 32)),
    st.builds(lambda a: "<all-ipv6 srcipaddr='fd00::%x'/>" % a, st.integers(0, 0xffff)),
    st.builds(lambda t: "<icmp type='%d'/>" % t, st.integers(0, 255)),
    st.just("<tcp state='NEW,ESTABLISHED' flags='SYN,ACK/SYN'/>"),
)
RULE = st.builds(lambda a, d, p, m: "<rule action='%s' direction='%s' priority='%d'>%s</rule>" % (a, d, p, m),
                 st.sampled_from(("accept", "drop", "reject", "return")), st.sampled_from(("in", "out", "inout")),
                 st.integers(-1000, 1000), MATCH)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RULE, min_size=1, max_size=6))
def test_random_valid_filter_converges(rules):
    root, host, result = apply_filter("<filter name='f' chain='root'>%s</filter>" % "".join(rules))
    for _tool, payload in host.restores:
        check_payload(payload)
    host.restores.clear()
    again = _actions.guest_nic_filter(H.nic_params(root, portdev="vnet0", mac="52:54:00:00:00:10", filter="f",
                                                   parameters={}), False, host)
    assert not again["changed"] and host.restores == []


ATTRS = [(proto, attr) for proto, attrs in sorted(_schema.PROTOCOLS.items()) for attr, _type in attrs]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ATTRS), st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.none(),
                                         st.lists(st.integers(), max_size=2), st.booleans()))
def test_random_values_raise_only_typed_errors(attr, value):
    proto, name = attr
    definition = {"name": "r", "entries": [{"rule": {"action": "drop", "direction": "in", "matches": [
        {"protocol": proto, "attrs": {name: value}}]}}]}
    root = tempfile.mkdtemp(prefix="hfwp-")
    host = H.FakeHost()
    try:
        _actions.nwfilter(H.filter_params(root, definition=definition), False, host)
        _actions.guest_nic_filter(H.nic_params(root, portdev="vnet0", mac="52:54:00:00:00:10", filter="r",
                                               parameters={}), False, host)
    except EngineError:
        return
    # an accepted value stands as one word; one with white space only ever inside a quoted comment
    spaced = value.strip() if isinstance(value, str) and re.search(r"\s", value.strip()) else None
    for _tool, payload in host.restores:
        check_payload(payload)
        for line in payload.splitlines():
            assert spaced is None or spaced not in QUOTED.sub("", line), line
