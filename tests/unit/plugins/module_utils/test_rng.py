# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt's RELAX NG schemas as a second check of user documents, when the host has them."""

import os

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import FilterXMLError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import rng as _rng
from ansible_collections.hypervisor.firewall.tests.unit.plugins.modules.test_guest_nic_filter import new_host, params

# Both accepted by our own parsers; libvirt's schemas refuse them.
SPACE_IN_REF = "<filter name='x' chain='root'><filterref filter='no mac'/></filter>"
EXTRA_ELEMENT = ("<network><name>n</name><bridge name='virbr0'/><ip address='192.168.5.1' prefix='24'/>"
                 "<bogus/></network>")
GOOD_NETWORK = "<network><name>n</name><bridge name='virbr0'/><ip address='192.168.5.1' prefix='24'/></network>"

needs_schemas = pytest.mark.skipif(not os.path.isfile(os.path.join(_rng.SCHEMA_DIR, "nwfilter.rng")),
                                   reason="libvirt's schemas are not installed (libvirt0)")


@needs_schemas
def test_a_filter_the_schema_refuses_is_an_error_in_strict_mode(tmp_path):
    runner = new_host()
    with pytest.raises(FilterXMLError) as err:
        _actions.nwfilter(dict(params(tmp_path), xml=SPACE_IN_REF, strict=True, name=None), check_mode=False,
                          runner=runner)
    assert "filter 'x' does not validate against libvirt's schema" in err.value.msg
    assert "no mac" in err.value.msg and err.value.msg.endswith("set strict to false to accept what libvirt's parser accepts")
    assert err.value.context["schema"].endswith("nwfilter.rng") and runner.restores == []
    assert not (tmp_path / "store" / "store.json").exists()


@needs_schemas
def test_strict_false_skips_the_schema(tmp_path):
    result = _actions.nwfilter(dict(params(tmp_path), xml=SPACE_IN_REF, strict=False, name=None), check_mode=False,
                               runner=new_host())
    assert result["changed"] is True


@needs_schemas
def test_a_network_the_schema_refuses_is_an_error(tmp_path):
    with pytest.raises(FilterXMLError) as err:
        _actions.virt_network_fw(params(tmp_path, network_xml=EXTRA_ELEMENT, state="rendered"), False, runner=object())
    assert "network_xml of network 'n' does not validate" in err.value.msg and "bogus" in err.value.msg


@needs_schemas
def test_valid_documents_pass_and_name_the_schema():
    assert _rng.validate("network", GOOD_NETWORK, "n", "fix").endswith("network.rng")


def test_a_host_without_schemas_checks_nothing(tmp_path):
    assert _rng.validate("filter", SPACE_IN_REF, "filter 'x'", "fix", schema_dir=str(tmp_path)) is None


def test_a_broken_system_schema_is_skipped(tmp_path):
    (tmp_path / "network.rng").write_text("<not a schema")
    assert _rng.validate("network", EXTRA_ELEMENT, "n", "fix", schema_dir=str(tmp_path)) is None
