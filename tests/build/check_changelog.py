"""Check the changelog a trial release made (tests/run build stage; see changelog_trial there).

    python tests/build/check_changelog.py COLLECTION_COPY VERSION

COLLECTION_COPY is a copy of the installed collection in which `antsibull-changelog release
--version VERSION` just ran. The release must be true for a collection that was never released
before it: no section that can only describe a change to an earlier release, and every module and
role of the collection announced as new.
"""

import pathlib
import re
import sys

import yaml

# Sections that describe a change to something an earlier release shipped.
NEEDS_EARLIER_RELEASE = ("breaking_changes", "deprecated_features", "removed_features", "bugfixes")


def main(copy, version):
    copy = pathlib.Path(copy)
    changes = yaml.safe_load((copy / "changelogs" / "changelog.yaml").read_text(encoding="utf-8"))
    releases = changes.get("releases") or {}
    if version not in releases:
        return "changelog.yaml has no release %s after the trial release" % version
    problems = []
    release = releases[version]
    if len(releases) == 1:
        for section in NEEDS_EARLIER_RELEASE:
            for line in release.get("changes", {}).get(section, []):
                problems.append("%s is the first release, so it cannot have %s: %r; describe it under minor_changes"
                                % (version, section, line))
    modules = sorted(p.stem for p in (copy / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
    announced = sorted(entry["name"] for entry in release.get("modules", []))
    if len(releases) == 1 and announced != modules:
        problems.append("new modules announced %s, the collection has %s (check version_added)" % (announced, modules))
    roles = sorted(p.name for p in (copy / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())
    announced = sorted(entry["name"] for entry in release.get("objects", {}).get("role", []))
    if len(releases) == 1 and announced != roles:
        problems.append("new roles announced %s, the collection has %s (add version_added to the role's main "
                        "entry point in meta/argument_specs.yml)" % (announced, roles))
    rst = (copy / "CHANGELOG.rst").read_text(encoding="utf-8")
    if not re.search(r"^v%s\n=+$" % re.escape(version), rst, re.M):
        problems.append("CHANGELOG.rst has no section v%s" % version)
    for problem in problems:
        print("changelog trial: %s" % problem, file=sys.stderr)
    if problems:
        return 1
    print("build: a trial release %s lints and announces %d modules and %d roles" % (version, len(modules), len(roles)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
