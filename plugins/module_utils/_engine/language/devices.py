# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which network device names a binding, a network or a rule may use: the same for every backend."""

from __future__ import annotations

import re

from ..errors import DeviceNameError

DEVICE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")
# libvirt names the taps it creates vnetN: the unbound-tap drop covers exactly those
TAP_PREFIX = "vnet"


def check_device(name, what="device"):
    """Reject names the kernel accepts but iptables treats specially (``vnet+``) or a shell would."""
    if not isinstance(name, str) or not DEVICE_RE.match(name):
        raise DeviceNameError(
            "%s name %r is not valid: use 1 to 15 characters from A-Z, a-z, 0-9, '_', '.', '-' "
            "(no '+', '/', spaces or quotes)" % (what, name),
            device=name,
        )
    return name


def check_injective(devices):
    """Refuse a set of bound taps that would share chain names.

    ebtables sub-chains are ``I-DEV-SUFFIX``: taps ``gw`` and ``gw-arp`` both give ``I-gw-arp-mac``.
    ``D1-S1 == D2-S2`` with ``D1`` shorter needs ``D2`` to start with ``D1 + '-'``, so refusing exactly
    those pairs makes every name (root, sub-chain, iptables chain) belong to one tap."""
    present = set(devices)
    for dev in sorted(present):
        for cut, char in enumerate(dev):
            if char == "-" and dev[:cut] in present:
                raise DeviceNameError(
                    "taps '%s' and '%s' would share ebtables chain names (e.g. I-%s-...): rename one of them; "
                    "a bound tap's name must not be another bound tap's name followed by '-'" % (dev[:cut], dev, dev),
                    devices=[dev[:cut], dev])
