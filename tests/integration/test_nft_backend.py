"""The nftables backend against real netfilter: same verdicts as xtables, shared rules, switching.

One lab; for each filter the xtables backend is applied and the packet battery run, then the
host is switched to nftables (which must remove every xtables NIC chain in the same run) and the
battery run again: the two verdict tables must be identical and must differ from the unfiltered
baseline (so the filters did something).  Expected verdicts themselves are checked by
test_nic_filter_playbooks.py for xtables; parity carries them over to nftables.
"""

import glob
import json
import os
import shutil
import subprocess

import pytest

from lab import Lab, format_table, run_battery
from lab.netns import write_sysctl

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import actions as _actions  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import compile_l2 as _compile_nft  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import converge as _nft  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import tables as _tables  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables.writer import render_table  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import transitions as _ops  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import resolve as _resolve  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ResolveError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import Binding
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner
from ansible_collections.hypervisor.firewall.tests.unit.plugins.module_utils.test_compile_nft import GOLDEN

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
                                reason="needs root, nft and iproute2")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTER_FILES = os.path.join(ROOT, "roles", "default_filters", "files")
PREFIX = "hfwt%d" % os.getpid()
PARITY_FILTERS = ["clean-traffic", "no-mac-spoofing", "no-ip-spoofing", "no-arp-spoofing",
                  "qemu-announce-self", "no-mac-broadcast", "no-ip-multicast", "clean-traffic-gateway",
                  "allow-dhcp", "allow-dhcpv6", "no-ipv6-spoofing", "no-ipv6-multicast", "no-other-l2-traffic"]

# filters that only accept, or drop only frames the battery does not send (spoofed IPv6)
NO_BATTERY_EFFECT = ("allow-dhcp", "allow-dhcpv6", "no-ipv6-spoofing")


def _default_filters():
    out = []
    for path in sorted(glob.glob(os.path.join(FILTER_FILES, "*.xml"))):
        with open(path, encoding="utf-8") as handle:
            parsed = _filterxml.parse_filter_xml(handle.read())
        out.append(parsed[0] if isinstance(parsed, tuple) else parsed)
    return out


class Host:
    """The lab's hypervisor driven through _service.reconcile, as the modules drive it."""

    def __init__(self, lab, workdir):
        self.lab = lab
        self.config_dir = os.path.join(workdir, "store")
        self.lock = os.path.join(workdir, "lock")
        self.runner = HostRunner(prefix=lab.hv_prefix)
        self.filters = _default_filters()

    def bindings(self, name, ips=None):
        out = []
        for guest in self.lab.guests:
            params = [("IP", ip) for ip in (ips(guest) if ips else [guest.ipv4])]
            params += [("IPV6", guest.ipv6), ("GATEWAY_MAC", self.lab.bridge_mac), ("DHCPSERVER", "192.168.100.1")]
            out.append(Binding(portdev=guest.tap, mac=guest.mac, filter=name, parameters=tuple(params)))
        return out

    def bind(self, name, backend, ips=None, check_mode=False, fallback=None):
        def mutate(state):
            for flt in self.filters:
                state = _ops.define_filter(state, flt)
            return _ops.set_bindings(state, self.bindings(name, ips), exclusive=True), []
        return _service.reconcile(self.config_dir, mutate, self.runner, check_mode, lock_file=self.lock,
                                  backend=backend, fallback=fallback)

    def add_filter(self, xml):
        flt = _filterxml.parse_filter_xml(xml)
        flt = flt[0] if isinstance(flt, tuple) else flt
        if flt.name not in {f.name for f in self.filters}:
            self.filters.append(flt)

    def nft_tables(self):
        return self.lab.exec("hv", ["nft", "list", "tables"]).stdout

    def xt_nic_chains(self):
        text = "".join(self.lab.exec("hv", [tool]).stdout
                       for tool in ("ebtables-save", "iptables-save", "ip6tables-save"))
        return [line for line in text.splitlines() if line.startswith(":libvirt-")
                or (line[:2] in (":F", ":H") and line.split()[0] != ":FORWARD")]


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with Lab(PREFIX, guests=2) as lab:
        # reject probes back to back: the host's ICMP rate limit would turn 'refused' into 'lost'
        write_sysctl(lab.hv, "net.ipv4.icmp_ratelimit", 0)
        write_sysctl(lab.hv, "net.ipv6.icmp.ratelimit", 0)
        host = Host(lab, str(tmp_path_factory.mktemp("nft")))
        host.baseline = run_battery(lab, timeout=0.4)
        yield host


@pytest.mark.parametrize("name", PARITY_FILTERS)
def test_nftables_gives_the_same_verdicts_as_xtables(host, name):
    host.bind(name, "xtables")
    assert host.xt_nic_chains() and "hfw_nwfilter" not in host.nft_tables()
    xt = run_battery(host.lab, timeout=0.4)
    outcome = host.bind(name, "nftables")
    assert outcome.rules_changed
    # the switch removed every xtables NIC chain in the same run
    assert host.xt_nic_chains() == [] and "bridge hfw_nwfilter" in host.nft_tables()
    nft = run_battery(host.lab, timeout=0.4)
    assert nft == xt, "xtables:\n%snftables:\n%s" % (format_table(xt), format_table(nft))
    assert nft != host.baseline or name in NO_BATTERY_EFFECT


def test_ip_list_parity_and_rerun_changes_nothing(host):
    def ips(guest):
        return [guest.ipv4, "192.168.100.99"]
    host.bind("clean-traffic", "xtables", ips=ips)
    xt = run_battery(host.lab, timeout=0.4)
    host.bind("clean-traffic", "nftables", ips=ips)
    nft = run_battery(host.lab, timeout=0.4)
    assert nft == xt, "xtables:\n%snftables:\n%s" % (format_table(xt), format_table(nft))
    assert not host.bind("clean-traffic", "nftables", ips=ips).changed
    # the host default is now nftables: a call without backend keeps it
    assert not host.bind("clean-traffic", None, ips=ips).changed


def test_rules_are_shared_and_drift_is_healed(host):
    host.bind("clean-traffic", "nftables")
    text = host.lab.exec("hv", ["nft", "list", "table", "bridge", "hfw_nwfilter"]).stdout
    # one chain per filter tree and direction, not per NIC: the guests' taps appear only in sets/maps
    for guest in host.lab.guests:
        assert "chain" not in "".join(line for line in text.splitlines() if guest.tap in line)
    assert text.count("\tchain ") == len(set(line for line in text.splitlines() if "\tchain " in line))
    host.lab.exec("hv", ["nft", "flush", "map", "bridge", "hfw_nwfilter", "from_guest"])
    check = host.bind("clean-traffic", "nftables", check_mode=True)
    assert check.changed and any(d.get("before_header", "").startswith("nft") for d in check.diff)
    assert host.bind("clean-traffic", "nftables").changed
    assert not host.bind("clean-traffic", "nftables").changed


GARP_GUARD = ("<filter name='hfw-garp-guard'><filterref filter='no-mac-spoofing'/>"
              "<rule action='drop' direction='out'><arp gratuitous='true'/></rule></filter>")


def test_fallback_filters_with_xtables_while_nftables_cannot_and_warns_every_run(host):
    host.add_filter(GARP_GUARD)
    host.bind("clean-traffic", "nftables")
    with pytest.raises(ResolveError):  # gratuitous ARP on any address: nftables cannot express it
        host.bind("hfw-garp-guard", "nftables")
    assert "bridge hfw_nwfilter" in host.nft_tables()  # nothing changed
    outcome = host.bind("hfw-garp-guard", "nftables", fallback=True)
    assert [w for w in outcome.warnings if w.startswith("backend nftables cannot filter this host")]
    assert host.xt_nic_chains() and "hfw_nwfilter" not in host.nft_tables()
    with open(os.path.join(host.config_dir, "backend"), encoding="utf-8") as handle:
        assert handle.read() == "nftables\nfallback\n"
    again = host.bind("hfw-garp-guard", None)
    assert not again.changed and any("cannot filter this host" in w for w in again.warnings)
    # the cause gone, the stored nftables takes over again with no option given
    fixed = host.bind("clean-traffic", None)
    assert fixed.rules_changed and not any("cannot filter this host" in w for w in fixed.warnings)
    assert host.xt_nic_chains() == [] and "bridge hfw_nwfilter" in host.nft_tables()
    host.bind("clean-traffic", "nftables", fallback=False)


def test_switching_back_to_xtables_removes_the_nft_table(host):
    host.bind("clean-traffic", "nftables")
    host.bind("clean-traffic", "xtables")
    assert "hfw_nwfilter" not in host.nft_tables() and host.xt_nic_chains()


@pytest.fixture(scope="module")
def scratch():
    name = PREFIX + "-rt"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield HostRunner(prefix=["ip", "netns", "exec", name])
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden_tables_load_and_read_back_as_written(scratch, case):
    # the unit test proves these tables render to the golden files under fixtures/nft
    tables = _compile_nft.compile_nics(GOLDEN[case]()).tables
    key = _tables.L2
    result = _nft.converge({key: tables[key]}, scratch)  # raises when read back differs
    assert result.changed
    assert not _nft.converge({key: tables[key]}, scratch).changed


def test_probe_passes_on_this_kernel_and_foreign_tables_are_never_touched(scratch):
    _nft.probe(scratch)
    scratch.nft(["-f", "-"], data="table bridge filter {\n\tchain forward {\n\t\ttype filter hook forward priority 0; "
                                  "policy drop;\n\t}\n}\n")
    _nft.converge({}, scratch)
    rc, out, _err = scratch.nft(["list", "tables"])
    assert rc == 0 and out.strip() == "table bridge filter"


PLAY = """
- hosts: hv
  gather_facts: false
  tasks:
    - hypervisor.firewall.guest_nic_filter:
        config_dir: "{{ hfw_config_dir }}"
        lock_file: "{{ hfw_lock_file }}"
        backend: nftables
        state: "{{ nic_state }}"
        bindings: "{{ nic_bindings }}"
      register: nic_result
    - ansible.builtin.copy:
        content: "{{ nic_result | to_nice_json }}"
        dest: "{{ nic_out }}"
        mode: "0600"
      check_mode: false
      diff: false
"""


def test_module_option_check_apply_rerun_and_rendered(host, tmp_path):
    from ansible_run import host_vars, run_playbook
    host.bind("clean-traffic", "xtables")
    workdir = str(tmp_path)
    hv = dict(host_vars(host.lab.hv, workdir), hfw_config_dir=host.config_dir, hfw_lock_file=host.lock)
    inventory = {"lab": {"hv": hv}}
    bindings = [dict(portdev=g.tap, mac=g.mac, filter="clean-traffic", parameters={"IP": g.ipv4})
                for g in host.lab.guests]
    out = os.path.join(workdir, "out.json")

    def play(state="present", check=False):
        proc, recap = run_playbook(workdir, PLAY, inventory, check=check, diff=check,
                                   extra_vars=dict(nic_state=state, nic_bindings=bindings, nic_out=out))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        with open(out, encoding="utf-8") as handle:
            return recap["hv"], json.load(handle)

    recap, result = play(check=True)
    assert recap["failed"] == 0 and result["changed"] and "bridge hfw_nwfilter" not in host.nft_tables()
    assert any(d.get("after_header", "").startswith("nft bridge hfw_nwfilter") for d in result["diff"])
    recap, result = play()
    assert result["changed"] and "bridge hfw_nwfilter" in host.nft_tables() and host.xt_nic_chains() == []
    recap, result = play()
    assert recap["failed"] == 0 and not result["changed"]
    _recap, result = play(state="rendered")
    assert result["rendered"]["nft"].startswith("table bridge hfw_nwfilter {")
    assert result["rendered"]["nft_notes"][0].startswith("nftables: 2 NICs")


# ------------------------------------------------------------------------------ layer 3/4 rules

L3_FILTERS = {
    # clean-traffic plus libvirt's no-spamming example: no outgoing SMTP
    "hfw-no-smtp": "<filter name='hfw-no-smtp'><filterref filter='clean-traffic'/>"
                   "<rule action='drop' direction='out' priority='400'><tcp dstportstart='25'/></rule></filter>",
    # only SSH comes in; the guest may start anything; the rest is rejected
    # the same with the guest's own address ($IP): still one shared chain per kind (address sets)
    "hfw-ip-ssh-in": "<filter name='hfw-ip-ssh-in'>"
                     "<rule action='accept' direction='in'><tcp dstipaddr='$IP' dstportstart='22'/></rule>"
                     "<rule action='accept' direction='out'><all srcipaddr='$IP'/></rule>"
                     "<rule action='reject' direction='inout'><all/></rule></filter>",
    "hfw-ssh-in": "<filter name='hfw-ssh-in'>"
                  "<rule action='accept' direction='in'><tcp dstportstart='22'/></rule>"
                  "<rule action='accept' direction='out'><all/></rule>"
                  "<rule action='reject' direction='inout'><all/></rule></filter>",
}


def l3_probes(lab):
    """TCP/UDP outcomes between the two guests and to the host, by (source, destination, port)."""
    from test_network_playbooks import V4, tcp_probe, udp_probe
    g0, g1 = lab.guests
    out = {}
    for src, dst, dst_ip in ((g0, g1, g1.ipv4), (g1, g0, g0.ipv4), (g0, None, lab.host_ipv4)):
        dst_ns = dst.ns if dst else lab.hv
        label = (src.ns[-2:], dst.ns[-2:] if dst else "hv")
        for port in (22, 25, 80):
            out[label + ("tcp", port)] = tcp_probe(src.ns, dst_ns, dst_ip, port, V4)[0]
        out[label + ("udp", 53)] = udp_probe(src.ns, dst_ns, dst_ip, 53, V4)[0]
    return out


@pytest.mark.parametrize("name", sorted(L3_FILTERS))
def test_layer34_rules_give_the_same_outcomes(host, name):
    if name not in {f.name for f in host.filters}:
        host.filters += [_filterxml.parse_filter_xml(xml) for xml in L3_FILTERS.values()]
        host.filters = [f[0] if isinstance(f, tuple) else f for f in host.filters]
    host.bind(name, "xtables")
    xt = l3_probes(host.lab)
    host.bind(name, "nftables")
    assert host.xt_nic_chains() == [] and "inet hfw_nwfilter" in host.nft_tables()
    nft = l3_probes(host.lab)
    assert nft == xt, "\n".join("%s: xtables %s, nftables %s" % (k, xt[k], nft[k]) for k in xt if xt[k] != nft[k])
    # the filters did something: the outcomes are the filter's, not an open bridge's
    if name == "hfw-no-smtp":
        assert nft[("g0", "g1", "tcp", 25)] == "lost" and nft[("g0", "g1", "tcp", 80)] == "delivered"
    else:
        assert nft[("g1", "g0", "tcp", 22)] == "delivered" and nft[("g1", "g0", "tcp", 80)] == "refused"
        assert nft[("g0", "hv", "udp", 53)] == "delivered"  # the guest may start anything
    inet = host.lab.exec("hv", ["nft", "list", "table", "inet", "hfw_nwfilter"]).stdout
    assert inet.count("\tchain FI-") == 1 and inet.count("\tchain FO-") == 1  # shared by both guests
    assert not host.bind(name, "nftables").changed


def test_layer34_address_sets_with_literals_load_and_read_back(scratch):
    flt = _filterxml.parse_filter_xml(
        "<filter name='a'><rule action='accept' direction='in'><udp srcipaddr='10.0.0.1' dstipaddr='$IP'/></rule>"
        "<rule action='accept' direction='out'><tcp-ipv6 srcipaddr='$IPV6' dstportstart='80'/></rule></filter>")
    flt = flt[0] if isinstance(flt, tuple) else flt
    insts = [_resolve.instantiate(Binding(portdev="vnet%d" % i, mac="52:54:00:00:00:0%d" % i, filter="a",
                                          parameters=(("IP", "192.168.1.%d" % i), ("IPV6", "fd00::%d" % i))),
                                  {"a": flt}) for i in range(1, 4)]
    tables = _compile_nft.compile_nics(insts).tables
    assert "ip saddr 10.0.0.1 meta mark . ip daddr @" in render_table(tables[("inet", "hfw_nwfilter")])
    assert _nft.converge(tables, scratch).changed  # raises when read back differs
    assert not _nft.converge(tables, scratch).changed
    _nft.converge({}, scratch)


def test_gathered_lists_each_nics_shared_chains_and_its_own_set_elements(host):
    host.add_filter(L3_FILTERS["hfw-ip-ssh-in"])
    host.bind("hfw-ip-ssh-in", "nftables")
    params = dict(config_dir=host.config_dir, lock_file=host.lock, lock_timeout=5, state="gathered")
    gathered = _actions.guest_nic_filter(params, check_mode=False, runner=host.runner)["gathered"]
    g0, g1 = host.lab.guests
    by_tap = {item["tap"]: item for item in gathered}
    labels = sorted(by_tap[g0.tap]["chains"])
    # one FI, FO and HI chain, shared: both NICs list the same chains ...
    assert [label.split()[3][:3] for label in labels if label.startswith("nft inet")] == ["FI-", "FO-", "HI-"]
    assert labels == sorted(by_tap[g1.tap]["chains"])
    assert all("packets" not in rule for rules in by_tap[g0.tap]["chains"].values() for rule in rules)
    # ... and each its own addresses: the set elements keyed by its mark
    assert sorted({v for values in by_tap[g0.tap]["sets"].values() for v in values}) == [g0.ipv4]
    assert sorted({v for values in by_tap[g1.tap]["sets"].values() for v in values}) == [g1.ipv4]
