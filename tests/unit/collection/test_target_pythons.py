"""tests/sanity/target_pythons.py fails on code an older target Python cannot run."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
PYCACHE = ROOT / ".build" / "target-pycache"
SPEC = importlib.util.spec_from_file_location("target_pythons", ROOT / "tests" / "sanity" / "target_pythons.py")
target_pythons = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(target_pythons)


def _collection(tmp_path, module_source):
    coll = tmp_path / "ansible_collections" / "hypervisor" / "firewall"
    (coll / "plugins" / "modules").mkdir(parents=True)
    (coll / "plugins" / "module_utils").mkdir(parents=True)
    (coll / "bin").mkdir()
    (coll / "plugins" / "modules" / "probe.py").write_text(module_source)
    (coll / "plugins" / "module_utils" / "helper.py").write_text("VALUE = 1\n")
    (coll / "bin" / "tool").write_text("#!/usr/bin/env python3\nprint('tool')\n")
    return tmp_path


def _need(version):
    if target_pythons.interpreters([version])[version] is None:
        pytest.skip("python%s is not installed here" % version)


def test_match_statement_fails_on_python38(tmp_path, capsys):
    _need("3.8")
    source = "def f(x):\n    match x:\n        case 1:\n            return 1\n"
    assert target_pythons.main(str(_collection(tmp_path, source)), ["3.8"]) == 1
    out = capsys.readouterr().out
    assert "python3.8: compile plugins/modules/probe.py" in out
    assert "failed: 3.8;" in out


def test_import_error_fails(tmp_path, capsys):
    _need("3.8")
    source = "from ..module_utils.helper import MISSING\n"
    assert target_pythons.main(str(_collection(tmp_path, source)), ["3.8"]) == 1
    assert "python3.8: import ansible_collections.hypervisor.firewall.plugins.modules.probe: ImportError" in capsys.readouterr().out


def test_portable_code_passes(tmp_path, capsys):
    _need("3.8")
    source = "from __future__ import annotations\nfrom ..module_utils.helper import VALUE\nfrom ansible.module_utils.basic import AnsibleModule\n"
    assert target_pythons.main(str(_collection(tmp_path, source)), ["3.8"], str(PYCACHE)) == 0
    assert "failed: none" in capsys.readouterr().out
