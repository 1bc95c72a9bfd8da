"""The hypervisor role refuses the inputs that would silently remove filtering.

The argument specs describe each key of hypervisor_networks and hypervisor_guest_nics, so a
misspelt key fails the role's argument validation; an empty exclusive guest NIC list (what a
misspelt variable name gives) fails before any task changes anything.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

ROOT = pathlib.Path(__file__).resolve().parents[3]
SPEC = yaml.safe_load((ROOT / "roles" / "hypervisor" / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]
COLLECTIONS = ROOT / ".build" / "collections"
PLAYBOOK_BIN = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


def validate(**variables):
    result = ArgumentSpecValidator(SPEC["options"]).validate(variables)
    return [str(error) for error in result.errors]


def test_a_misspelt_network_key_is_an_error():
    errors = validate(hypervisor_networks=[{"name": "default", "bridge": "virbr0", "ipv4": "192.168.122.1/24",
                                            "dchp": True}])
    assert any("dchp" in error for error in errors), errors


def test_a_misspelt_guest_nic_key_is_an_error():
    errors = validate(hypervisor_guest_nics=[{"domain": "web1", "mac": "52:54:00:00:00:01", "filter": "clean-traffic",
                                              "paramters": {"IP": "10.0.0.2"}}])
    assert any("paramters" in error for error in errors), errors


def test_documented_items_validate():
    assert validate(
        hypervisor_networks=[{"name": "default", "bridge": "virbr0", "mode": "nat", "ipv4": ["192.168.122.1/24"],
                              "dhcp": True}],
        hypervisor_guest_nics=[{"domain": "web1", "mac": "52:54:00:00:00:01", "filter": "clean-traffic",
                                "parameters": {"IP": "10.0.0.2"}}],
        hypervisor_backend="nftables", hypervisor_guest_hooks=True) == []


def test_the_example_inventory_validates():
    inventory = ROOT / "playbooks" / "inventory" / "example"
    group = yaml.safe_load((inventory / "group_vars" / "hypervisors.yml").read_text())
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())["all"]["children"]["hypervisors"]["hosts"]
    for host, variables in hosts.items():
        merged = dict(group, **(variables or {}))
        assert validate(**{k: v for k, v in merged.items() if k.startswith("hypervisor_")}) == [], host
        assert all("domain" in nic for nic in merged["hypervisor_guest_nics"]), host


def run_role(tmp_path, **variables):
    play = [{"hosts": "localhost", "gather_facts": False, "roles": [{"role": "hypervisor.firewall.hypervisor"}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    store = tmp_path / "store"
    variables = dict(hypervisor_config_dir=str(store), hypervisor_lock_file=str(tmp_path / "lock"),
                     hypervisor_manage_packages=False, hypervisor_manage_sysctl=False,
                     hypervisor_enable_reapply=False, ansible_python_interpreter=sys.executable, **variables)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    proc = subprocess.run([PLAYBOOK_BIN, "-i", "localhost,", "-c", "local", "--check", str(tmp_path / "play.yml"),
                           "-e", json.dumps(variables)], capture_output=True, text=True, env=env, check=False)
    return proc, store


@pytest.mark.parametrize("variables", [
    {},  # hypervisor_guest_nics never set
    {"hypervisor_guest_nic": [{"domain": "web1", "mac": "52:54:00:00:00:01", "filter": "clean-traffic"}]},  # typo
])
def test_an_empty_exclusive_nic_list_is_refused_before_any_change(tmp_path, variables):
    proc, store = run_role(tmp_path, **variables)
    assert proc.returncode != 0
    assert "hypervisor_guest_nics is empty and hypervisor_exclusive_bindings is true" in proc.stdout, proc.stdout[-2000:]
    assert "set hypervisor_allow_empty_guest_nics: true" in proc.stdout
    assert "changed=0" in proc.stdout and not store.exists()
