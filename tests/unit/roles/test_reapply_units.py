# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reapply role's unit templates, rendered the way Ansible renders them, pass systemd-analyze verify."""

import os
import shutil
import subprocess

import pytest

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLE = os.path.join(ROOT, "roles", "reapply")
SCRIPT = os.path.join(ROOT, "bin", "hypervisor-firewall-reapply")
UNITS = ("hypervisor-firewall-reapply.service", "hypervisor-firewall-watch.service")
TRIGGERS = ["iptables.service", "ip6tables.service", "ebtables.service", "nftables.service",
            "netfilter-persistent.service"]


def _trusted(value):
    """Role defaults and vars are trusted templates in a real play; YAML loaded here is not."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [_trusted(item) for item in value]
    return value


def role_vars(**overrides):
    loader = DataLoader()
    found = {"role_path": ROLE}
    for folder in ("defaults", "vars"):
        data = loader.load_from_file(os.path.join(ROLE, folder, "main.yml"))
        found.update({key: _trusted(value) for key, value in data.items()})
    found.update(overrides)
    return found


def render(name, **overrides):
    templar = Templar(loader=DataLoader(), variables=role_vars(**overrides))
    with open(os.path.join(ROLE, "templates", name + ".j2"), encoding="utf-8") as handle:
        return templar.template(trust_as_template(handle.read()))


def parse_unit(text):
    """{section: {key: [values]}}: systemd keys repeat, configparser would keep only the last."""
    sections, current = {}, None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, sep, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


@pytest.fixture
def prefix(tmp_path):
    """An install prefix holding the command, so ExecStart points at a real executable."""
    sbin = tmp_path / "prefix" / "sbin"
    sbin.mkdir(parents=True)
    shutil.copy(SCRIPT, sbin / "hypervisor-firewall-reapply")
    return str(tmp_path / "prefix")


def test_reapply_unit_runs_after_every_firewall_start_restart_and_reload(prefix):
    unit = parse_unit(render(UNITS[0], reapply_prefix=prefix))
    assert unit["Service"]["Type"] == ["oneshot"] and unit["Service"]["RemainAfterExit"] == ["yes"]
    assert unit["Unit"]["PartOf"] == TRIGGERS
    assert unit["Unit"]["ReloadPropagatedFrom"] == TRIGGERS
    assert unit["Unit"]["After"][0].split() == ["network-pre.target"] + TRIGGERS
    assert unit["Install"]["WantedBy"][0].split() == ["multi-user.target"] + TRIGGERS
    command = '"%s/sbin/hypervisor-firewall-reapply" --config-dir "/etc/hypervisor-firewall" ' \
              '--lock-file "/run/hypervisor-firewall/lock" --lock-timeout 30' % prefix
    assert unit["Service"]["ExecStart"] == [command] and unit["Service"]["ExecReload"] == [command]


def test_watch_unit_options_follow_the_variables(prefix):
    default = parse_unit(render(UNITS[1], reapply_prefix=prefix))["Service"]
    assert default["ExecStart"][0].endswith("--lock-timeout 30 --watch 10")
    assert default["Restart"] == ["on-failure"]
    polling = parse_unit(render(UNITS[1], reapply_prefix=prefix, reapply_watch_monitor=False,
                                reapply_watch_interval=3, reapply_config_dir="/srv/50%/store"))["Service"]
    assert polling["ExecStart"][0].endswith("--watch 3 --no-monitor")
    assert '--config-dir "/srv/50%%/store"' in polling["ExecStart"][0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("name", UNITS)
def test_unit_passes_systemd_analyze_verify(tmp_path, prefix, name):
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    path = unit_dir / name
    path.write_text(render(name, reapply_prefix=prefix))
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True,
                          env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice"), check=False)
    problems = [line for line in done.stderr.splitlines() if name in line or "Executable" in line]
    assert done.returncode == 0 and problems == [], done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_verify_catches_a_missing_command(tmp_path):
    """Guards the test above: verify must fail when ExecStart names no file."""
    path = tmp_path / UNITS[0]
    path.write_text(render(UNITS[0], reapply_prefix=str(tmp_path / "nowhere")))
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "nowhere" in done.stderr
