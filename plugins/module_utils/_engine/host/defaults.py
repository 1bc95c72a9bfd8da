# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host paths shared by the modules and the re-apply command (no imports: safe everywhere)."""

DEFAULT_CONFIG_DIR = "/etc/hypervisor-firewall"
# in a directory only root can write (not /run/lock, which every user can): see runner.open_lock
DEFAULT_LOCK_FILE = "/run/hypervisor-firewall/lock"
LIBVIRT_BINDING_DIR = "/run/libvirt/nwfilter-binding"
