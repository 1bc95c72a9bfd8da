# -*- coding: utf-8 -*-
# Copyright: contributors to hypervisor.firewall
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one nft writer: typed objects in, the text ``nft list table`` prints out."""

from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables import converge as _nft
from ansible_collections.hypervisor.firewall.plugins.module_utils._engine.nftables.writer import (
    Chain, Hook, Lookup, Map, Match, Nat, Reject, Set, SetMark, Table, Verdict, VerdictMap, quoted, render_rule,
    render_table)


def test_each_statement_renders_as_nft_prints_it():
    assert render_rule((Match("ether type", "arp"), Match("vlan id", "3", negate=True), Verdict("drop"))) == \
        "ether type arp vlan id != 3 drop"
    assert render_rule((Lookup(("ether saddr", "iifname"), "s"), Verdict("return"))) == "ether saddr . iifname @s return"
    assert render_rule((Lookup(("@nh,48,16", "iifname"), "r", negate=True), Verdict("jump", "c"))) == \
        "@nh,48,16 . iifname != @r jump c"
    assert render_rule((VerdictMap("iifname", "m"),)) == "iifname vmap @m"
    assert render_rule((SetMark("oifname", "out_port"),)) == "meta mark set oifname map @out_port"
    assert render_rule((Reject(),)) == "reject"
    assert render_rule((Reject("icmpv6", "port-unreachable"),)) == "reject with icmpv6 port-unreachable"
    assert render_rule((Nat("masquerade", ":1024-65535"),)) == "masquerade to :1024-65535"
    assert render_rule((Match("iifname", quoted("vnet0")), Nat("snat", "10.0.0.1"))) == 'iifname "vnet0" snat to 10.0.0.1'


TABLE = Table("bridge", "t", (
    Map("m", ("ifname",), "verdict", (((quoted("vnet0"),), "jump c"),)),
    Set("s", ("ether_addr", "ifname"), (("52:54:00:00:00:01", quoted("vnet0")), ("52:54:00:00:00:02", quoted("vnet1")))),
    Set("r", ("@nh,48,16", "iifname"), (), typeof=True),
    Chain("c", ((Lookup(("ether saddr", "iifname"), "s"), Verdict("return")), (Verdict("accept"),))),
    Chain("pre", ((VerdictMap("iifname", "m"),),), Hook("prerouting", "dstnat")),
    Chain("nat", (), Hook("postrouting", "srcnat", type="nat", policy="drop")),
))


def test_a_table_renders_block_by_block_in_the_given_order():
    assert render_table(TABLE) == (
        "table bridge t {\n"
        "\tmap m {\n\t\ttype ifname : verdict\n\t\telements = { \"vnet0\" : jump c }\n\t}\n\n"
        "\tset s {\n\t\ttype ether_addr . ifname\n"
        "\t\telements = { 52:54:00:00:00:01 . \"vnet0\",\n\t\t\t     52:54:00:00:00:02 . \"vnet1\" }\n\t}\n\n"
        "\tset r {\n\t\ttypeof @nh,48,16 . iifname\n\t}\n\n"
        "\tchain c {\n\t\tether saddr . iifname @s return\n\t\taccept\n\t}\n\n"
        "\tchain pre {\n\t\ttype filter hook prerouting priority dstnat; policy accept;\n\t\tiifname vmap @m\n\t}\n\n"
        "\tchain nat {\n\t\ttype nat hook postrouting priority srcnat; policy drop;\n\t}\n"
        "}\n")
    assert TABLE.key == ("bridge", "t")


def test_what_the_writer_writes_the_planner_reads_back():
    objects = _nft.parse_table(render_table(TABLE))
    assert objects[("set", "s")] == ("type ether_addr . ifname",
                                     'elements = 52:54:00:00:00:01 . "vnet0", 52:54:00:00:00:02 . "vnet1"')
    assert objects[("chain", "pre")][1] == "iifname vmap @m"
    assert _nft.plan({TABLE.key: TABLE}, {TABLE.key: render_table(TABLE)}, tables=(TABLE.key,)).is_empty()
