# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""guest_nic_filter driven from playbooks against a namespace lab: real netfilter, real packets.

One lab serves the whole file. Its history is a chain of module-scoped stage fixtures (fresh check
run -> apply -> rerun -> gather/render -> IP lists -> no-spamming -> one binding per default
filter -> missing device -> bad input -> removal); each stage runs one playbook, records what it
needs, and the tests assert on the records, so every playbook run is paid for once.

Expected verdict tables are derived from what the filter XMLs in roles/default_filters/files/ mean
(see FILTERS below), applied on top of the lab's unfiltered baseline; they are never copied from
an observed run.
"""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from ansible_run import PLAYBOOK_BIN, ROOT, host_vars, run_playbook
from lab import Lab, format_table, run_battery
from lab.battery import CASES, SPOOF_IPV4
from save_views import foreign_view, without_comments

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.names import device_of_chain
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.ruleset import TOOL_ORDER
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import TOOLS
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.xtables.save_parse import parse_save
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.store import load_store

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not os.path.exists(PLAYBOOK_BIN),
    reason="needs root, iproute2 and ansible-playbook next to the test interpreter")

PLAYBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "playbooks", "nic")
FILTER_FILES = os.path.join(ROOT, "roles", "default_filters", "files")
PREFIX = "hfwk%d" % os.getpid()
LATE_DEV = "vnet7"  # bound before it exists

# An admin's rules, a container engine's chain and a closed FORWARD policy. The FORWARD accept
# for br0 keeps bridged traffic flowing (br_netfilter sends it through FORWARD), so the packet
# battery measures our filters and not the policy.
FOREIGN = {
    "ip4": "*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n"
           '-A INPUT -s 10.0.0.1/32 -p tcp -m tcp --dport 22 -m comment --comment "admin ssh" -j ACCEPT\n'
           "-A FORWARD -j DOCKER-USER\n-A FORWARD -i br0 -o br0 -j ACCEPT\n-A DOCKER-USER -j RETURN\nCOMMIT\n",
    "ip6": "*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n"
           '-A INPUT -s fd00::1/128 -p tcp -m tcp --dport 22 -m comment --comment "admin ssh" -j ACCEPT\n'
           "-A FORWARD -j DOCKER-USER\n-A FORWARD -i br0 -o br0 -j ACCEPT\n-A DOCKER-USER -j RETURN\nCOMMIT\n",
    "eb": "*nat\n-A PREROUTING -d 01:80:c2:00:00:00 -j DROP\n",
}

ARP_ONLY = ('<filter name="hfwk-arp-only">'
            '<filterref filter="allow-arp"/><filterref filter="no-other-l2-traffic"/></filter>')
# libvirt's firewall page: drop outgoing SMTP (tcp dport 25), referenced from clean-traffic.
NO_SPAMMING = ('<filter name="no-spamming" chain="root">'
               '<rule action="drop" direction="out" priority="500">'
               '<tcp dstportstart="25" dstportend="25"/></rule></filter>')


# -- the expected verdicts ------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """A battery frame in the terms the filters match on. src_mac/src_ip/arp_mac say whose address
    the frame carries ('own' = the sending guest's, 'spoof', 'zero' = 0.0.0.0, 'gateway' = br0)."""

    kind: str                     # ipv4, arp, rarp, ipv6, 0x0835, vlan
    src_mac: str = "own"
    src_ip: str = "own"
    arp_mac: str = "own"
    eth_dst: str = "unicast"      # unicast (a guest), broadcast, multicast, gateway
    ip_multicast: bool = False
    tcp_dport: int = 0
    rarp_announce: bool = False   # QEMU's shape: request_reverse, sha = tha = own MAC, IPs 0.0.0.0


FRAMES = {
    "ipv4-udp": Frame("ipv4"),
    "ipv4-udp-to-host": Frame("ipv4", eth_dst="gateway"),
    "ipv4-tcp-syn": Frame("ipv4", tcp_dport=8080),
    "ipv4-tcp-port-25": Frame("ipv4", tcp_dport=25),
    "ipv4-icmp-echo": Frame("ipv4"),
    "arp-request": Frame("arp", eth_dst="broadcast"),
    "arp-reply": Frame("arp"),
    "ipv6-udp": Frame("ipv6"),
    "ipv6-icmp-echo": Frame("ipv6"),
    "ipv6-neighbor-solicit": Frame("ipv6", eth_dst="multicast", ip_multicast=True),  # ff02::1:ffXX:XXXX
    "spoofed-src-mac": Frame("ipv4", src_mac="spoof"),
    "spoofed-src-ip": Frame("ipv4", src_ip="spoof"),
    "arp-spoofed-sender-ip": Frame("arp", src_ip="spoof", eth_dst="broadcast"),
    "arp-spoofed-sender-mac": Frame("arp", arp_mac="spoof", eth_dst="broadcast"),
    "arp-gratuitous": Frame("arp", eth_dst="broadcast"),
    "rarp-qemu-announce": Frame("rarp", src_ip="zero", eth_dst="broadcast", rarp_announce=True),
    "rarp-other": Frame("rarp", src_ip="zero", eth_dst="broadcast"),
    "ethertype-0x0835": Frame("0x0835", eth_dst="broadcast"),
    "dhcp-discover": Frame("ipv4", src_ip="zero", eth_dst="broadcast"),
    "dhcp-offer-from-guest": Frame("ipv4", eth_dst="broadcast"),
    "ipv4-broadcast": Frame("ipv4", eth_dst="broadcast"),
    "ipv4-multicast": Frame("ipv4", eth_dst="multicast", ip_multicast=True),
    "vlan-tagged": Frame("vlan"),
    "to-guest-udp": Frame("ipv4"),
    "to-guest-arp-request": Frame("arp", eth_dst="broadcast"),
    "to-guest-udp-from-host": Frame("ipv4", src_mac="gateway"),
    "to-guest-dhcp-offer": Frame("ipv4", src_mac="gateway"),
}


# Building blocks, one per filter file; 'out' = leaving the guest, 'in' = to the guest.
def mac_ok(f):
    """no-mac-spoofing: the guest's frames carry its MAC ($MAC) as source."""
    return f.src_mac == "own"


def ip_ok(f, ips):
    """no-ip-spoofing (IPv4 only): UDP from 0.0.0.0 (every battery 0.0.0.0 frame is UDP) or $IP."""
    return f.kind != "ipv4" or f.src_ip == "zero" or f.src_ip in ips


def arp_ok(f, ips):
    """no-arp-mac-spoofing + no-arp-ip-spoofing (ARP only): sender MAC is $MAC, sender IP in $IP."""
    return f.kind != "arp" or (f.arp_mac == "own" and f.src_ip in ips)


def rarp_out_ok(f):
    """qemu-announce-self-rarp out rule, then no-other-rarp-traffic drops the rest of RARP."""
    return f.kind != "rarp" or (f.rarp_announce and mac_ok(f))


def rarp_in_ok(f):
    """The in rule wants arpsrcmacaddr == arpdstmacaddr == $MAC, and $MAC is the RECEIVING guest's;
    an announce carries its sender's MAC, so between two filtered guests every RARP is dropped.
    libvirt's own src/nwfilter/xml/qemu-announce-self-rarp.xml has the same in rule: this is
    libvirt's meaning, not an engine bug (the host, which has no tap, still sees the announce)."""
    return f.kind != "rarp"


def clean_out(f, ips):
    if not mac_ok(f):
        return False
    return {"ipv4": ip_ok(f, ips), "arp": arp_ok(f, ips), "rarp": rarp_out_ok(f),
            "0x0835": True}.get(f.kind, False)  # no-other-l2-traffic


def clean_in(f):
    return f.kind in ("ipv4", "arp") or (f.kind == "rarp" and rarp_in_ok(f))


def gateway_out(f, ips):
    if not (mac_ok(f) and ip_ok(f, ips) and arp_ok(f, ips)):
        return False
    if f.kind in ("arp", "0x0835"):
        return True
    if f.kind == "rarp":
        return rarp_out_ok(f)
    return f.eth_dst == "gateway"


def gateway_in(f):
    if f.kind == "rarp":
        return rarp_in_ok(f)
    return f.kind == "arp" or f.src_mac == "gateway"


def _always(f, *_):
    return True


# filter bound on both taps -> (passes out of the sender's tap, passes into the receiver's tap)
FILTERS = {
    "clean-traffic": (clean_out, clean_in),
    "clean-traffic+no-spamming": (lambda f, ips: clean_out(f, ips) and f.tcp_dport != 25, clean_in),
    "no-mac-spoofing": (lambda f, ips: mac_ok(f), _always),
    "no-ip-spoofing": (ip_ok, _always),
    "no-arp-spoofing": (arp_ok, _always),
    "hfwk-arp-only": (lambda f, ips: f.kind == "arp", lambda f: f.kind == "arp"),
    "qemu-announce-self": (lambda f, ips: rarp_out_ok(f), rarp_in_ok),
    "no-mac-broadcast": (lambda f, ips: not (f.kind == "ipv4" and f.eth_dst == "broadcast"), _always),
    "no-ip-multicast": (lambda f, ips: not (f.kind == "ipv4" and f.ip_multicast), _always),
    "no-ipv6-multicast": (lambda f, ips: not (f.kind == "ipv6" and f.ip_multicast), _always),
    "no-other-rarp-traffic": (lambda f, ips: f.kind != "rarp", lambda f: f.kind != "rarp"),
    "clean-traffic-gateway": (gateway_out, gateway_in),
}
GUEST_ROLES = ("g0", "g1")


def expected_table(baseline, filter_key, ips=("own",)):
    """Baseline reachability cut by the filter on the sender's tap (out) and the peer's (in)."""
    out_ok, in_ok = FILTERS[filter_key]
    table = {}
    for name, row in baseline.items():
        frame, case = FRAMES[name], CASES_BY_NAME[name]
        leaves = case.sender not in GUEST_ROLES or out_ok(frame, ips)
        table[name] = {"guest": row["guest"] and leaves and in_ok(frame), "host": row["host"] and leaves}
    return table


CASES_BY_NAME = {case.name: case for case in CASES}


# -- reading the host -----------------------------------------------------------------------
def saves(lab):
    """The three dumps of the hypervisor namespace without their timestamp lines."""
    return {tool: without_comments(lab.exec("hv", [TOOLS[tool][0]]).stdout) for tool in TOOL_ORDER}


def owned_chains(dumps):
    """{(tool, table, chain): rules} of every chain of ours in the dumps."""
    found = {}
    for tool, text in dumps.items():
        for (parsed_tool, table), state in parse_save(tool, text).items():
            for name, chain in state.chains.items():
                found[(tool, table, name)] = list(chain.rules)
    return found


def store_files(config_dir):
    files = {}
    for base, _dirs, names in os.walk(config_dir):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, config_dir)] = handle.read()
    return files


def flat(text):
    """Ansible wraps warnings at the terminal width: compare with whitespace collapsed."""
    return " ".join(text.split())


# -- the lab and its history ------------------------------------------------------------------
class Ctx(SimpleNamespace):
    def play(self, name, check=False, diff=False, out=None, **extra):
        """Run playbooks/nic/<name>: proc, the hv recap, and the JSON the play wrote to ``out``."""
        if out:
            extra["nic_out"] = os.path.join(self.workdir, out)
        proc, recap = run_playbook(self.workdir, os.path.join(PLAYBOOKS, name), self.inventory,
                                   check=check, diff=diff, extra_vars=extra)
        self.runs += 1
        with open(os.path.join(self.workdir, "%02d-%s.log" % (self.runs, name)), "w") as handle:
            handle.write(proc.stdout + proc.stderr)  # kept for whoever debugs a failure
        result = None
        if out and os.path.exists(extra["nic_out"]):
            with open(extra["nic_out"], encoding="utf-8") as handle:
                result = json.load(handle)
            os.unlink(extra["nic_out"])
        return SimpleNamespace(proc=proc, recap=recap.get("hv"), result=result,
                               log=proc.stdout + proc.stderr)

    def bindings(self, filter_name, ips=None, **params):
        """One binding per lab guest; IP is the guest's own address unless ``ips`` maps it."""
        return [dict(portdev=g.tap, mac=g.mac, filter=filter_name,
                     parameters=dict(IP=ips(g) if ips else g.ipv4, **params))
                for g in self.lab.guests]

    def snapshot(self):
        return saves(self.lab), store_files(self.store)

    def battery(self):
        return run_battery(self.lab, timeout=0.4)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("nic"))
    with Lab(PREFIX, guests=2) as lab:
        for tool in TOOL_ORDER:
            lab.exec("hv", [TOOLS[tool][1], "--noflush"], input=FOREIGN[tool])
        hv = host_vars(lab.hv, workdir)
        inventory = {
            "lab": {"hv": hv},
            "controller": {"localhost": {"ansible_connection": "local",
                                         "ansible_python_interpreter": sys.executable}},
        }
        context = Ctx(lab=lab, workdir=workdir, inventory=inventory, store=hv["hfw_config_dir"], runs=0)
        context.pristine = saves(lab)
        context.baseline = context.battery()
        yield context


@pytest.fixture(scope="module")
def fresh_check(ctx):
    run = ctx.play("site.yml", check=True, diff=True, nic_bindings=ctx.bindings("clean-traffic"),
                   nic_extra_filters=[ARP_ONLY])
    run.after = saves(ctx.lab)
    run.store_after = store_files(ctx.store)
    return run


@pytest.fixture(scope="module")
def applied(fresh_check, ctx):
    run = ctx.play("site.yml", nic_bindings=ctx.bindings("clean-traffic"), nic_extra_filters=[ARP_ONLY])
    run.dumps = saves(ctx.lab)
    run.table = ctx.battery()
    return run


@pytest.fixture(scope="module")
def rerun(applied, ctx):
    run = ctx.play("site.yml", nic_bindings=ctx.bindings("clean-traffic"), nic_extra_filters=[ARP_ONLY])
    run.dumps = saves(ctx.lab)
    return run


@pytest.fixture(scope="module")
def gathered_rendered(rerun, ctx):
    render_out = os.path.join(ctx.workdir, "rendered.json")
    store_before = store_files(ctx.store)
    run = ctx.play("gather_render.yml", out="gathered.json", nic_bindings=ctx.bindings("clean-traffic"),
                   nic_render_store=ctx.store, nic_render_lock=os.path.join(ctx.workdir, "render.lock"),
                   nic_render_out=render_out)
    run.store_before, run.store_after = store_before, store_files(ctx.store)
    with open(render_out, encoding="utf-8") as handle:
        run.rendered = json.load(handle)
    run.dumps = saves(ctx.lab)
    return run


@pytest.fixture(scope="module")
def ip_list(gathered_rendered, ctx):
    run = ctx.play("bind.yml", out="result.json",
                   nic_bindings=ctx.bindings("clean-traffic", ips=lambda g: [g.ipv4, SPOOF_IPV4]))
    run.table = ctx.battery()
    return run


@pytest.fixture(scope="module")
def no_spamming(ip_list, ctx):
    with open(os.path.join(FILTER_FILES, "clean-traffic.xml"), encoding="utf-8") as handle:
        clean = handle.read()
    assert clean.count("</filter>") == 1
    redefined = clean.replace("</filter>", '  <filterref filter="no-spamming"/>\n</filter>')
    run = ctx.play("define.yml", out="defined.json", nic_filter_xmls=[NO_SPAMMING, redefined])
    run.dumps = saves(ctx.lab)
    run.table = ctx.battery()
    return run


TABLE_FILTERS = ["no-mac-spoofing", "no-ip-spoofing", "no-arp-spoofing", "hfwk-arp-only",
                 "no-ipv6-multicast", "no-other-rarp-traffic",
                 "qemu-announce-self", "no-mac-broadcast", "no-ip-multicast", "clean-traffic-gateway"]


@pytest.fixture(scope="module")
def filter_tables(no_spamming, ctx):
    tables = {}
    for name in TABLE_FILTERS:
        extra = {"GATEWAY_MAC": ctx.lab.bridge_mac} if name == "clean-traffic-gateway" else {}
        run = ctx.play("bind.yml", nic_bindings=ctx.bindings(name, **extra))
        run.table = ctx.battery()
        tables[name] = run
    return tables


@pytest.fixture(scope="module")
def late_device(filter_tables, ctx):
    binding = [dict(portdev=LATE_DEV, mac="52:54:00:00:00:77", filter="clean-traffic",
                    parameters={"IP": "192.168.100.77"})]
    absent = ctx.play("bind.yml", out="result.json", nic_bindings=binding)
    absent.dumps, absent.store_after = ctx.snapshot()
    absent.stored = load_store(ctx.store).bindings
    ctx.lab.exec("hv", ["ip", "link", "add", LATE_DEV, "type", "veth", "peer", "name", "hfwkpeer"])
    present = ctx.play("bind.yml", out="result.json", nic_bindings=binding)
    present.dumps, present.store_after = ctx.snapshot()
    present.stored = load_store(ctx.store).bindings
    return SimpleNamespace(absent=absent, present=present)


BAD_BINDINGS = [
    dict(portdev="vnet0", mac="52:54:00:00:00:00", filter="no-such-filter"),
    dict(portdev="vnet0", mac="52:54:00:00:00:zz", filter="clean-traffic"),
    dict(portdev="vnet+", mac="52:54:00:00:00:00", filter="clean-traffic"),
]


@pytest.fixture(scope="module")
def bad_input(late_device, ctx):
    before = ctx.snapshot()
    run = ctx.play("errors.yml", out="errors.json", nic_bad_bindings=BAD_BINDINGS)
    run.before, run.after = before, ctx.snapshot()
    return run


@pytest.fixture(scope="module")
def removed(bad_input, ctx):
    devices = [g.tap for g in ctx.lab.guests] + [LATE_DEV]
    run = ctx.play("bind.yml", out="result.json", nic_state="absent",
                   nic_bindings=[dict(portdev=dev) for dev in devices])
    run.dumps, run.store_after = ctx.snapshot()
    run.stored = load_store(ctx.store).bindings
    return run


# -- 0. the lab itself ----------------------------------------------------------------------
def test_the_model_covers_every_battery_case_and_the_baseline_lets_spoofing_through(ctx):
    assert set(ctx.baseline) == set(FRAMES)
    # without filters the spoofed frames arrive: every drop later on is our filters' doing
    for name in ("ipv4-udp", "spoofed-src-mac", "spoofed-src-ip", "arp-spoofed-sender-ip",
                 "arp-spoofed-sender-mac", "ipv6-udp", "rarp-qemu-announce", "ipv4-tcp-port-25"):
        assert ctx.baseline[name]["guest"], format_table(ctx.baseline)


# -- 1. check mode on a fresh host ------------------------------------------------------------
def test_check_mode_on_a_fresh_host_plans_changes_and_touches_nothing(fresh_check, ctx):
    assert fresh_check.proc.returncode == 0, fresh_check.log
    assert fresh_check.recap["changed"] > 0 and fresh_check.recap["failed"] == 0
    assert fresh_check.after == ctx.pristine
    assert fresh_check.store_after == {}
    # the filters of the same run are not stored yet: bindings are planned without rules
    assert "check mode: the rules of vnet0 cannot be computed yet" in flat(fresh_check.log)
    assert "+++ after: bindings/vnet1.xml" in fresh_check.log
    assert "+  <filterref filter='clean-traffic'>" in fresh_check.log


# -- 2. apply, idempotence, verdicts ------------------------------------------------------------
def test_apply_changes_then_a_second_run_changes_nothing(applied, rerun):
    assert applied.proc.returncode == 0, applied.log
    assert applied.recap["changed"] > 0
    assert rerun.proc.returncode == 0, rerun.log
    assert rerun.recap == dict(ok=rerun.recap["ok"], changed=0, unreachable=0, failed=0)
    assert rerun.dumps == applied.dumps


def test_clean_traffic_verdict_table(applied, ctx):
    assert applied.table == expected_table(ctx.baseline, "clean-traffic"), format_table(applied.table)


def test_ip_list_allows_every_listed_address(ip_list, ctx):
    assert ip_list.proc.returncode == 0, ip_list.log
    assert ip_list.result["changed"] and ip_list.result["rebuilt_devices"] == ["vnet0", "vnet1"]
    expected = expected_table(ctx.baseline, "clean-traffic", ips=("own", "spoof"))
    assert ip_list.table == expected, format_table(ip_list.table)
    # the second address now passes where the single-IP binding dropped it
    assert ip_list.table["spoofed-src-ip"]["guest"] and ip_list.table["arp-spoofed-sender-ip"]["guest"]


def test_redefining_clean_traffic_with_no_spamming_rebuilds_bound_nics(no_spamming, ctx):
    assert no_spamming.proc.returncode == 0, no_spamming.log
    spam, clean = no_spamming.result
    assert spam["changed"] and spam["rebuilt_devices"] == []
    assert clean["changed"] and clean["rebuilt_devices"] == ["vnet0", "vnet1"]
    expected = expected_table(ctx.baseline, "clean-traffic+no-spamming", ips=("own", "spoof"))
    assert no_spamming.table == expected, format_table(no_spamming.table)
    # SMTP is cut in iptables, the only tool that matches TCP ports; <tcp> is IPv4 only
    ip_chains = {key[2]: rules for key, rules in owned_chains(no_spamming.dumps).items() if key[0] != "eb"}
    assert set(ip_chains) == {"libvirt-host-in", "libvirt-in", "libvirt-in-post", "libvirt-out",
                              "FI-vnet0", "FO-vnet0", "HI-vnet0", "FI-vnet1", "FO-vnet1", "HI-vnet1"}
    assert ip_chains["FI-vnet0"] == ["-p tcp -m tcp --dport 25 -j DROP"]


@pytest.mark.parametrize("name", TABLE_FILTERS)
def test_default_filter_verdict_table(filter_tables, ctx, name):
    run = filter_tables[name]
    assert run.proc.returncode == 0, run.log
    assert run.recap["changed"] == 1
    assert run.table == expected_table(ctx.baseline, name), "%s:\n%s" % (name, format_table(run.table))


# -- 3. rendered and gathered -------------------------------------------------------------------
def test_gathered_lists_bindings_with_their_live_chains(gathered_rendered, rerun, ctx):
    assert gathered_rendered.proc.returncode == 0, gathered_rendered.log
    items = gathered_rendered.result["gathered"]
    assert [(i["portdev"], i["mac"], i["filter"], i["present"]) for i in items] == [
        (g.tap, g.mac, "clean-traffic", True) for g in ctx.lab.guests]
    live = owned_chains(rerun.dumps)
    for item in items:
        mine = {key: rules for key, rules in live.items() if device_of_chain(key[2]) == item["portdev"]}
        assert mine and {"ebtables nat %s" % key[2] for key in mine} == set(item["chains"])
        for key, rules in mine.items():
            counted = item["chains"]["ebtables nat %s" % key[2]]
            assert [r["rule"] for r in counted] == list(rules)
            assert all(isinstance(r["packets"], int) and isinstance(r["bytes"], int) for r in counted)


def test_rendered_payloads_load_the_same_chains_on_an_empty_host(gathered_rendered, rerun, ctx):
    assert gathered_rendered.store_after == gathered_rendered.store_before
    rendered = gathered_rendered.rendered
    assert rendered["changed"] is False and set(rendered["rendered"]) == {"ebtables"}
    scratch = PREFIX + "-scratch"
    subprocess.run(["ip", "netns", "add", scratch], check=True)
    try:
        for label, payload in rendered["rendered"].items():
            tool = {"ebtables": "eb", "iptables": "ip4", "ip6tables": "ip6"}[label]
            subprocess.run(["ip", "netns", "exec", scratch, TOOLS[tool][1], "--noflush"],
                           input=payload, text=True, check=True, capture_output=True)
        dumps = {tool: subprocess.run(["ip", "netns", "exec", scratch, TOOLS[tool][0]], text=True,
                                      check=True, capture_output=True).stdout for tool in TOOL_ORDER}
    finally:
        subprocess.run(["ip", "netns", "delete", scratch], check=False)
    assert owned_chains(dumps) == owned_chains(rerun.dumps)


# -- 4. foreign rules -------------------------------------------------------------------------
def test_foreign_rules_and_policies_survive_apply(applied, no_spamming, ctx):
    for dumps in (applied.dumps, no_spamming.dumps):
        for tool in TOOL_ORDER:
            assert foreign_view(tool, dumps[tool]) == foreign_view(tool, ctx.pristine[tool])
    assert ":FORWARD DROP" in no_spamming.dumps["ip4"] and ":FORWARD DROP" in no_spamming.dumps["ip6"]


def test_removal_restores_the_host_byte_for_byte(removed, ctx):
    assert removed.proc.returncode == 0, removed.log
    assert removed.result["changed"] and removed.result["bindings"] == []
    assert owned_chains(removed.dumps) == {}
    assert removed.dumps == ctx.pristine
    assert removed.stored == {}


# -- 5. a device that does not exist yet ----------------------------------------------------------
def test_binding_for_a_missing_device_is_stored_and_installed_once_it_appears(late_device, ctx):
    absent, present = late_device.absent, late_device.present
    assert absent.proc.returncode == 0, absent.log
    assert "no device %s exists" % LATE_DEV in flat(absent.log)
    assert LATE_DEV in absent.stored
    assert LATE_DEV not in "".join(absent.dumps.values())
    assert present.proc.returncode == 0, present.log
    assert present.result["changed"] and present.result["rebuilt_devices"] == [LATE_DEV]
    # the definitions stay as stored; only the ledger of what was written grows
    assert present.stored == absent.stored
    assert "-A PREROUTING -i %s -j libvirt-I-%s" % (LATE_DEV, LATE_DEV) in present.dumps["eb"]


# -- 6. bad input ----------------------------------------------------------------------------------
def test_bad_bindings_fail_clearly_and_change_nothing(bad_input):
    assert bad_input.proc.returncode == 0, bad_input.log
    assert "ignored=1" in bad_input.log  # one looped task
    assert [r["failed"] for r in bad_input.result] == [True, True, True]
    messages = [r["msg"] for r in bad_input.result]
    assert "uses filter 'no-such-filter', which is not defined on this host" in messages[0]
    assert "mac '52:54:00:00:00:zz' is not a MAC address" in messages[1]
    assert "portdev name 'vnet+' is not valid" in messages[2]
    assert [r["error"] for r in bad_input.result] == ["ResolveError", "FilterXMLError", "DeviceNameError"]
    assert bad_input.after == bad_input.before
