"""The `netns` connection plugin: inventory hosts that are network namespaces of a lab."""

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from lab import Lab, list_namespaces

VENV_BIN = os.path.dirname(sys.executable)
PLAYBOOK_BIN = os.path.join(VENV_BIN, "ansible-playbook")
PLUGIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "connection_plugins")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not os.path.exists(PLAYBOOK_BIN),
    reason="needs root, iproute2 and ansible-playbook next to the test interpreter")

PLAYBOOK = textwrap.dedent("""\
    - hosts: all
      gather_facts: false
      tasks:
        - name: list links inside the namespace
          ansible.builtin.command: ip -o link
          register: links
          changed_when: false
        - name: the namespace's interfaces and nothing else
          ansible.builtin.assert:
            that:
              - >-
                (links.stdout | regex_findall('^\\\\d+: ([^:@]+)', multiline=True) | sort)
                == expected_links
        - name: files land on the shared filesystem
          ansible.builtin.copy:
            content: "{{ inventory_hostname }}\\n"
            dest: "{{ out_dir }}/{{ inventory_hostname }}.txt"
            mode: "0644"
    """)


def _run_playbook(tmp_path, inventory):
    (tmp_path / "inventory.ini").write_text(inventory)
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONNECTION_PLUGINS=PLUGIN_DIR, ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOST_KEY_CHECKING="0", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ltmp"),
               ANSIBLE_REMOTE_TMP=str(tmp_path / "rtmp"))
    return subprocess.run([PLAYBOOK_BIN, "-i", "inventory.ini", "site.yml"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def _inventory(lab, tmp_path):
    common = ("ansible_connection=netns ansible_python_interpreter=%s out_dir=%s"
              % (sys.executable, tmp_path))
    return textwrap.dedent("""\
        [lab]
        hv ansible_host={hv} expected_links='["br0","lo","vnet0"]' {common}
        g0 netns_name={g0} expected_links='["eth0","lo"]' {common}
        """).format(hv=lab.hv, g0=lab.guests[0].ns, common=common)


def test_playbook_runs_inside_each_namespace(tmp_path):
    prefix = "hfwf%dc" % os.getpid()
    with Lab(prefix, guests=1) as lab:
        proc = _run_playbook(tmp_path, _inventory(lab, tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^hv\s+: ok=3 .* failed=0", proc.stdout, re.M)
    assert re.search(r"^g0\s+: ok=3 .* failed=0", proc.stdout, re.M)
    assert (tmp_path / "hv.txt").read_text() == "hv\n"
    assert (tmp_path / "g0.txt").read_text() == "g0\n"
    assert not [n for n in list_namespaces() if n.startswith(prefix + "-")]


def test_wrong_expectation_fails_the_play(tmp_path):
    """Guards the assertion above: the hv namespace must not look like a guest."""
    prefix = "hfwf%dd" % os.getpid()
    with Lab(prefix, guests=1) as lab:
        inventory = _inventory(lab, tmp_path).replace('["br0","lo","vnet0"]', '["eth0","lo"]')
        proc = _run_playbook(tmp_path, inventory)
    assert proc.returncode != 0
    assert re.search(r"^hv\s+: ok=1\s+changed=0\s+unreachable=0\s+failed=1", proc.stdout, re.M)
    assert re.search(r"^g0\s+: ok=3\s+changed=\d+\s+unreachable=0\s+failed=0", proc.stdout, re.M)


def test_missing_namespace_is_unreachable_with_a_clear_message(tmp_path):
    inventory = ("ghost ansible_connection=netns netns_name=hfwf-absent-ns "
                 "ansible_python_interpreter=%s out_dir=%s expected_links=[]\n"
                 % (sys.executable, tmp_path))
    proc = _run_playbook(tmp_path, inventory)
    assert proc.returncode != 0
    assert "network namespace 'hfwf-absent-ns' does not exist" in proc.stdout
    assert "unreachable=1" in proc.stdout
