"""The language-feature battery (tests/lab/features.py) under both backends, with real frames.

One lab for the file; each feature filter is bound to guest g0 with backend xtables, its probes
are sent, then the host is switched to nftables and the probes are sent again. Both verdict
tables must equal the verdicts the feature's probes expect (read off the filter, never copied
from a run), so they also equal each other, except where ebtables itself misreads the frame
(XT_DIVERGENCES, pinned) and where nftables has no form for the feature (NFT_NO_FORM: the run
is refused with the reason).

Cost: one lab (three namespaces), per feature two applies and one or two 0.3 s windows per
backend; the whole file takes about a minute on two cores.
"""

import os
import shutil
import socket

import pytest

from lab import Lab
from lab.features import FEATURES, expected, format_verdicts, run_feature
from lab.netns import in_netns, tcp_listener, write_sysctl

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language import filter_xml as _filterxml  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host import transitions as _ops  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine import service as _service  # noqa: E402
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.errors import ResolveError
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.language.model import Binding
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.host.runner import HostRunner

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
                                reason="needs root, nft and iproute2")

PREFIX = "hfwfb%d" % os.getpid()
BACKENDS = ("xtables", "nftables")

# What nftables cannot express at all, by feature: the nftables run must refuse it, naming why.
NFT_NO_FORM = {
    # nft 1.0.6 cannot compare two fields of one packet (sender and target address)
    "hfwf-arp-gratuitous": "ARP 'gratuitous' without a positive arpsrcipaddr or arpdstipaddr",
}

# Where ebtables itself does not do what the filter says, pinned so a change shows. The
# kernel's ebt_stp reads the BPDU one byte early (its header has a one-byte protocol id): the
# version byte is taken for the type (so --stp-type tcn never matches, config matches every
# version-0 BPDU) and the configuration fields are shifted by one byte.
XT_DIVERGENCES = {
    "hfwf-stp": {"tcn-bpdu": True, "config-bpdu": False, "config-root-4097": False},
}


def _parse(xml):
    flt = _filterxml.parse_filter_xml(xml)
    return flt[0] if isinstance(flt, tuple) else flt


class Host:
    def __init__(self, lab, workdir):
        self.lab = lab
        self.config_dir = os.path.join(workdir, "store")
        self.lock = os.path.join(workdir, "lock")
        self.runner = HostRunner(prefix=lab.hv_prefix)

    def bind(self, feat, backend):
        guest = self.lab.guests[0]
        params = (("IP", guest.ipv4), ("IPV6", guest.ipv6)) + feat.parameters
        binding = Binding(portdev=guest.tap, mac=guest.mac, filter=feat.name, parameters=params)
        filters = [_parse(xml) for xml in feat.filters]

        def mutate(state):
            for flt in filters:
                state = _ops.define_filter(state, flt)
            return _ops.set_bindings(state, [binding], exclusive=True), []
        return _service.reconcile(self.config_dir, mutate, self.runner, False, lock_file=self.lock,
                                  backend=backend)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with Lab(PREFIX, guests=2) as lab:
        write_sysctl(lab.hv, "net.ipv4.icmp_ratelimit", 0)
        yield Host(lab, str(tmp_path_factory.mktemp("features")))


def test_every_feature_has_passing_and_dropped_probes():
    for feat in FEATURES:
        verdicts = [v for p in feat.probes for v in (p.expect if p.connect else (p.expect,))]
        assert True in verdicts and False in verdicts, feat.name
        assert len({p.name for p in feat.probes}) == len(feat.probes), feat.name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", [f.name for f in FEATURES])
def test_feature_verdicts(host, name, backend):
    feat = next(f for f in FEATURES if f.name == name)
    want = expected(feat)
    if backend == "xtables":
        want.update(XT_DIVERGENCES.get(name, {}))
    if backend == "nftables" and name in NFT_NO_FORM:
        with pytest.raises(ResolveError, match="no nftables form for") as caught:
            host.bind(feat, backend)
        assert NFT_NO_FORM[name] in str(caught.value)
        return
    _apply_and_check(host, feat, backend, want)


def _apply_and_check(host, feat, backend, want):
    host.bind(feat, backend)
    got = run_feature(host.lab, feat)
    assert got == want, "%s with %s:\n%s" % (feat.name, backend, format_verdicts(feat, got))
    assert not host.bind(feat, backend).changed


def test_live_connlimit_counts_are_not_drift(host):
    """The kernel lists a connlimit set's counted connections as elements; a re-run while a
    connection is open must still find nothing to change (and must not reset the counts)."""
    feat = next(f for f in FEATURES if f.name == "hfwf-connlimit")
    host.bind(feat, "nftables")
    g0, g1 = host.lab.guests
    listener = tcp_listener(host.lab.ns("g1"), 41600)
    with in_netns(g0.ns):
        conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        conn.settimeout(2)
        conn.connect((g1.ipv4, 41600))
        listed = host.lab.exec("hv", ["nft", "list", "table", "inet", "hfw_nwfilter"]).stdout
        assert "%s ct count over 1" % g0.ipv4 in listed  # the open connection is counted
        assert not host.bind(feat, "nftables").changed
    finally:
        conn.close()
        listener.close()
