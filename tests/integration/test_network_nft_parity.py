# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Virtual networks under both backends: the same mode checks, the same outcomes.

For each mode the network is applied with the xtables backend (LIBVIRT_* chains), the probes of
test_network_playbooks are run, then the host is switched to nftables (tables ``ip``/``ip6
libvirt_network``; the switch must remove every LIBVIRT_* chain in the same run) and the probes
run again.  The outcomes must be identical and must be what the mode means.

Unlike test_network_playbooks, the admin's firewall here has no FORWARD DROP policy and no INPUT
rejects: in nftables an accept ends only its own base chain, so (as with libvirt >= 10.4) an
admin's drop elsewhere still wins and the network's accepts cannot override it.  The admin's
custom chain, NAT rule and an nft table of their own must stay byte-identical.
"""

import os
import shutil

import pytest

from lab import Lab
from lab.netns import write_sysctl, UPLINK_LAN_IPV4, UPLINK_LAN_IPV6

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import network as _network  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import transitions as _ops  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner
from test_network_playbooks import MODES, V4, V6, host_services, reached, tcp_probe, udp_probe

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("iptables-save"),
                                reason="needs root, nft and iptables")

LAB = dict(name="lab", bridge="br0", ipv4="192.168.100.1/24", ipv6="fd00:100::1/64")
ADMIN_XT = ["-N ADMIN", "-A FORWARD -j ADMIN", "-A ADMIN -s 203.0.113.0/24 -j DROP",
            "-t nat -A POSTROUTING -s 198.51.100.0/24 -o uplink0 -j MASQUERADE"]
ADMIN_NFT = "table inet admin {\n\tchain admin_forward {\n\t\ttype filter hook forward priority 10; policy accept;\n" \
            "\t\tip saddr 203.0.113.0/24 drop\n\t}\n}\n"


def options(mode):
    out = dict(LAB, mode=mode)
    if mode in ("nat", "route"):
        out.update(forward_dev="uplink0", nat_ipv6=mode == "nat")
    return out


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with Lab("hfwhfwt2n%d" % (os.getpid() % 10000), guests=2, lan=True) as lab:
        write_sysctl(lab.hv, "net.ipv4.icmp_ratelimit", 0)
        write_sysctl(lab.hv, "net.ipv6.icmp.ratelimit", 0)
        for rule in ADMIN_XT:
            lab.exec("hv", ["iptables", "-w"] + rule.split())
        lab.exec("hv", ["nft", "-f", "-"], input=ADMIN_NFT)
        lab.workdir = str(tmp_path_factory.mktemp("netnft"))
        lab.runner = HostRunner(prefix=lab.hv_prefix)
        lab.admin = admin_state(lab)
        yield lab


def admin_state(lab):
    xt = [line for line in lab.exec("hv", ["iptables-save"]).stdout.splitlines()
          if "ADMIN" in line or "198.51.100" in line]
    return xt, lab.exec("hv", ["nft", "list", "table", "inet", "admin"]).stdout


def apply(lab, backend, network_options):
    network = _network.network_from_params(network_options)

    def mutate(state):
        return _ops.set_network(state.with_changes(networks={}), network), []
    outcome = _service.reconcile(os.path.join(lab.workdir, "store"), mutate, lab.runner, False,
                                 lock_file=os.path.join(lab.workdir, "lock"), backend=backend)
    assert admin_state(lab) == lab.admin
    return outcome


def libvirt_chains(lab):
    text = lab.exec("hv", ["iptables-save"]).stdout + lab.exec("hv", ["ip6tables-save"]).stdout
    return sorted(set(line.split()[0] for line in text.splitlines() if line.startswith(":LIBVIRT_")))


def nft_tables(lab):
    return lab.exec("hv", ["nft", "list", "tables"]).stdout.split("\n")


def mode_checks(lab):
    """Every probe's outcome, by name: the same probes as test_who_reaches_whom."""
    g0, g1 = lab.guests
    out = {}
    for family, lan_ip, g0_ip, g1_ip in ((V4, UPLINK_LAN_IPV4, g0.ipv4, g1.ipv4),
                                         (V6, UPLINK_LAN_IPV6, g0.ipv6, g1.ipv6)):
        out[(family, "g0->lan udp")] = udp_probe(g0.ns, lab.lan, lan_ip, 41000, family)
        out[(family, "g0->lan tcp")] = reached(tcp_probe(g0.ns, lab.lan, lan_ip, 41001, family))
        out[(family, "lan->g0 udp")] = udp_probe(lab.lan, g0.ns, g0_ip, 41002, family)[0]
        out[(family, "lan->g0 tcp")] = reached(tcp_probe(lab.lan, g0.ns, g0_ip, 41003, family))
        out[(family, "g0->g1 udp")] = udp_probe(g0.ns, g1.ns, g1_ip, 41004, family)
        out[(family, "g1->g0 tcp")] = tcp_probe(g1.ns, g0.ns, g0_ip, 41005, family)
    out["host"] = host_services(lab, g0)
    return out


@pytest.mark.parametrize("mode", sorted(MODES))
def test_both_backends_give_the_same_outcomes(host, mode):
    apply(host, "xtables", options(mode))
    assert libvirt_chains(host) and "table ip libvirt_network" not in nft_tables(host)
    xt = mode_checks(host)
    lan_source, lan_to_guest = MODES[mode]
    expected = ("delivered", lan_source[V4]) if lan_source else ("refused", None)
    assert xt[(V4, "g0->lan udp")] == expected and xt[(V4, "lan->g0 udp")] == lan_to_guest
    outcome = apply(host, "nftables", options(mode))
    assert outcome.rules_changed
    # the switch removed the LIBVIRT_* chains in the same run
    assert libvirt_chains(host) == []
    assert {"table ip libvirt_network", "table ip6 libvirt_network"} <= set(nft_tables(host))
    nft = mode_checks(host)
    assert nft == xt, "\n".join("%s: xtables %s, nftables %s" % (k, xt[k], nft[k]) for k in xt if xt[k] != nft[k])
    assert not apply(host, "nftables", options(mode)).changed


def test_open_mode_dhcp_warning_and_switch_back(host):
    outcome = apply(host, "nftables", dict(options("nat"), dhcp=True))
    # this kernel lacks CONFIG_NET_ACT_CSUM: a warning, never a failure
    assert any("CONFIG_NET_ACT_CSUM" in w for w in outcome.warnings)
    apply(host, "nftables", options("open"))
    # an open network needs no rule, so no table either (libvirt creates none)
    assert "table ip libvirt_network" not in nft_tables(host)
    apply(host, "xtables", options("isolated"))
    assert "table ip libvirt_network" not in nft_tables(host) and libvirt_chains(host)
    assert mode_checks(host)[(V4, "g0->lan udp")] == ("refused", None)
