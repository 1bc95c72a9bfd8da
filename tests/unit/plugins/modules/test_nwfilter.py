"""nwfilter's batch form: an empty batch is bad input, never a traceback."""

import pytest

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import FilterXMLError
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils import hostile_host as H


def test_empty_filters_list_is_a_clear_error_and_changes_nothing(tmp_path):
    root = str(tmp_path)
    host = H.FakeHost()
    before = H.snapshot(root, host)
    with pytest.raises(FilterXMLError, match="non-empty filters list"):
        _actions.nwfilter(H.filter_params(root, filters=[]), False, host)
    assert H.snapshot(root, host) == before


def test_batch_defines_every_filter_in_one_call(tmp_path):
    root = str(tmp_path)
    host = H.FakeHost()
    xml = "<filter name='%s'><rule action='drop' direction='out'><mac protocolid='0x0835'/></rule></filter>"
    result = _actions.nwfilter(H.filter_params(root, filters=[xml % "a", xml % "b"]), False, host)
    assert result["changed"] and sorted(result["uuids"]) == ["a", "b"]
    again = _actions.nwfilter(H.filter_params(root, filters=[xml % "a", xml % "b"]), False, host)
    assert not again["changed"]
