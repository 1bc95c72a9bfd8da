"""Run ansible-playbook against lab namespaces, with this checkout as the collection.

Shared by the integration and fleet tests: one place that knows the environment a playbook
run needs here (interpreter, collection path, the netns connection plugin).
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(sys.executable)
PLAYBOOK_BIN = os.path.join(VENV_BIN, "ansible-playbook")
PLUGIN_DIR = os.path.join(ROOT, "tests", "integration", "connection_plugins")
COLLECTIONS = os.path.join(ROOT, ".build", "collections")

_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def host_vars(namespace, workdir):
    """Inventory variables for one namespace 'host' with its own store and lock."""
    return {
        "ansible_connection": "netns",
        "ansible_host": namespace,
        "ansible_python_interpreter": sys.executable,
        "hfw_config_dir": os.path.join(workdir, namespace, "store"),
        "hfw_lock_file": os.path.join(workdir, namespace, "lock"),
    }


def run_playbook(workdir, playbook, inventory, check=False, diff=False, extra_vars=None, extra_args=()):
    """Run a playbook (a path, or YAML text written to workdir); return (process, recap).

    ``inventory`` is a path or a dict {group: {host: {var: value}}} written as YAML.
    recap: {host: {'ok', 'changed', 'unreachable', 'failed'}} from the PLAY RECAP.
    """
    import json
    os.makedirs(workdir, exist_ok=True)
    if not os.path.exists(str(playbook)):
        path = os.path.join(workdir, "play.yml")
        with open(path, "w") as handle:
            handle.write(playbook)
        playbook = path
    if isinstance(inventory, dict):
        path = os.path.join(workdir, "inventory.json")
        with open(path, "w") as handle:
            json.dump({"all": {"children": {g: {"hosts": h} for g, h in inventory.items()}}}, handle)
        inventory = path
    argv = [PLAYBOOK_BIN, "-i", inventory, playbook]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    argv += list(extra_args)
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
        ANSIBLE_CONNECTION_PLUGINS=PLUGIN_DIR,
        ANSIBLE_ROLES_PATH=os.path.join(ROOT, "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOST_KEY_CHECKING="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_LOCAL_TEMP=os.path.join(workdir, ".ansible-local"),
        ANSIBLE_REMOTE_TMP=os.path.join(workdir, ".ansible-remote"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )
    proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=900, check=False)
    recap = {
        m.group(1): dict(ok=int(m.group(2)), changed=int(m.group(3)), unreachable=int(m.group(4)),
                         failed=int(m.group(5)))
        for m in _RECAP.finditer(proc.stdout)
    }
    return proc, recap


def changed_by_play(workdir, namespace, params, playbook, **extra_vars):
    """Run ``playbook`` on one namespace host whose store and lock are ``params``' config_dir and
    lock_file; asserts the run did not fail and returns its changed count."""
    hostvars = dict(host_vars(namespace, workdir), hfw_config_dir=params["config_dir"],
                    hfw_lock_file=params["lock_file"])
    proc, recap = run_playbook(workdir, playbook, {"hypervisors": {namespace: hostvars}}, extra_vars=extra_vars)
    assert proc.returncode == 0 and recap[namespace]["failed"] == 0, proc.stdout + proc.stderr
    return recap[namespace]["changed"]
