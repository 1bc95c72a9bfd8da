"""Make the checkout importable as ansible_collections.hypervisor.firewall for pytest.

ansible-test copies the tree; for plain pytest a symlink under .build/ is enough.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_COLL_PARENT = os.path.join(_ROOT, ".build", "collections")


def _link_collection():
    ns_dir = os.path.join(_COLL_PARENT, "ansible_collections", "hypervisor")
    link = os.path.join(ns_dir, "firewall")
    os.makedirs(ns_dir, exist_ok=True)
    if not os.path.islink(link):
        try:
            os.symlink(_ROOT, link)
        except FileExistsError:
            pass
    if _COLL_PARENT not in sys.path:
        sys.path.insert(0, _COLL_PARENT)


if "ansible_collections.hypervisor.firewall" not in sys.modules:
    _link_collection()
