"""The README demo: real guests under a private libvirtd when this machine has KVM (demo/real_lab.py),
then a hypervisor lab of network namespaces driven by playbooks/site.yml, proven with packets."""

import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "integration"),
                os.path.join(ROOT, "tests", "kvm"), os.path.join(ROOT, "demo")]

# links the checkout as ansible_collections.hypervisor.firewall
import conftest  # noqa: E402,F401 pylint: disable=unused-import
from ansible_run import host_vars, run_playbook  # noqa: E402
from lab import Lab  # noqa: E402
from lab.battery import format_table, run_battery  # noqa: E402
import real_lab  # noqa: E402

SITE = os.path.join(ROOT, "playbooks", "site.yml")
REAPPLY = os.path.join(ROOT, "bin", "hypervisor-firewall-reapply")
# what a firewall restart does to every table (iptables-restore of an empty config, ebtables flush)
FLUSH = [
    ["iptables", "-F"], ["iptables", "-X"], ["ip6tables", "-F"], ["ip6tables", "-X"],
    ["iptables", "-t", "nat", "-F"], ["iptables", "-t", "nat", "-X"],
    ["iptables", "-t", "mangle", "-F"], ["iptables", "-t", "mangle", "-X"],
    ["ebtables", "-t", "nat", "-F"], ["ebtables", "-t", "nat", "-X"],
]
KEY_CASES = ("ipv4-udp", "ipv4-tcp-syn", "arp-request", "spoofed-src-mac", "spoofed-src-ip",
             "arp-spoofed-sender-ip", "arp-spoofed-sender-mac", "ipv4-tcp-port-25")


def banner(text):
    print("\n" + "=" * 78 + "\n== " + text + "\n" + "=" * 78, flush=True)


def inventory(lab, workdir):
    hv = host_vars(lab.hv, workdir)
    hv.update(
        hypervisor_config_dir=hv["hfw_config_dir"],
        hypervisor_lock_file=hv["hfw_lock_file"],
        hypervisor_manage_packages=False,
        hypervisor_manage_sysctl=False,
        hypervisor_enable_reapply=False,
        hypervisor_networks=[dict(name="lab", bridge=lab.bridge, mode="nat",
                                  ipv4="%s/24" % lab.host_ipv4)],
        hypervisor_guest_nics=[
            dict(portdev=g.tap, mac=g.mac, filter="clean-traffic-smtp", parameters={"IP": g.ipv4})
            for g in lab.guests
        ],
        hypervisor_extra_filters=[NO_SPAMMING, CLEAN_TRAFFIC_SMTP],
    )
    return {"hypervisors": {"hv1": hv}}


# libvirt's firewall page example: clean-traffic plus a rule against outgoing SMTP
NO_SPAMMING = """<filter name='no-spamming' chain='root'>
  <rule action='drop' direction='out' priority='500'>
    <tcp dstportstart='25'/>
  </rule>
</filter>"""
CLEAN_TRAFFIC_SMTP = """<filter name='clean-traffic-smtp' chain='root'>
  <filterref filter='clean-traffic'/>
  <filterref filter='no-spamming'/>
</filter>"""


def battery(lab, title):
    banner(title)
    results = run_battery(lab)
    print(format_table({k: v for k, v in results.items() if k in KEY_CASES}))
    return results


def playbook(workdir, inv, title, **kwargs):
    banner(title)
    proc, recap = run_playbook(workdir, SITE, inv, **kwargs)
    log = os.path.join(workdir, re.sub(r"\W+", "-", title.lower()) + ".log")
    with open(log, "w") as handle:
        handle.write(proc.stdout + proc.stderr)
    # the network and NIC tasks (their diffs) and the recap; the full log, with the filter XML, is on disk
    tasks = proc.stdout.split("\nTASK [")
    shown = ["TASK [" + t for t in tasks if t.split("]", 1)[0].endswith(("virtual networks", "guest NICs"))]
    shown.append("PLAY RECAP" + proc.stdout.split("PLAY RECAP", 1)[-1])
    print("\n".join(shown))
    print("(full output: %s; run with --keep to keep it)" % log)
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        raise SystemExit("site.yml failed (rc %d)" % proc.returncode)
    return recap


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the work directory in place")
    parser.add_argument("--no-real-lab", action="store_true", help="skip the real guests, run the namespace lab only")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the demo builds network namespaces: run it as root")
    workdir = tempfile.mkdtemp(prefix="hfw-demo-")
    why_not = "--no-real-lab given" if args.no_real_lab else real_lab.unavailable()
    if why_not is None:
        if not real_lab.run(os.path.join(workdir, "real"), banner):
            raise SystemExit("the real guests did not see what they should (see the table above)")
        banner("Fleet rollout and healing: the namespace lab (guests are network namespaces)")
    else:
        banner("No real lab (%s): falling back to the namespace lab, guests are network namespaces" % why_not)
    with Lab("hfwdemo%d" % os.getpid(), guests=2) as lab:
        inv = inventory(lab, workdir)
        battery(lab, "Before: no filters, spoofed frames reach the other guest")
        playbook(workdir, inv, "site.yml in check mode with diff (nothing is changed)", check=True, diff=True)
        playbook(workdir, inv, "site.yml applied")
        before = battery(lab, "After: spoofing dropped, legitimate traffic passes")
        recap = playbook(workdir, inv, "site.yml again (must change nothing)")
        changed = {h: r["changed"] for h, r in recap.items()}
        print("changed on second run:", changed)
        if any(changed.values()):
            raise SystemExit("site.yml is not idempotent: the second run changed %s" % changed)
        banner("Simulated firewall restart: every table flushed")
        for argv in FLUSH:
            lab.exec(lab.hv, argv)
        battery(lab, "After the restart: guests are unprotected")
        banner("hypervisor-firewall-reapply heals the host from its store")
        store = inv["hypervisors"]["hv1"]["hypervisor_config_dir"]
        lock = inv["hypervisors"]["hv1"]["hypervisor_lock_file"]
        out = subprocess.run(lab.hv_prefix + [sys.executable, REAPPLY, "--config-dir", store, "--lock-file", lock],
                             capture_output=True, text=True, check=False)
        print(out.stdout + out.stderr)
        after = battery(lab, "After re-apply")
        same = all(before[k] == after[k] for k in KEY_CASES)
        banner("Verdicts after re-apply %s the verdicts before the restart" % ("EQUAL" if same else "DIFFER FROM"))
        if not same or out.returncode != 0:
            raise SystemExit(1)
    if args.keep:
        print("work directory kept: %s" % workdir)
    else:
        subprocess.run(["rm", "-rf", workdir], check=False)


if __name__ == "__main__":
    main()
