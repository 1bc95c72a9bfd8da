# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A libvirt virtual network as the firewall needs it: the model, its options and its XML, pure.

Both backends compile the same Network (xtables/networks.py the LIBVIRT_* chains,
nftables/networks.py the ``libvirt_network`` tables); the store keeps it as libvirt XML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from ..errors import DeviceNameError, FilterXMLError
from .devices import check_device

try:
    import netaddr
except ImportError:  # the modules report the missing library; importing must not fail
    netaddr = None

try:
    from lxml import etree
except ImportError:
    etree = None

MODES = ("isolated", "nat", "route", "open")
DEFAULT_NAT_PORTS = (1024, 65535)
# the model keeps TFTP as on/off; this is the root written to XML (dnsmasq's customary one)
TFTP_ROOT = "/var/lib/tftpboot"
MAX_XML = 256 * 1024

# never masqueraded: link-local multicast (both families) and the limited broadcast (IPv4)
MULTICAST = {"ip4": "224.0.0.0/24", "ip6": "ff02::/16"}
BROADCAST = "255.255.255.255/32"
_NAME_RE = re.compile(r"^[^/\x00-\x1f\x7f]{1,255}\Z")
_OPTIONS = ("name", "bridge", "mode", "ipv4", "ipv6", "forward_dev", "dhcp", "dns", "tftp",
            "nat_ports", "nat_address", "nat_ipv6")
_BOOL_DEFAULTS = {"dhcp": False, "dns": True, "tftp": False, "nat_ipv6": False}


@dataclass(frozen=True)
class Network:
    """One virtual network.  ``ipv4``/``ipv6`` are the bridge's addresses with prefix
    (``192.168.122.1/24``), in document order (libvirt builds forwarding and NAT rules for each);
    ``dhcp`` and ``tftp`` are served on one IPv4 address, as libvirt allows.  ``dhcp`` only adds
    libvirt's checksum fix; like libvirt, the host DHCP/DNS accepts stay whatever ``dhcp``/``dns`` say."""

    name: str
    bridge: str
    mode: str = "nat"
    ipv4: Tuple[str, ...] = ()
    ipv6: Tuple[str, ...] = ()
    forward_dev: Optional[str] = None
    dhcp: bool = False
    dns: bool = True
    tftp: bool = False
    nat_ports: Tuple[int, int] = DEFAULT_NAT_PORTS
    nat_address: Optional[Tuple[str, str]] = None
    nat_ipv6: bool = False


# --------------------------------------------------------------------------- validation

def _fail(name, option, problem, fix, **context):
    raise FilterXMLError("network %r: option '%s' %s: %s" % (name, option, problem, fix),
                         network=name, option=option, **context)


def need_netaddr():
    if netaddr is None:
        raise FilterXMLError("the Python library 'netaddr' is required for virtual networks: install it "
                             "(pip install netaddr or the python3-netaddr package)")


def _address(name, option, value, version):
    """Canonical 'address/prefix' of the bridge, of the given IP version."""
    if not isinstance(value, str) or "/" not in value:
        _fail(name, option, "is %r, not an address with a prefix" % (value,),
              "write it like %s" % ("192.168.122.1/24" if version == 4 else "2001:db8:ca2:2::1/64"))
    try:
        net = netaddr.IPNetwork(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        net = None
    if net is None or net.version != version:
        _fail(name, option, "is %r, not an IPv%d address with a prefix" % (value, version),
              "give an IPv%d address/prefix here" % version)
    # the bridge needs a host address; IPv6 has no broadcast, and /31, /32, /127, /128 no spare ones
    unusable = (net.network, net.broadcast) if version == 4 else (net.network,)
    if net.ip in unusable and net.prefixlen < (31 if version == 4 else 127):
        what = "network" if net.ip == net.network else "broadcast"
        _fail(name, option, "is %r, the subnet's %s address" % (value, what),
              "give the bridge's own host address, e.g. the first host of the subnet")
    return "%s/%d" % (net.ip, net.prefixlen)


def _pair(name, option, value):
    if isinstance(value, dict) and set(value) == {"start", "end"}:
        return value["start"], value["end"]
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return value[0], value[1]
    _fail(name, option, "is %r" % (value,), "give [start, end] or {start: ..., end: ...}")


def _nat_ports(name, value):
    start, end = _pair(name, "nat_ports", value)
    try:
        start, end = int(start), int(end)
    except (TypeError, ValueError):
        _fail(name, "nat_ports", "is %r, not two port numbers" % (value,), "give [1024, 65535]")
    if not 1 <= start < end <= 65535:
        _fail(name, "nat_ports", "is %d-%d" % (start, end), "use 1 <= start < end <= 65535 (default 1024-65535)")
    return start, end


def _nat_address(name, value):
    start, end = _pair(name, "nat_address", value)
    try:
        first, last = netaddr.IPAddress(start), netaddr.IPAddress(end)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        _fail(name, "nat_address", "is %r, not two IPv4 addresses" % (value,), "give [start, end] IPv4 addresses")
    if first.version != 4 or last.version != 4 or first > last:
        _fail(name, "nat_address", "is %s-%s" % (start, end),
              "give two IPv4 addresses with start <= end (libvirt SNATs IPv4 only)")
    return str(first), str(last)


def _device(name, option, value):
    try:
        return check_device(value, option)
    except DeviceNameError as exc:
        _fail(name, option, "is invalid (%s)" % exc.msg, "rename the device")


def _flag(name, option, value):
    if value is None:
        return _BOOL_DEFAULTS[option]
    if not isinstance(value, bool):
        _fail(name, option, "is %r, not a boolean" % (value,), "use true or false")
    return value


def _check_mode_options(net):
    """Options that only make sense together (libvirt refuses or ignores the rest)."""
    if net.mode in ("nat", "route") and not (net.ipv4 or net.ipv6):
        _fail(net.name, "mode", "is %r without an address" % net.mode, "set ipv4 and/or ipv6")
    if net.forward_dev and net.mode not in ("nat", "route"):
        _fail(net.name, "forward_dev", "is set for mode %r" % net.mode, "use it with mode nat or route only")
    natty = net.nat_ipv6 or net.nat_address or net.nat_ports != DEFAULT_NAT_PORTS
    if natty and net.mode != "nat":
        _fail(net.name, "mode", "is %r but NAT options are set" % net.mode,
              "drop nat_ports/nat_address/nat_ipv6 or use mode nat")
    if net.nat_ipv6 and not net.ipv6:
        _fail(net.name, "nat_ipv6", "is set without an IPv6 address", "set ipv6 or drop nat_ipv6")
    for option in ("dhcp", "tftp"):
        if getattr(net, option) and not net.ipv4:
            _fail(net.name, option, "is set without an IPv4 address", "set ipv4 or drop %s" % option)
    if net.dhcp and _dhcp_address(net) is None:
        _fail(net.name, "dhcp", "needs room for a DHCP range", "use an IPv4 prefix of /30 or shorter")


def _dhcp_address(net):
    """The IPv4 address DHCP is served on: the first with room for a range (None if none has)."""
    return next((address for address in net.ipv4 if int(address.split("/")[1]) <= 30), None)


def _addresses(name, option, value, version):
    """Canonical addresses of one family: one 'address/prefix' or a list of them, in order."""
    if value is None:
        return ()
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    out = []
    for number, item in enumerate(values):
        address = _address(name, option if len(values) == 1 else "%s[%d]" % (option, number), item, version)
        if address in out:
            _fail(name, option, "lists %s twice" % address, "give each address once")
        out.append(address)
    return tuple(out)


def network_from_params(params):
    """Validated Network from a dict of module options (None means the default)."""
    need_netaddr()
    name = params.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name) or name != name.strip():
        raise FilterXMLError("network name %r is not valid: give 1-255 characters without '/', control "
                             "characters or surrounding spaces" % (name,), option="name")
    unknown = sorted(set(params) - set(_OPTIONS))
    if unknown:
        _fail(name, unknown[0], "is unknown", "use only %s" % ", ".join(_OPTIONS))
    mode = params.get("mode") or "nat"
    if mode not in MODES:
        _fail(name, "mode", "is %r" % (mode,), "use one of %s" % ", ".join(MODES))
    net = Network(
        name=name,
        bridge=_device(name, "bridge", params.get("bridge")),
        mode=mode,
        ipv4=_addresses(name, "ipv4", params.get("ipv4"), 4),
        ipv6=_addresses(name, "ipv6", params.get("ipv6"), 6),
        forward_dev=None if params.get("forward_dev") is None else _device(name, "forward_dev", params["forward_dev"]),
        nat_ports=DEFAULT_NAT_PORTS if params.get("nat_ports") is None else _nat_ports(name, params["nat_ports"]),
        nat_address=None if params.get("nat_address") is None else _nat_address(name, params["nat_address"]),
        **{opt: _flag(name, opt, params.get(opt)) for opt in _BOOL_DEFAULTS},
    )
    _check_mode_options(net)
    return net


# --------------------------------------------------------------------------- network XML

def _xml_error(msg, **context):
    raise FilterXMLError("network XML: %s" % msg, **context)


def _parse_root(text):
    """Parse untrusted XML: no DTD, no entities, no network, bounded size."""
    if etree is None:
        _xml_error("the Python library 'lxml' is required: install it (python3-lxml)")
    if isinstance(text, str):
        text = text.encode("utf-8")
    if len(text) > MAX_XML:
        _xml_error("document is %d bytes, more than %d: give one <network> definition" % (len(text), MAX_XML))
    if b"<!DOCTYPE" in text or b"<!ENTITY" in text:
        _xml_error("DOCTYPE and entity declarations are not accepted: remove them")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(text, parser)
    except etree.XMLSyntaxError as exc:
        _xml_error("not well-formed (%s): fix the document" % exc)
    if root.tag != "network":
        _xml_error("root element is <%s>: give a <network> document" % root.tag)
    return root


def _ip_params(name, root, params):
    params.update(ipv4=[], ipv6=[], dhcp=False, tftp=False)
    for ip in root.findall("ip"):
        family = ip.get("family", "ipv4")
        if family not in ("ipv4", "ipv6"):
            _xml_error("network %r: <ip family=%r>: use ipv4 or ipv6" % (name, family), network=name)
        params[family].append(_ip_address(name, ip, family))
        if family == "ipv4":
            dhcp = ip.find("dhcp")
            # libvirt serves DHCP (and fixes checksums) only with ranges or hosts
            serves = dhcp is not None and (dhcp.find("range") is not None or dhcp.find("host") is not None)
            if serves and params["dhcp"]:
                _xml_error("network %r has DHCP ranges or hosts on more than one IPv4 <ip>: keep them on one "
                           "address (libvirt serves DHCP on a single IPv4 address)" % name, network=name)
            params["dhcp"] = params["dhcp"] or serves
            params["tftp"] = params["tftp"] or ip.find("tftp") is not None


def _ip_address(name, ip, family):
    address, netmask, prefix = ip.get("address"), ip.get("netmask"), ip.get("prefix")
    if not address or (netmask is None) == (prefix is None):
        _xml_error("network %r: <ip family=%r> needs address and exactly one of netmask or prefix"
                   % (name, family), network=name)
    if netmask is not None:
        try:
            mask = netaddr.IPAddress(netmask)
        except (netaddr.AddrFormatError, ValueError):
            mask = None
        if mask is None or mask.version != 4 or not mask.is_netmask():
            _xml_error("network %r: <ip netmask=%r> is not an IPv4 netmask: use e.g. 255.255.255.0"
                       % (name, netmask), network=name)
        prefix = mask.netmask_bits()
    return "%s/%s" % (address, prefix)


def _forward_params(name, root, params):
    forward = root.find("forward")
    if forward is None:
        params["mode"] = "isolated"
        return
    mode = forward.get("mode", "nat")
    if mode not in ("nat", "route", "open"):
        _xml_error("network %r: forward mode %r has no virtual network firewall: use nat, route, open or "
                   "no <forward> (isolated)" % (name, mode), network=name)
    params["mode"] = mode
    # libvirt's rules use the first forward interface; dev='' and <interface dev=''/> both set it
    interface = forward.find("interface")
    params["forward_dev"] = forward.get("dev") or (interface.get("dev") if interface is not None else None)
    nat = forward.find("nat")
    if nat is None:
        return
    params["nat_ipv6"] = nat.get("ipv6") == "yes"
    for tag, key in (("address", "nat_address"), ("port", "nat_ports")):
        element = nat.find(tag)
        if element is not None:
            start = element.get("start")
            params[key] = [start, element.get("end", start)]


def parse_network_xml(text) -> Network:
    """Network from libvirt <network> XML (as ``virsh net-dumpxml`` prints it)."""
    need_netaddr()
    root = _parse_root(text)
    name = (root.findtext("name") or "").strip()
    bridge = root.find("bridge")
    if bridge is None or not bridge.get("name"):
        _xml_error("network %r has no <bridge name=...>: name the bridge" % name, network=name)
    params = {"name": name, "bridge": bridge.get("name")}
    _forward_params(name, root, params)
    _ip_params(name, root, params)
    dns = root.find("dns")
    params["dns"] = dns is None or dns.get("enable", "yes") != "no"
    return network_from_params(params)


def _attr(value):
    return "'%s'" % str(value).replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;")


def _text(value):
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _dhcp_range(ipv4):
    """The model keeps DHCP on/off only: the range written is the hosts above the bridge address
    (192.168.122.1/24 gives .2-.254, libvirt's default network), or below it for the last host."""
    net = netaddr.IPNetwork(ipv4)
    low, high, own = net.first + 1, net.last - 1, int(net.ip)
    first, last = (own + 1, high) if own < high else (low, own - 1)
    return str(netaddr.IPAddress(first)), str(netaddr.IPAddress(last))


def _forward_xml(net):
    if net.mode == "isolated":
        return []
    dev = " dev=%s" % _attr(net.forward_dev) if net.forward_dev else ""
    lines = ["  <forward%s mode=%s>" % (dev, _attr(net.mode))]
    if net.mode == "nat":
        lines.append("    <nat%s>" % (" ipv6='yes'" if net.nat_ipv6 else ""))
        if net.nat_address:
            lines.append("      <address start=%s end=%s/>" % tuple(_attr(a) for a in net.nat_address))
        lines.append("      <port start='%d' end='%d'/>" % net.nat_ports)
        lines.append("    </nat>")
    if net.forward_dev:
        lines.append("    <interface dev=%s/>" % _attr(net.forward_dev))
    return lines + ["  </forward>"]


def _ip_xml(net):
    lines = []
    served = _dhcp_address(net) if net.dhcp else None
    for number, address in enumerate(net.ipv4):
        ip = netaddr.IPNetwork(address)
        inner = ["    <tftp root=%s/>" % _attr(TFTP_ROOT)] if net.tftp and number == 0 else []
        if address == served:
            inner += ["    <dhcp>", "      <range start=%s end=%s/>" % tuple(_attr(a) for a in _dhcp_range(address)),
                      "    </dhcp>"]
        head = "  <ip address=%s netmask=%s" % (_attr(ip.ip), _attr(ip.netmask))
        lines += ([head + ">"] + inner + ["  </ip>"]) if inner else [head + "/>"]
    for address in net.ipv6:
        ip = netaddr.IPNetwork(address)
        lines.append("  <ip family='ipv6' address=%s prefix='%d'/>" % (_attr(ip.ip), ip.prefixlen))
    return lines


def format_network_xml(network: Network) -> str:
    """libvirt <network> XML for the network, laid out the way ``virsh net-dumpxml`` prints it."""
    need_netaddr()
    lines = ["<network>", "  <name>%s</name>" % _text(network.name)]
    lines += _forward_xml(network)
    lines.append("  <bridge name=%s stp='on' delay='0'/>" % _attr(network.bridge))
    if not network.dns:
        lines.append("  <dns enable='no'/>")
    lines += _ip_xml(network)
    lines.append("</network>")
    return "\n".join(lines) + "\n"


def check_unique(networks: Sequence[Network]):
    """Refuse two networks with one name or one bridge (their rules would be indistinguishable)."""
    for what in ("name", "bridge"):
        owner = {}
        for net in networks:
            value = getattr(net, what)
            if value in owner:
                raise FilterXMLError("networks %r and %r use the same %s %r: give each network its own %s"
                                     % (owner[value], net.name, what, value, what), network=net.name, option=what)
            owner[value] = net.name


def firewalld_zone_for(network: Network) -> Optional[str]:
    """firewalld zone libvirt puts the bridge in, or None for mode 'open' (libvirt sets none).

    Routed networks get 'libvirt-routed' (firewalld >= 0.9 policies let routed traffic in); we
    assume such a firewalld and do not copy libvirt's fallback to 'libvirt' on older ones.
    """
    if network.mode == "open":
        return None
    return "libvirt-routed" if network.mode == "route" else "libvirt"
