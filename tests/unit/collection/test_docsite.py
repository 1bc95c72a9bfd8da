"""The collection docs under docs/docsite: every guide is listed, labelled and reachable.

Links between guides and from module docs are Sphinx labels (``:ref:`` in the guides, ``R()`` in
DOCUMENTATION), never repository paths, so they work from ansible-doc and the published docsite.
"""

import pathlib
import re
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
DOCSITE = ROOT / "docs" / "docsite"
RST = DOCSITE / "rst"
LABEL_PREFIX = "ansible_collections.hypervisor.firewall.docsite."

REF_RE = re.compile(r":ref:`(?:[^`<]*<([^>`]+)>|([^`<]+))`")
R_MARKUP_RE = re.compile(r"\bR\(([^,()]+),\s*([^()\s]+)\)")
LABEL_RE = re.compile(r"^\.\. _([^:]+):\s*$", re.M)
# A repository path to a doc page, in any form: docs/adopt.md, docs/docsite/rst/adopt.rst is fine.
OLD_DOC_PATH_RE = re.compile(r"\bdocs/[A-Za-z0-9_-]+\.md\b")


def _guides():
    return sorted(RST.glob("*.rst"))


def _labels():
    labels = {}
    for path in _guides():
        for label in LABEL_RE.findall(path.read_text(encoding="utf-8")):
            assert label not in labels, "label %s defined in %s and %s" % (label, labels[label], path.name)
            labels[label] = path.name
    return labels


def _tracked_files():
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], check=True, capture_output=True).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_docs_holds_only_the_docsite():
    stray = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").iterdir() if p.name != "docsite")
    assert stray == [], "move these into docs/docsite/rst/ as .rst and list them in extra-docs.yml: %s" % stray


def test_extra_docs_lists_every_guide_once():
    data = yaml.safe_load((DOCSITE / "extra-docs.yml").read_text(encoding="utf-8"))
    listed = [entry for section in data["sections"] for entry in section["toctree"]]
    for section in data["sections"]:
        assert section["title"].strip(), section
    assert len(listed) == len(set(listed)), listed
    assert sorted(listed) == sorted(p.stem for p in _guides())


@pytest.mark.parametrize("path", _guides(), ids=lambda p: p.name)
def test_guide_opens_with_its_label_and_a_title(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == ".. _%s%s:" % (LABEL_PREFIX, path.stem.replace("-", "_")), lines[0]
    assert lines[1] == ""
    title, underline = lines[2], lines[3]
    assert title.strip() and set(underline) == {"="} and len(underline) >= len(title), (title, underline)


@pytest.mark.parametrize("path", _guides(), ids=lambda p: p.name)
def test_guide_has_no_markdown_left(path):
    text = path.read_text(encoding="utf-8")
    assert "```" not in text
    assert not re.search(r"^#{1,6} ", text, re.M), "Markdown heading in %s" % path.name
    assert not re.search(r"\]\([^)]*\)", text), "Markdown link in %s" % path.name


def test_every_reference_resolves():
    labels = _labels()
    refs = []
    for path in _guides():
        for m in REF_RE.finditer(path.read_text(encoding="utf-8")):
            refs.append((path.name, m.group(1) or m.group(2)))
    for path in sorted((ROOT / "plugins").rglob("*.py")) + sorted((ROOT / "roles").glob("*/meta/argument_specs.yml")):
        for m in R_MARKUP_RE.finditer(path.read_text(encoding="utf-8")):
            if m.group(2).startswith(LABEL_PREFIX):
                refs.append((str(path.relative_to(ROOT)), m.group(2)))
    assert refs, "no cross reference found: the pattern is wrong"
    missing = [(where, label) for where, label in refs if label not in labels]
    assert missing == []


def test_no_file_points_at_a_markdown_doc_page():
    hits = []
    for path in _tracked_files():
        if not path.is_file() or path.suffix in {".gz", ".png"} or path == pathlib.Path(__file__).resolve():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        hits += ["%s: %s" % (path.relative_to(ROOT), m.group(0)) for m in OLD_DOC_PATH_RE.finditer(text)]
    assert hits == []
