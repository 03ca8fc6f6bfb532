"""Which MAC-learned flows a delta makes stale."""

from __future__ import annotations

from flowkeeper.flows.record import parse_flow
from flowkeeper.naming import BR_INT, BR_TUN
from flowkeeper.pipeline.learned import learned_spec, stale_learned, vlan_set_by
from flowkeeper.pipeline.tables import LEARNED_COOKIE

MAC = "fa:16:3e:02:01:01"


def test_a_removed_remote_mac_removes_what_was_learned_for_it_in_its_vlan() -> None:
    gone = parse_flow(
        f"table=20,priority=2,dl_vlan=7,dl_dst={MAC},"
        "actions=pop_vlan,set_field:0x3e9->tun_id,output:vxlan-c6120003",
        BR_TUN,
    )
    assert stale_learned([gone]) == [
        f"cookie={LEARNED_COOKIE:#x}/-1,table=20,vlan_tci=0x0007/0x0fff,dl_dst={MAC}"
    ]


def test_a_network_leaving_the_host_removes_everything_learned_in_its_vlan() -> None:
    built = parse_flow(
        "table=4,priority=1,tun_id=0x3e9,actions=mod_vlan_vid:12,resubmit(,10)", BR_TUN
    )
    printed = parse_flow(
        "table=3,priority=1,tun_id=0x3ea,"
        "actions=push_vlan:0x8100,set_field:4109->vlan_vid,resubmit(,10)",
        BR_TUN,
    )
    assert stale_learned([built, printed]) == sorted([learned_spec(vlan=12), learned_spec(vlan=13)])


def test_other_deletions_leave_learned_flows_alone() -> None:
    flows = [
        parse_flow(f"table=60,priority=10,dl_vlan=1,dl_dst={MAC},actions=output:patch-tun", BR_INT),
        parse_flow("table=22,priority=1,dl_vlan=1,actions=pop_vlan,output:vxlan-c6120002", BR_TUN),
        parse_flow('table=0,priority=1,in_port="vxlan-c6120002",actions=resubmit(,4)', BR_TUN),
    ]
    assert stale_learned(flows) == []


def test_vlan_set_by_reads_both_spellings() -> None:
    assert vlan_set_by("mod_vlan_vid:5,resubmit(,10)") == 5
    assert vlan_set_by("push_vlan:0x8100,set_field:0x1005->vlan_vid") == 5
    assert vlan_set_by("output:3") is None


def test_learned_spec_by_output_port() -> None:
    assert learned_spec(out_port=4) == f"cookie={LEARNED_COOKIE:#x}/-1,table=20,out_port=4"
