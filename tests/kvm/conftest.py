"""The kvm stage: real guests under a private libvirtd (tests/lab/libvirt_lab.py).

Puts tests/ (the lab package) and tests/integration (ansible_run) on sys.path."""

import os
import sys

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (_TESTS, os.path.join(_TESTS, "integration")):
    if _path not in sys.path:
        sys.path.insert(0, _path)
