"""The demo's real-lab part: a private libvirtd with real guests, seen from inside the guests.

A guest that no binding names sends legitimate and spoofed traffic and reports what came back;
then a guest bound by domain and MAC (rules installed by the qemu hook the guest_hooks role put
into that libvirtd) sends the same; the table shows both guests' own views side by side.
"""

import os

from kvm_support import bring_up, chains_of, configure_hypervisor, guest_battery, lab_binding
from lab.libvirt_lab import LibvirtLab, choose_domain_type, interface_xml, missing_tools

BOUND = ("web", "52:54:00:00:00:0a", "192.168.100.10")
FREE = ("unbound", "52:54:00:00:00:0f", "192.168.100.30")
SPOOF_IP = "192.168.100.99"
PROBES = [
    ("ping", "ping the host from its own address (replies)"),
    ("spoofed-ip ping", "ping from a spoofed IP (replies)"),
    ("spoofed-ip arp", "ARP with a spoofed sender IP (replies)"),
    ("spoofed-mac ping", "ping with a spoofed MAC (replies)"),
    ("dhcp lease", "DHCP: lease obtained"),
    ("tcp 80", "TCP to port 80"),
    ("tcp 25", "TCP to port 25 (SMTP, dropped by the filter)"),
]


def unavailable():
    """Why the real lab cannot run here (None when it can)."""
    if not os.path.exists("/dev/kvm"):
        return "this machine has no /dev/kvm"
    missing = missing_tools()
    if missing:
        return "missing packages: %s" % " ".join(missing)
    return None


def table(left_title, left, right_title, right):
    width = max(len(text) for _key, text in PROBES)
    lines = ["%-*s  %-16s  %s" % (width, "what the guest sent", left_title, right_title),
             "%s  %s  %s" % ("-" * width, "-" * 16, "-" * len(right_title))]
    for key, text in PROBES:
        lines.append("%-*s  %-16s  %s" % (width, text, left[key], right[key]))
    return "\n".join(lines)


def run(workdir, banner):
    domain_type, why = choose_domain_type()
    banner("Real lab: a private libvirtd in a namespace, guests as libvirt <domain type='%s'>" % domain_type)
    print("(%s)" % why)
    with LibvirtLab("hfwdemokvm%d" % os.getpid(), os.path.join(workdir, "lab"), domain_type=domain_type) as lab:
        name, mac, ip = BOUND
        banner("guest_hooks role + filters + a binding for guest '%s' by domain and MAC" % name)
        changed = configure_hypervisor(lab, workdir, [lab_binding(name, mac, ip)])
        print("lab_hypervisor.yml: changed=%d; libvirtd restarts to read its hook" % changed)
        lab.restart_libvirtd()

        banner("Guest '%s' (no binding) and guest '%s' (bound) send the same traffic" % (FREE[0], name))
        free = lab.start_guest(FREE[0], [interface_xml(FREE[1])])
        bring_up(free, "eth0", FREE[2])
        unfiltered = guest_battery(free, "eth0", FREE[2], SPOOF_IP)
        guest = lab.start_guest(name, [interface_xml(mac)])
        [(tap, _mac)] = lab.taps(name)
        print("libvirt gave '%s' tap %s; the qemu hook installed %s before the guest ran"
              % (name, tap, ", ".join(chains_of(lab, tap))))
        bring_up(guest, "eth0", ip)
        filtered = guest_battery(guest, "eth0", ip, SPOOF_IP)
        print(table("'%s' saw" % FREE[0], unfiltered, "'%s' saw" % name, filtered))

        banner("virsh destroy %s: the hook removes its rules" % name)
        lab.destroy_guest(name)
        left = chains_of(lab, tap)
        print("chains for %s after destroy: %s" % (tap, ", ".join(left) or "none"))
        ok = filtered["spoofed-ip ping"] == filtered["spoofed-mac ping"] == filtered["spoofed-ip arp"] == 0 \
            and filtered["tcp 25"] == "no connection" and filtered["ping"] > 0 and unfiltered["spoofed-ip ping"] > 0 \
            and not left
    return ok
