"""Canonical flow records: two spellings of one flow compare equal; bad text is refused."""

from __future__ import annotations

import pytest

from flowkeeper.flows.actions import canonical_actions, split_actions
from flowkeeper.flows.record import Flow, FlowSyntaxError, parse_dump, parse_flow

# (as we might write it, as OVS 3.1 prints it back with dump-flows --names -O OpenFlow15)
SAME_FLOW = [
    (
        "table=0,priority=1,in_port=patch-int,actions=resubmit(,2)",
        ' priority=1,in_port="patch-int" actions=resubmit(,2)',
    ),
    (
        "table=2,priority=1,arp,dl_dst=FF:FF:FF:FF:FF:FF,actions=resubmit(,21)",
        " table=2, priority=1,arp,dl_dst=ff:ff:ff:ff:ff:ff actions=resubmit(,21)",
    ),
    (
        "table=4,priority=1,tun_id=101,actions=mod_vlan_vid:2,resubmit(,10)",
        " table=4, priority=1,tun_id=0x65 actions=push_vlan:0x8100,"
        "set_field:4098->vlan_vid,resubmit(,10)",
    ),
    (
        "table=20,priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,"
        "actions=strip_vlan,load:0x64->NXM_NX_TUN_ID[],output:vxlan-1",
        " table=20, priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:01 "
        'actions=pop_vlan,set_field:0x64->tun_id,output:"vxlan-1"',
    ),
    (
        "table=21,priority=1,dl_type=0x0806,dl_vlan=1,arp_tpa=198.19.1.1,"
        "actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],mod_dl_src:fa:16:3e:00:00:01,"
        "load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
        "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],load:0xfa163e000001->NXM_NX_ARP_SHA[],"
        "load:0xc6130101->NXM_OF_ARP_SPA[],in_port",
        " table=21, priority=1,arp,dl_vlan=1,arp_tpa=198.19.1.1 "
        "actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:00:00:01->eth_src,"
        "set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
        "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:00:00:01->arp_sha,"
        "set_field:198.19.1.1->arp_spa,IN_PORT",
    ),
    (
        "table=22,priority=1,dl_vlan=1,actions=strip_vlan,set_field:100->tun_id,output:vxlan-1",
        ' table=22, priority=1,dl_vlan=1 actions=pop_vlan,set_field:0x64->tun_id,output:"vxlan-1"',
    ),
    (
        "table=0,priority=5,dl_type=0x0800,nw_proto=1,actions=drop",
        " priority=5,icmp actions=drop",
    ),
    (
        "table=0,priority=5,ip,nw_dst=198.19.1.7/255.255.255.0,actions=drop",
        " priority=5,ip,nw_dst=198.19.1.0/24 actions=drop",
    ),
    (
        "cookie=171,table=0,priority=8,dl_vlan=5,actions=normal",
        " cookie=0xab, priority=8,dl_vlan=5 actions=NORMAL",
    ),
    (
        "table=10,priority=1,actions=learn(table=20,hard_timeout=300,priority=1,"
        "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:OXM_OF_IN_PORT[]),"
        "output:patch-int",
        " table=10, priority=1 actions=learn(table=20,hard_timeout=300,priority=1,"
        "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:OXM_OF_IN_PORT[]),"
        'output:"patch-int"',
    ),
]


@pytest.mark.parametrize(("written", "printed"), SAME_FLOW)
def test_two_spellings_compare_equal(written: str, printed: str) -> None:
    assert parse_flow(written, "br-tun") == parse_flow(printed, "br-tun")


@pytest.mark.parametrize(("written", "printed"), SAME_FLOW)
def test_render_round_trips(written: str, printed: str) -> None:
    flow = parse_flow(written, "br-tun")
    assert parse_flow(flow.render(), "br-tun") == flow


def test_stats_are_ignored_and_defaults_filled() -> None:
    line = (
        " cookie=0x0, duration=1.496s, table=20, n_packets=7, n_bytes=700, idle_age=5, "
        "priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:00 actions=pop_vlan,output:2"
    )
    flow = parse_flow(line, "br-tun")
    assert flow == Flow(
        "br-tun", 20, 2, (("dl_dst", "fa:16:3e:00:00:00"), ("dl_vlan", "1")), "pop_vlan,output:2"
    )
    assert parse_flow("actions=drop", "br-int").priority == 32768


def test_different_flows_differ() -> None:
    a = parse_flow("table=20,priority=2,dl_vlan=1,actions=output:1", "br-tun")
    assert a != parse_flow("table=20,priority=2,dl_vlan=2,actions=output:1", "br-tun")
    assert a != parse_flow("table=20,priority=3,dl_vlan=1,actions=output:1", "br-tun")
    assert a != parse_flow("table=20,priority=2,dl_vlan=1,actions=output:2", "br-tun")
    assert a.key != parse_flow("table=20,priority=2,dl_vlan=1,actions=output:1", "br-int").key
    assert a.key == parse_flow("table=20,priority=2,dl_vlan=1,actions=drop", "br-tun").key


def test_parse_dump_skips_reply_headers() -> None:
    text = (
        "OFPST_FLOW reply (OF1.5) (xid=0x2):\n"
        " priority=0 actions=drop\n"
        " table=4, priority=1,tun_id=0x3e9 actions=output:1\n"
    )
    flows = parse_dump(text, "br-tun")
    assert [(f.table, f.priority) for f in flows] == [(0, 0), (4, 1)]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "table=0,priority=1",  # no actions
        "table=0,priority=1,dl_src=zz:00:00:00:00:00,actions=drop",
        "table=0,priority=1,nw_dst=300.1.1.1,actions=drop",
        "table=0,priority=70000,actions=drop",
        "table=300,actions=drop",
        "table=0,bogus,actions=drop",
        "table=0,dl_type=0x800,arp,actions=drop",  # conflicting dl_type
        "table=0,actions=learn(table=20",
    ],
)
def test_bad_flows_raise(bad: str) -> None:
    with pytest.raises(FlowSyntaxError):
        parse_flow(bad, "br-int")


def test_split_actions_respects_nesting() -> None:
    assert split_actions("learn(a=1,b[0..3]),output:2,resubmit(,4)") == [
        "learn(a=1,b[0..3])",
        "output:2",
        "resubmit(,4)",
    ]
    assert canonical_actions("") == "drop"
    assert canonical_actions("in_port, output:3") == "IN_PORT,output:3"
