# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What filtering adds to a guest's start, with a real libvirtd (tests/lab/libvirt_lab.py).

Times ``virsh create`` (it returns once QEMU runs, after libvirt's ``start`` and ``started``
hooks) of a one-NIC guest, destroyed right after, in three set-ups of the same lab:

  none      no filter at all (the baseline: libvirt and QEMU alone)
  hook      our qemu hook (guest_hooks role) applies clean-traffic, bound by domain and MAC
  nwfilter  libvirtd's own nwfilter driver applies clean-traffic (<filterref> in <interface>)

and prints min / median / max seconds and the median minus the baseline.  Needs root, /dev/kvm and
the kvm stage's packages.  Usage: python bench/hook_bench.py [--runs N]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "integration"), os.path.join(ROOT, "tests", "kvm")]

# links the checkout as the collection
import conftest  # noqa: E402,F401 pylint: disable=unused-import
from kvm_support import configure_hypervisor, lab_binding  # noqa: E402
from lab.libvirt_lab import LibvirtLab, interface_xml  # noqa: E402

MAC, IP = "52:54:00:00:00:0a", "192.168.100.10"
FILTERREF = ("clean-traffic", {"IP": IP})


def time_starts(lab, name, nic, runs):
    """Seconds of each ``virsh create`` of a guest with ``nic``; the guest is destroyed each time."""
    path = os.path.join(lab.dirs["guests"], name + ".xml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(lab.domain_xml(name, [nic]))
    times = []
    for _run in range(runs):
        start = time.monotonic()
        lab.virsh("create", path)
        times.append(time.monotonic() - start)
        lab.virsh("destroy", name)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="starts per set-up (default %(default)s)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("hook_bench needs root (network namespaces, libvirtd)")
    workdir = tempfile.mkdtemp(prefix="hfw-hook-bench-")
    with LibvirtLab("hfwbench%d" % os.getpid(), os.path.join(workdir, "lab")) as lab:
        print("guests: <domain type='%s'> (%s)" % (lab.domain_type, lab.domain_type_reason))
        results = {"none": time_starts(lab, "plain", interface_xml("52:54:00:00:00:0f"), args.runs),
                   "nwfilter": time_starts(lab, "legacy", interface_xml("52:54:00:00:00:0e", filterref=FILTERREF),
                                           args.runs)}
        configure_hypervisor(lab, workdir, [lab_binding("web", MAC, IP)])
        lab.restart_libvirtd()
        results["hook"] = time_starts(lab, "web", interface_xml(MAC), args.runs)
    base = statistics.median(results["none"])
    print("virsh create of a one-NIC guest, %d runs each (seconds)" % args.runs)
    print("%-9s %7s %7s %7s %12s" % ("set-up", "min", "median", "max", "added"))
    for name in ("none", "hook", "nwfilter"):
        times = results[name]
        print("%-9s %7.3f %7.3f %7.3f %+12.3f" % (name, min(times), statistics.median(times), max(times),
                                                  statistics.median(times) - base))


if __name__ == "__main__":
    main()
