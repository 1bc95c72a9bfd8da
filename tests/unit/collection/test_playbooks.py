"""The shipped playbooks run as root on the hypervisors and write nothing into the collection."""

import os
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yml"))


@pytest.mark.parametrize("path", PLAYBOOKS, ids=lambda p: p.name)
def test_every_play_becomes_root_and_controller_tasks_do_not(path):
    for play in yaml.safe_load(path.read_text(encoding="utf-8")):
        assert play.get("become") is True, "%s: play %r needs become: true" % (path.name, play["name"])
        for task in play.get("tasks", []):
            if task.get("delegate_to") == "localhost":
                assert task.get("become") is False, "%s: %r writes on the controller as its user" % (
                    path.name, task["name"])


# Rendered by ansible-core in a child process: the plugin loader it needs configures the
# collection finder, which must not happen inside the pytest process that other tests share.
_RENDER = r"""
import sys, yaml
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template
init_plugin_loader()
play = yaml.safe_load(open(sys.argv[1]))[0]
templar = Templar(loader=DataLoader(), variables={"playbook_dir": sys.argv[2]})
try:
    print(templar.template(trust_as_template(play["vars"]["audit_report_dir"])))
except Exception as exc:
    print("ERROR %s" % exc)
"""


def _audit_report_dir(env_pwd, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "PWD"}
    if env_pwd is not None:
        env["PWD"] = env_pwd
    proc = subprocess.run([sys.executable, "-c", _RENDER, str(ROOT / "playbooks" / "audit.yml"),
                           str(ROOT / "playbooks")], env=env, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def test_audit_reports_go_to_the_working_directory(monkeypatch, tmp_path):
    assert _audit_report_dir(str(tmp_path), monkeypatch) == str(tmp_path / "audit-reports")


def test_audit_report_dir_without_pwd_is_an_error_not_the_root_directory(monkeypatch):
    out = _audit_report_dir(None, monkeypatch)
    assert out.startswith("ERROR") and "give audit_report_dir" in out
