"""Changelog fragments stay valid for antsibull-changelog and true for the release they go into.

Every lane adds fragments; these checks fail with the fragment's name and the fix, before a
release (or the build stage's trial release) trips over them.
"""

import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
CHANGELOGS = ROOT / "changelogs"
FRAGMENTS = sorted((CHANGELOGS / "fragments").iterdir())
MAX_LINE = 160  # ansible-lint's yaml[line-length] in the production profile
NEEDS_EARLIER_RELEASE = ("breaking_changes", "deprecated_features", "removed_features", "bugfixes")


def _config():
    return yaml.safe_load((CHANGELOGS / "config.yaml").read_text(encoding="utf-8"))


def _released():
    return yaml.safe_load((CHANGELOGS / "changelog.yaml").read_text(encoding="utf-8")).get("releases") or {}


def _galaxy_version():
    return yaml.safe_load((ROOT / "galaxy.yml").read_text(encoding="utf-8"))["version"]


def check_fragment(name, text, config, released):
    """The problems of one fragment, as messages naming it and the fix (empty: fine)."""
    problems = []
    if not name.endswith((".yml", ".yaml")):
        return ["%s: a fragment is a .yml file (antsibull-changelog ignores other names)" % name]
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) > MAX_LINE:
            problems.append("%s:%d: %d characters, wrap it under %d" % (name, number, len(line), MAX_LINE))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return problems + ["%s: not YAML: %s" % (name, exc)]
    if not isinstance(data, dict) or not data:
        return problems + ["%s: a fragment maps section names to lists of changes" % name]
    sections = {key for key, _title in config["sections"]}
    for section, entries in data.items():
        if section == config["prelude_section_name"]:
            if not isinstance(entries, str) or not entries.strip():
                problems.append("%s: %s is one non-empty string" % (name, section))
            continue
        if section not in sections and section != config["trivial_section_name"]:
            problems.append("%s: unknown section %r (one of %s)" % (name, section, ", ".join(sorted(sections))))
            continue
        if not isinstance(entries, list) or not entries:
            problems.append("%s: %s must be a non-empty list of strings" % (name, section))
            continue
        for entry in entries:
            if not isinstance(entry, str) or not entry.strip():
                problems.append("%s: %s has an entry that is not a non-empty string: %r" % (name, section, entry))
        if not released and section in NEEDS_EARLIER_RELEASE:
            problems.append("%s: %s needs an earlier release and there is none yet; describe the change under "
                            "minor_changes (or security_fixes)" % (name, section))
    return problems


@pytest.mark.parametrize("path", FRAGMENTS, ids=lambda p: p.name)
def test_fragment_is_valid(path):
    assert check_fragment(path.name, path.read_text(encoding="utf-8"), _config(), _released()) == []


@pytest.mark.parametrize("name, text, expect", [
    ("x.yml", "---\nminor_changes:\n  - fine\n", None),
    ("x.md", "minor_changes: [a]\n", "a fragment is a .yml file"),
    ("x.yml", "---\nminor_changes:\n  - " + "a" * 200 + "\n", "x.yml:3: 204 characters"),
    ("x.yml", "---\nminor_change:\n  - typo\n", "unknown section 'minor_change'"),
    ("x.yml", "---\nbugfixes:\n  - fixed before any release\n", "bugfixes needs an earlier release"),
    ("x.yml", "---\nbreaking_changes:\n  - changed\n", "breaking_changes needs an earlier release"),
    ("x.yml", "---\nminor_changes: a string\n", "must be a non-empty list"),
    ("x.yml", "---\nminor_changes:\n  - {a: b}\n", "not a non-empty string"),
    ("x.yml", "---\nrelease_summary: []\n", "release_summary is one non-empty string"),
    ("x.yml", "minor_changes: [\n", "not YAML"),
])
def test_check_fragment_catches(name, text, expect):
    problems = check_fragment(name, text, _config(), {})
    if expect is None:
        assert problems == []
    else:
        assert any(expect in p for p in problems), problems


def test_bugfixes_allowed_once_released():
    assert check_fragment("x.yml", "---\nbugfixes:\n  - a fix\n", _config(), {"0.1.0": {}}) == []


def _module_version_added():
    found = {}
    for path in sorted((ROOT / "plugins" / "modules").glob("*.py")):
        match = re.search(r"^version_added:\s*['\"]?([0-9.]+)['\"]?\s*$", path.read_text(encoding="utf-8"), re.M)
        found[path.stem] = match.group(1) if match else None
    return found


def _role_version_added():
    found = {}
    for path in sorted((ROOT / "roles").glob("*/meta/argument_specs.yml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))["argument_specs"]["main"]
        found[path.parent.parent.name] = str(spec["version_added"]) if "version_added" in spec else None
    return found


def test_version_added_is_the_first_release():
    """Before the first release every module and role is new in the version galaxy.yml names."""
    if _released():
        pytest.skip("a release exists: version_added then varies by object")
    version = _galaxy_version()
    found = dict(("module " + k, v) for k, v in _module_version_added().items())
    found.update(("role " + k, v) for k, v in _role_version_added().items())
    assert found and {k: v for k, v in found.items() if v != version} == {}
