"""Put tests/ (the lab package) and tests/integration (ansible_run) on sys.path; one SshFleet
(client key, sshd per namespace host) for the whole stage."""

import os
import sys

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (_TESTS, os.path.join(_TESTS, "integration")):
    if _path not in sys.path:
        sys.path.insert(0, _path)


import pytest  # noqa: E402

from lab.sshd import SshFleet  # noqa: E402


@pytest.fixture(scope="session")
def ssh_fleet():
    with SshFleet() as fleet:
        yield fleet
