# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's import rules, read off the source: imports go down, the two backends are siblings.

- language/ (what filters and networks mean) imports nothing of the engine but itself and errors;
- host/ (store, runner, placement) imports no backend and nothing above it;
- nftables/ never imports xtables/ and the reverse: what both need lives in language/;
- above them, only backend.py (the seam) imports a backend package.
"""

import ast
import os

import pytest

ENGINE = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "..",
                                       "plugins", "module_utils", "_engine"))
PACKAGES = ("language", "host", "xtables", "nftables")
# package -> engine parts it must not import ("top" = the modules directly under _engine/)
FORBIDDEN = {
    "language": {"host", "xtables", "nftables", "top"},
    "host": {"xtables", "nftables", "top"},
    "xtables": {"nftables", "top"},
    "nftables": {"xtables", "top"},
}
# the typed errors and the shapes every backend returns sit at the top but import nothing
ALLOWED_TOP = {"errors", "shapes"}


def imports_of(source, package):
    """The engine parts (a package name, 'top' for a module under _engine/, 'absolute' for an
    absolute engine import) that ``source``, a file of ``package`` ('' = _engine/), imports."""
    here = [package] if package else []
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update("absolute" for alias in node.names if "_engine" in alias.name)
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            if node.module and "_engine" in node.module:
                found.add("absolute")
            continue
        base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
        target = base + (node.module.split(".") if node.module else [])
        heads = [target[0]] if target else [alias.name for alias in node.names]
        found.update(head if head in PACKAGES else "top" for head in heads if head not in ALLOWED_TOP)
    return found


def engine_imports(path):
    package = os.path.relpath(os.path.dirname(path), ENGINE)
    with open(path, encoding="utf-8") as handle:
        return imports_of(handle.read(), "" if package == "." else package)


def _files(package):
    folder = os.path.join(ENGINE, package)
    return sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_downward(package):
    broken = {}
    for path in _files(package):
        bad = engine_imports(path) & (FORBIDDEN[package] | {"absolute"})
        if bad:
            broken[os.path.relpath(path, ENGINE)] = sorted(bad)
    assert broken == {}


def test_the_checker_sees_each_kind_of_import():
    source = ("from ..xtables import compile as X\nfrom .. import service\nfrom ..errors import E\n"
              "from . import writer\nfrom ..language.values import number\n")
    assert imports_of(source, "nftables") == {"xtables", "top", "nftables", "language"}
    assert imports_of("from .nftables import writer\nfrom . import backend\n", "") == {"nftables", "top"}
    assert imports_of("import ansible_collections.x._engine.xtables\n", "host") == {"absolute"}


def test_only_the_seam_imports_a_backend():
    importers = sorted(name for name in os.listdir(ENGINE) if name.endswith(".py")
                       and engine_imports(os.path.join(ENGINE, name)) & {"xtables", "nftables"})
    assert importers == ["backend.py"]


def test_the_top_modules_the_backends_may_import_import_no_engine_module():
    for name in ALLOWED_TOP:
        assert engine_imports(os.path.join(ENGINE, name + ".py")) == set()
