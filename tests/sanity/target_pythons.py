"""Compile and import the target-side code under every Python ansible-core can target here.

    python tests/sanity/target_pythons.py COLLECTIONS_DIR [PYCACHE_DIR]

COLLECTIONS_DIR holds ansible_collections/hypervisor/firewall (the sanity stage's copy). The
versions are ansible-test's SUPPORTED_PYTHON_VERSIONS for the installed ansible-core; each is
looked for as pythonX.Y on PATH and under pyenv's versions directory. Every version found must
compile plugins/modules, plugins/module_utils and bin/*, and import every module and module_utils
file (with ansible-core's own module_utils, as a target has them; lxml and netaddr need not be
there: their absence must be reported by the modules, never break an import). A version that is
not installed is listed, not failed.
"""

import glob
import os
import subprocess
import sys
import tempfile

# Runs under each target Python: only what Python 3.8 has.
CHILD = r'''
import importlib, os, sys, warnings
collections_dir, coll = sys.argv[1], sys.argv[2]
failures = []
paths = []
for top in ("plugins/modules", "plugins/module_utils"):
    for base, dirs, files in os.walk(os.path.join(coll, top)):
        dirs.sort()
        paths += [os.path.join(base, f) for f in sorted(files) if f.endswith(".py")]
paths += sorted(os.path.join(coll, "bin", f) for f in os.listdir(os.path.join(coll, "bin")))
for path in paths:
    with open(path, "rb") as handle:
        source = handle.read()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", SyntaxWarning)
            compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, SyntaxWarning) as exc:
        failures.append("compile %s: %s" % (os.path.relpath(path, coll), exc))
sys.path.insert(0, collections_dir)
names = []
for path in paths:
    rel = os.path.relpath(path, coll)
    if rel.startswith("plugins/") and not rel.endswith("__init__.py"):
        names.append("ansible_collections.hypervisor.firewall." + rel[:-3].replace(os.sep, "."))
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:  # any failure to import is what this check reports
        failures.append("import %s: %s: %s" % (name, type(exc).__name__, exc))
for failure in failures:
    print(failure)
print("%d files compiled, %d imported" % (len(paths), len(names)))
sys.exit(1 if failures else 0)
'''


def interpreters(versions):
    """{version: path or None} for each version, from PATH first, then pyenv."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = {}
    for version in versions:
        path = None
        for directory in os.environ.get("PATH", "").split(os.pathsep):
            candidate = os.path.join(directory, "python" + version)
            # pyenv's shims answer for every version but run only the selected ones
            if os.access(candidate, os.X_OK) and "/shims" not in directory:
                path = candidate
                break
        if path is None:
            pattern = os.path.join(root, "versions", version + ".*", "bin", "python" + version)
            matches = sorted(glob.glob(pattern), key=lambda p: [int(x) for x in p.split("/")[-3].split(".") if x.isdigit()])
            path = matches[-1] if matches else None
        found[version] = path
    return found


def main(collections_dir, versions=None, pycache=None):
    import ansible
    from ansible_test._internal.constants import SUPPORTED_PYTHON_VERSIONS

    coll = os.path.join(collections_dir, "ansible_collections", "hypervisor", "firewall")
    if not os.path.isdir(os.path.join(coll, "plugins")):
        return "no collection at %s" % coll
    failed, tested, missing = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        # ansible-core alone on the path: a target gets its module_utils, nothing else of the venv.
        os.symlink(os.path.dirname(ansible.__file__), os.path.join(tmp, "ansible"))
        # Byte code goes to a cache of our own, never next to the sources of the venv or the copy.
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": tmp, "PYTHONPYCACHEPREFIX": pycache or os.path.join(tmp, "pycache")}
        for version, python in interpreters(versions or SUPPORTED_PYTHON_VERSIONS).items():
            if python is None:
                missing.append(version)
                continue
            proc = subprocess.run([python, "-c", CHILD, collections_dir, coll], env=env, check=False,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
            for line in proc.stdout.splitlines():
                print("sanity: python%s: %s" % (version, line))
            (failed if proc.returncode else tested).append(version)
    print("sanity: target Pythons passed: %s; failed: %s; not installed here: %s"
          % (" ".join(tested) or "none", " ".join(failed) or "none", " ".join(missing) or "none"))
    return 1 if failed or not tested else 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], pycache=sys.argv[2] if len(sys.argv) == 3 else None))
