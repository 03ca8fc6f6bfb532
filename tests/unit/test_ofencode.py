"""The OpenFlow 1.5 flow_mod encoder: byte-identical to ovs-ofctl, lengths, OXM, refusals."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowkeeper.flows.record import Flow, parse_flow
from flowkeeper.lab.state import HostState, VmState
from flowkeeper.lab.staticflows import static_flows
from flowkeeper.ovs import ofencode_ct
from flowkeeper.ovs.ofencode import (
    ADD,
    DELETE_STRICT,
    MODIFY_STRICT,
    FlowModEncoder,
    UnknownPort,
    UnsupportedFlow,
    encode_flow_mod,
)
from flowkeeper.pipeline.build import build_flows
from flowkeeper.pipeline.view import HostView, LocalPort, NetworkView, RemotePort
from tests.unit import fwshapes

PORTS = {"patch-int": 1, "vxlan-c6120002": 2, "gre-c6120003": 3}

# (command, flow, the FLOW_MOD that ovs-ofctl 3.1.0 -O OpenFlow15 --bundle add-flows sent,
# captured on the wire between it and ovs-vswitchd with the ports above; xid zeroed).
OFCTL_BYTES: list[tuple[int, str, str]] = [
    (
        ADD,
        "cookie=0xf10c000000000005,table=0,priority=0,actions=drop",
        "060e003800000000f10c00000000000500000000000000000000000000000000ffffffffffffffff"
        "ffffffff000000000001000400000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000005,table=0,priority=1,in_port=vxlan-c6120002,actions=resubmit(,4)",
        "060e005800000000f10c00000000000500000000000000000000000000000001ffffffffffffffff"
        "ffffffff000000000001000c8000000400000002000000000004001800000000ffff001000002320"
        "000efff804000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000005,table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,22)",
        "060e006000000000f10c00000000000500000000000000000200000000000000ffffffffffffffff"
        "ffffffff00000000000100148000070c010000000000010000000000000000000004001800000000"
        "ffff001000002320000efff816000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000005,table=4,priority=1,tun_id=0x3e9,actions=push_vlan:0x8100,set_field:0x1001->vlan_vid,resubmit(,10)",
        "060e007000000000f10c00000000000500000000000000000400000000000001ffffffffffffffff"
        "ffffffff000000000001001080004c0800000000000003e900040030000000000011000881000000"
        "0019001080000c021001000000000000ffff001000002320000efff80a000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000005,table=10,priority=1,actions=learn(table=20,hard_timeout=300,priority=1,cookie=0xf10c800000000000,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:patch-int",
        "060e00b000000000f10c00000000000500000000000000000a00000000000001ffffffffffffffff"
        "ffffffff0000000000010004000000000004007800000000ffff00600000232000100000012c0001"
        "f10c8000000000000000140000000000000c00000802000000000802000000300000040600000000"
        "02060000281000000000080200000840000120080000000120080000102080000004000000000000"
        "00000010000000010000000000000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000005,table=20,priority=2,dl_dst=fa:16:3e:00:00:02,dl_vlan=1,actions=pop_vlan,set_field:0x3e9->tun_id,output:vxlan-c6120002",
        "060e007800000000f10c00000000000500000000000000001400000000000002ffffffffffffffff"
        "ffffffff000000000001001480000606fa163e00000280000c021001000000000004003000000000"
        "00120008000000000019001080004c0800000000000003e900000010000000020000000000000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000005,table=21,priority=1,arp_tpa=10.0.0.2,dl_type=0x806,dl_vlan=1,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:00:00:02->dl_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:00:00:02->arp_sha,set_field:10.0.0.2->arp_spa,IN_PORT",
        "060e00e800000000f10c00000000000500000000000000001500000000000001ffffffffffffffff"
        "ffffffff000000000001001880000a02080680000c02100180002e040a000002000400a000000000"
        "001c001800300000000000008000080680000606000000000019001080000806fa163e0000020000"
        "0019001080002a020002000000000000001c00180030000000000000800030068000320600000000"
        "001c0018002000000000000080002c0480002e04000000000019001080003006fa163e0000020000"
        "0019001080002c040a0000020000000000000010fffffff80000000000000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000005,table=22,priority=1,dl_vlan=2,actions=pop_vlan,set_field:0x3ea->tun_id,output:gre-c6120003,output:vxlan-c6120002",
        "060e008000000000f10c00000000000500000000000000001600000000000001ffffffffffffffff"
        "ffffffff000000000001000a80000c02100200000000000000040040000000000012000800000000"
        "0019001080004c0800000000000003ea000000100000000300000000000000000000001000000002"
        "0000000000000000",
    ),
    (
        ADD,
        "table=8,priority=8,idle_timeout=30,hard_timeout=60,dl_type=0x800,nw_src=10.0.0.0/24,nw_proto=6,tp_dst=80,actions=load:5->NXM_NX_REG0[0..3],load:0x1234->NXM_NX_TUN_ID[0..15],set_field:0x1/0x3->reg1,move:NXM_NX_REG0[0..3]->NXM_NX_REG1[4..7],goto_table:9",
        "060e00b800000000000000000000000000000000000000000800001e003c0008ffffffffffffffff"
        "ffffffff000000000001002180000a020800800017080a000000ffffff00800014010680001c0200"
        "500000000000000000040058000000000019001000010108000000050000000f0019001880004d10"
        "0000000000001234000000000000ffff00190010000103080000000100000003001c001800040000"
        "000400000001000400010204000000000001000809000000",
    ),
    (
        ADD,
        "table=8,priority=1,vlan_tci=0x1000/0x1000,actions=drop",
        "060e004000000000000000000000000000000000000000000800000000000001ffffffffffffffff"
        "ffffffff000000000001000c80000d041000100000000000",
    ),
    (
        ADD,
        "table=8,priority=6,vlan_tci=0x3005/0xffff,tun_id=7,dl_type=0x86dd,nw_proto=58,actions=drop",
        "060e005800000000000000000000000000000000000000000800000000000006ffffffffffffffff"
        "ffffffff000000000001002680000a0286dd80000c02100580000e0101800014013a80004c080000"
        "0000000000070000",
    ),
    (
        ADD,
        "table=8,priority=3,dl_type=0x800,nw_proto=17,nw_dst=10.1.0.0/16,tp_src=53,dl_src=fa:16:3e:00:00:00/ff:ff:ff:00:00:00,dl_dst=fa:16:3e:00:00:09,actions=NORMAL,LOCAL,output:2,dec_ttl,ct_clear",
        "060e00c000000000000000000000000000000000000000000800000000000003ffffffffffffffff"
        "ffffffff000000000001003b8000090cfa163e000000ffffff00000080000606fa163e0000098000"
        "0a020800800019080a010000ffff0000800014011180001e02003500000000000004005000000000"
        "00000010fffffffa000000000000000000000010fffffffe00000000000000000000001000000002"
        "00000000000000000018000800000000ffff001000002320002b000000000000",
    ),
    (
        ADD,
        "table=8,priority=4,dl_type=0x806,arp_op=1,arp_sha=fa:16:3e:00:00:01,arp_tha=00:00:00:00:00:00/ff:ff:ff:00:00:00,arp_spa=10.0.0.1,arp_tpa=10.0.0.0/8,actions=load:0x2->NXM_OF_ARP_OP[],resubmit(patch-int,),resubmit(1,3),IN_PORT",
        "060e00b800000000000000000000000000000000000000000800000000000004ffffffffffffffff"
        "ffffffff000000000001003e80000a02080680002a02000180002c040a00000180002f080a000000"
        "ff00000080003006fa163e0000018000330c000000000000ffffff00000000000004004800000000"
        "0019001080002a020002000000000000ffff001000002320000e0001ff000000ffff001000002320"
        "000e00010300000000000010fffffff80000000000000000",
    ),
    (
        ADD,
        "table=8,priority=5,in_port=LOCAL,tun_id=0x5/0xff,actions=load:1->NXM_NX_REG3[],FLOOD,ALL,group:7",
        "060e009000000000000000000000000000000000000000000800000000000005ffffffffffffffff"
        "ffffffff000000000001002080000004fffffffe80004d10000000000000000500000000000000ff"
        "00040040000000000019001000010604000000010000000000000010fffffffb0000000000000000"
        "00000010fffffffc00000000000000000016000800000007",
    ),
    (
        ADD,
        "table=9,priority=1,actions=learn(table=30,idle_timeout=10,hard_timeout=20,fin_idle_timeout=3,fin_hard_timeout=4,priority=7,send_flow_rem,delete_learned,cookie=0x99,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],NXM_NX_REG0[3..10]=NXM_NX_REG1[0..7],load:0xfa163e000001->NXM_OF_ETH_SRC[],load:0x12345->NXM_NX_REG2[4..24],load:NXM_OF_IN_PORT[]->NXM_NX_REG3[0..15],output:NXM_NX_REG4[0..15])",
        "060e00b000000000000000000000000000000000000000000900000000000001ffffffffffffffff"
        "ffffffff0000000000010004000000000004007800000000ffff0070000023200010000a00140007"
        "000000000000009900031e0000030004003000000406000000000206000000080001020400000001"
        "000400032830fa163e00000100000406000028150001234500010404000408100000000200000001"
        "06040000101000010804000000000000",
    ),
    (
        MODIFY_STRICT,
        "cookie=0xf10c000000000007,table=20,priority=2,dl_dst=fa:16:3e:00:00:02,dl_vlan=1,actions=pop_vlan,set_field:0x3e9->tun_id,output:vxlan-c6120002",
        "060e007800000000000000000000000000000000000000001402000000000002ffffffffffffffff"
        "ffffffff000000000001001480000606fa163e00000280000c021001000000000004003000000000"
        "00120008000000000019001080004c0800000000000003e900000010000000020000000000000000",
    ),
    (
        DELETE_STRICT,
        "cookie=0xf10c000000000005,table=21,priority=1,arp_tpa=10.0.0.2,dl_type=0x806,dl_vlan=1,actions=drop",
        "060e004800000000000000000000000000000000000000001504000000000001ffffffffffffffff"
        "ffffffff000000000001001880000a02080680000c02100180002e040a000002",
    ),
]


# The firewall's shapes (tables 60-94) and the conntrack/conjunction syntax around them,
# captured the same way (tests/integration/ofcapture.py relays ovs-ofctl 3.1.0 to OVS).
OFCTL_FIREWALL_BYTES: list[tuple[int, str, str]] = [
    (
        ADD,
        "table=9,priority=5,ip,reg4=0x1,reg5=0x2,reg6=0x10/0xf0,reg15=0x7,actions=ct(commit,force,zone=NXM_NX_REG6[0..15],table=73)",
        "060e009000000000000000000000000000000000000000000900000000000005ffffffffffffffff"
        "ffffffff000000000001003e80000a02080080010408000000010000000280010710000000100000"
        "0000000000f00000000080010f10000000000000000700000000ffffffff00000004002000000000"
        "ffff0018000023200023000300010c04000f490000000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000007,table=60,priority=100,in_port=patch-int,actions=set_field:0x5795529c->reg5,set_field:0x1->reg6,resubmit(,71)",
        "060e007800000000f10c00000000000700000000000000003c00000000000064ffffffffffffffff"
        "ffffffff000000000001000c80000004000000010000000000040038000000000019001000010a04"
        "5795529c000000000019001000010c040000000100000000ffff001000002320000efff847000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000007,table=60,priority=90,dl_dst=fa:16:3e:00:00:01,dl_vlan=1,actions=set_field:0x5795529c->reg5,set_field:0x1->reg6,pop_vlan,resubmit(,81)",
        "060e008800000000f10c00000000000700000000000000003c0000000000005affffffffffffffff"
        "ffffffff000000000001001480000606fa163e00000180000c021001000000000004004000000000"
        "0019001000010a045795529c000000000019001000010c0400000001000000000012000800000000"
        "ffff001000002320000efff851000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000007,table=71,priority=65,dl_src=fa:16:3e:00:01:01,dl_type=0x800,in_port=patch-int,nw_src=198.19.9.0/24,reg5=0x5795529c,actions=ct(table=72,zone=1)",
        "060e009000000000f10c00000000000700000000000000004700000000000041ffffffffffffffff"
        "ffffffff000000000001003c800000040000000180000806fa163e00010180000a02080080001708"
        "c6130900ffffff0080010510000000005795529c00000000ffffffff000000000004002000000000"
        "ffff00180000232000230000000000000001480000000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000007,table=71,priority=95,arp_spa=198.19.1.1,dl_src=fa:16:3e:00:00:01,dl_type=0x806,in_port=patch-int,reg5=0x5795529c,actions=resubmit(,94)",
        "060e008000000000f10c0000000000070000000000000000470000000000005fffffffffffffffff"
        "ffffffff0000000000010038800000040000000180000806fa163e00000180000a02080680002c04"
        "c613010180010510000000005795529c00000000ffffffff0004001800000000ffff001000002320"
        "000efff85e000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000007,table=72,priority=50,ct_mark=0x0,ct_state=+est-rel+rpl,ct_zone=0x1,reg5=0x5795529c,actions=resubmit(,94)",
        "060e008000000000f10c00000000000700000000000000004800000000000032ffffffffffffffff"
        "ffffffff000000000001003280010510000000005795529c00000000ffffffff0001d3080000000a"
        "0000000e0001d40200010001d604000000000000000000000004001800000000ffff001000002320"
        "000efff85e000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000007,table=72,priority=40,ct_state=+est,dl_type=0x800,reg5=0x5795529c,actions=ct(commit,zone=1,exec(set_field:0x1->ct_mark))",
        "060e009000000000f10c00000000000700000000000000004800000000000028ffffffffffffffff"
        "ffffffff000000000001002a80000a02080080010510000000005795529c00000000ffffffff0001"
        "d30800000002000000020000000000000004003000000000ffff0028000023200023000100000000"
        "0001ff0000000000001900100001d6040000000100000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000007,table=82,priority=73,conj_id=0xe12a6d17,ct_state=+new-est,dl_type=0x800,reg5=0x5795529c,actions=ct(commit,zone=2),output:patch-int,resubmit(,92)",
        "060e00a800000000f10c00000000000700000000000000005200000000000049ffffffffffffffff"
        "ffffffff000000000001003200014a04e12a6d1780000a02080080010510000000005795529c0000"
        "0000ffffffff0001d30800000001000000030000000000000004004000000000ffff001800002320"
        "00230001000000000002ff000000000000000010000000010000000000000000ffff001000002320"
        "000efff85c000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000007,table=82,priority=73,ct_state=+new-est,dl_type=0x800,nw_src=198.19.7.0/24,actions=conjunction(2103080095,1/2),conjunction(3777654039,1/2)",
        "060e008000000000f10c00000000000700000000000000005200000000000049ffffffffffffffff"
        "ffffffff000000000001002280000a02080080001708c6130700ffffff000001d308000000010000"
        "00030000000000000004002800000000ffff001000002320002200027d5a749fffff001000002320"
        "00220002e12a6d17",
    ),
    (
        ADD,
        "cookie=0xf10c000000000007,table=82,priority=72,ct_state=+est-rel-rpl,dl_type=0x800,icmp_code=0x4,icmp_type=0x3,nw_proto=1,reg5=0x5795529c,actions=conjunction(3777654038,2/2)",
        "060e008800000000f10c00000000000700000000000000005200000000000048ffffffffffffffff"
        "ffffffff000000000001003980000a02080080001401018000260103800028010480010510000000"
        "005795529c00000000ffffffff0001d308000000020000000e000000000000000004001800000000"
        "ffff00100000232000220102e12a6d16",
    ),
    (
        ADD,
        "cookie=0xf10c000000000007,table=82,priority=77,ct_state=+new-est,dl_type=0x800,nw_proto=6,nw_src=198.18.0.0/16,reg5=0x5795529c,tp_dst=8000/65504,actions=ct(commit,zone=1),output:patch-int,resubmit(,92)",
        "060e00b800000000f10c0000000000070000000000000000520000000000004dffffffffffffffff"
        "ffffffff000000000001004380000a02080080001708c6120000ffff0000800014010680001d041f"
        "40ffe080010510000000005795529c00000000ffffffff0001d30800000001000000030000000000"
        "0004004000000000ffff00180000232000230001000000000001ff00000000000000001000000001"
        "0000000000000000ffff001000002320000efff85c000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000007,table=81,priority=90,ct_state=-trk,dl_type=0x800,reg5=0x5795529c,actions=ct(table=82,zone=1)",
        "060e008000000000f10c0000000000070000000000000000510000000000005affffffffffffffff"
        "ffffffff000000000001002a80000a02080080010510000000005795529c00000000ffffffff0001"
        "d30800000000000000200000000000000004002000000000ffff0018000023200023000000000000"
        "0001520000000000",
    ),
    (
        ADD,
        "cookie=0xf10c000000000007,table=71,priority=110,ct_state=+trk,actions=ct_clear,resubmit(,71)",
        "060e006800000000f10c0000000000070000000000000000470000000000006effffffffffffffff"
        "ffffffff00000000000100100001d30800000020000000200004002800000000ffff001000002320"
        "002b000000000000ffff001000002320000efff847000000",
    ),
    (
        ADD,
        "table=9,priority=7,ct_state=trk|est,reg0=0xffffffff,actions=drop",
        "060e005800000000000000000000000000000000000000000900000000000007ffffffffffffffff"
        "ffffffff000000000001002480010110ffffffff00000000ffffffff000000000001d30800000022"
        "000000ff00000000",
    ),
    (
        ADD,
        "table=9,priority=6,ct_state=0x21/0x21,ct_mark=0x1/0x1,dl_type=0x800,actions=ct(commit,zone=5,exec(set_field:0x1/0x1->ct_mark))",
        "060e008800000000000000000000000000000000000000000900000000000006ffffffffffffffff"
        "ffffffff000000000001002280000a0208000001d30800000021000000210001d708000000010000"
        "00010000000000000004003000000000ffff00280000232000230001000000000005ff0000000000"
        "001900100001d7080000000100000001",
    ),
    (
        ADD,
        "table=9,priority=6,ct_state=0x21/0x21,ct_mark=0x1/0x1,ct_zone=0x10,conj_id=7,dl_type=0x800,actions=conjunction(7,3/3),conjunction(0x8,1/2)",
        "060e008800000000000000000000000000000000000000000900000000000006ffffffffffffffff"
        "ffffffff000000000001003000014a040000000780000a0208000001d30800000021000000210001"
        "d40200100001d70800000001000000010004002800000000ffff0010000023200022020300000007"
        "ffff0010000023200022000200000008",
    ),
    (
        ADD,
        "table=9,priority=7,ct_state=trk|est,reg0=0xffffffff,reg3=0/0xff,actions=drop",
        "060e006800000000000000000000000000000000000000000900000000000007ffffffffffffffff"
        "ffffffff000000000001003880010110ffffffff00000000ffffffff000000008001031000000000"
        "0000000000000000000000ff0001d30800000022000000ff",
    ),
    (
        ADD,
        "table=9,priority=8,ct_state=+snat-dnat+new-rpl-inv,reg1=0xffffffff,actions=drop",
        "060e005800000000000000000000000000000000000000000900000000000008ffffffffffffffff"
        "ffffffff00000000000100248001011000000000ffffffff00000000ffffffff0001d30800000041"
        "000000d900000000",
    ),
    (
        ADD,
        "table=9,priority=8,dl_type=0x800,nw_proto=17,tp_src=0x100/0xff00,tp_dst=53,actions=ct(zone=65535)",
        "060e007000000000000000000000000000000000000000000900000000000008ffffffffffffffff"
        "ffffffff000000000001001d80000a020800800014011180001f040100ff00800020020035000000"
        "0004002000000000ffff0018000023200023000000000000ffffff0000000000",
    ),
    (
        ADD,
        "table=9,priority=7,ct_state=trk|est,reg0=0xffffffff,reg3=0/0xff,actions=drop",
        "060e006800000000000000000000000000000000000000000900000000000007ffffffffffffffff"
        "ffffffff000000000001003880010110ffffffff00000000ffffffff000000008001031000000000"
        "0000000000000000000000ff0001d30800000022000000ff",
    ),
    (
        ADD,
        "table=9,priority=7,ct_state=0x22,actions=drop",
        "060e004000000000000000000000000000000000000000000900000000000007ffffffffffffffff"
        "ffffffff00000000000100100001d30800000022000000ff",
    ),
]


@pytest.mark.parametrize(("command", "text", "ofctl_hex"), OFCTL_BYTES + OFCTL_FIREWALL_BYTES)
def test_byte_identical_to_ovs_ofctl(command: int, text: str, ofctl_hex: str) -> None:
    flow = parse_flow(text, "br-tun")
    assert encode_flow_mod(flow, command, PORTS).hex() == ofctl_hex


def _view(l2pop: bool = True) -> HostView:
    return HostView(
        tunnel_ip="198.18.0.1",
        l2pop=l2pop,
        cookie=0xF10C000000000005,
        networks=(NetworkView("n1", "vxlan", 1001, 1), NetworkView("n2", "gre", 1002, 2)),
        local_ports=(LocalPort("p1", "n1", "tapa", "fa:16:3e:00:00:01", ("10.0.0.1",)),),
        remote_ports=(
            RemotePort("r1", "n1", "fa:16:3e:00:00:02", "198.18.0.2", ("10.0.0.2",)),
            RemotePort("r2", "n2", "fa:16:3e:00:00:03", "198.18.0.3", ("10.0.1.3",)),
        ),
    )


ALL_PORTS = PORTS | {"patch-tun": 1, "tapa": 2}


def _check_framing(msg: bytes, flow: Flow, command: int) -> None:
    """Header, fixed part, padded OXM match and instruction lengths add up."""
    version, msg_type, length, xid = struct.unpack_from("!BBHI", msg)
    assert (version, msg_type, length, xid) == (6, 14, len(msg), 0)
    assert len(msg) % 8 == 0
    cookie, cookie_mask, table, cmd, idle, hard, prio = struct.unpack_from("!QQBBHHH", msg, 8)
    assert (table, cmd, prio, cookie_mask) == (flow.table, command, flow.priority, 0)
    assert cookie == (flow.cookie if command == ADD else 0)
    assert (idle, hard) == ((flow.idle_timeout, flow.hard_timeout) if command != 4 else (0, 0))
    buffer_id, out_port, out_group, flags, importance = struct.unpack_from("!IIIHH", msg, 32)
    assert (buffer_id, out_port, out_group, flags, importance) == (0xFFFFFFFF,) * 3 + (0, 0)
    match_type, match_len = struct.unpack_from("!HH", msg, 48)
    assert match_type == 1
    offset = 52
    while offset < 48 + match_len:  # OXM TLVs: header, then 1x or 2x (masked) the length
        header = struct.unpack_from("!I", msg, offset)[0]
        offset += 4 + (header & 0xFF)
    assert offset == 48 + match_len
    offset = 48 + (match_len + 7) // 8 * 8
    assert msg[48 + match_len : offset] == b"\x00" * (offset - 48 - match_len)
    while offset < len(msg):
        inst_type, inst_len = struct.unpack_from("!HH", msg, offset)
        assert inst_type in (1, 4) and inst_len % 8 == 0 and inst_len >= 8
        if inst_type == 4:  # APPLY_ACTIONS: each action a multiple of 8 bytes
            pos = offset + 8
            while pos < offset + inst_len:
                act_len = struct.unpack_from("!H", msg, pos + 2)[0]
                assert act_len % 8 == 0 and act_len >= 8
                pos += act_len
            assert pos == offset + inst_len
        offset += inst_len
    assert offset == len(msg)
    if command == DELETE_STRICT:
        assert len(msg) == 48 + (match_len + 7) // 8 * 8  # no instructions


@pytest.mark.parametrize("l2pop", [True, False])
@pytest.mark.parametrize("command", [ADD, MODIFY_STRICT, DELETE_STRICT])
def test_every_pipeline_flow_encodes_with_sound_framing(l2pop: bool, command: int) -> None:
    flows = list(build_flows(_view(l2pop)))
    assert len(flows) > 20
    encoder = FlowModEncoder(ALL_PORTS)
    for flow in flows:
        msg = encoder.flow_mod(flow, command)
        _check_framing(msg, flow, command)
        assert msg == encode_flow_mod(flow, command, ALL_PORTS)  # caches change nothing


def test_every_static_lab_flow_encodes() -> None:
    hosts = [HostState(f"h{i}", i, f"ns{i}", f"198.18.0.{i}", "/x") for i in (1, 2)]
    vms = [
        VmState(
            f"h{i}-vm{j}", f"h{i}", "ns", j, f"fa:16:3e:00:0{i}:0{j}", "1.1.1.1", "id", f"t{i}{j}"
        )
        for i in (1, 2)
        for j in (1, 2)
    ]
    ports = {"patch-tun": 1, "patch-int": 1, "t11": 2, "t12": 3, "vxlan-c6120002": 4}
    flows = static_flows(hosts[0], hosts, vms)
    assert len(flows) > 10
    for flow in flows:
        for command in (ADD, MODIFY_STRICT, DELETE_STRICT):
            _check_framing(encode_flow_mod(flow, command, ports), flow, command)


@pytest.mark.parametrize("command", [ADD, MODIFY_STRICT, DELETE_STRICT])
def test_every_firewall_flow_encodes_with_sound_framing(command: int) -> None:
    flows = fwshapes.br_int_flows()
    assert len(flows) > 400
    ports = {name: i + 2 for i, name in enumerate(fwshapes.DEVICES)} | {"patch-tun": 1}
    encoder = FlowModEncoder(ports)
    for flow in flows:
        msg = encoder.flow_mod(flow, command)
        _check_framing(msg, flow, command)
        assert msg == encode_flow_mod(flow, command, ports)  # caches change nothing


@pytest.mark.parametrize(
    ("text", "value", "mask"),
    [
        ("+trk", 0x20, 0x20),
        ("-trk", 0, 0x20),
        ("+est-rel+rpl", 0x0A, 0x0E),
        ("-new-est+rel-inv", 0x04, 0x17),
        ("+snat+dnat", 0xC0, 0xC0),
        ("0x21/0x21", 0x21, 0x21),
        ("trk|est", 0x22, 0xFF),
        ("0x22", 0x22, 0xFF),
    ],
)
def test_ct_state_syntax(text: str, value: int, mask: int) -> None:
    assert ofencode_ct.ct_state(text) == (value, mask)


def test_registers_pair_into_oxm_packet_registers() -> None:
    # reg5 alone: the low half of OXM_OF_PKT_REG2; reg4 and reg5 exact: one unmasked TLV.
    assert ofencode_ct.xreg_tlvs({5: "0x1"}).hex() == "80010510" + "0000000000000001" + (
        "00000000ffffffff"
    )
    assert ofencode_ct.xreg_tlvs({4: "0x1", 5: "0x2"}).hex() == "800104080000000100000002"
    assert ofencode_ct.xreg_tlvs({6: "0x10/0xf0"}).hex() == "80010710" + (
        "0000001000000000000000f000000000"
    )
    assert ofencode_ct.xreg_tlvs({0: "0/0"}) == b""  # OVS leaves a zero mask out


def test_xid_and_drop_and_goto() -> None:
    flow = parse_flow("table=3,priority=9,actions=drop", "br")
    msg = encode_flow_mod(flow, ADD, {}, xid=0xABCDEF01)
    assert struct.unpack_from("!I", msg, 4)[0] == 0xABCDEF01
    assert len(msg) == 56  # fixed part + empty match padded to 8, no instruction for drop
    goto = encode_flow_mod(parse_flow("table=3,actions=pop_vlan,goto_table:9", "br"), ADD, {})
    assert goto[56:] == bytes.fromhex("000400100000000000120008000000000001000809000000")


@pytest.mark.parametrize(
    ("match", "tlvs"),
    [
        ("in_port=LOCAL", "80000004fffffffe"),
        ("in_port=7", "8000000400000007"),
        ("dl_vlan=4095", "80000c021fff"),
        ("vlan_tci=0", "80000c020000"),
        ("vlan_tci=0x1000/0x1000", "80000d0410001000"),
        ("vlan_tci=0x3005", "80000c02100580000e0101"),
        ("dl_dst=fa:16:3e:00:00:01/ff:ff:ff:ff:ff:ff", "80000606fa163e000001"),
        ("dl_dst=01:00:00:00:00:01/01:00:00:00:00:00", "8000070c010000000000010000000000"),
        ("ip,nw_src=10.1.2.3/16", "80000a020800800017080a010000ffff0000"),
        ("tcp,tp_src=22", "80000a020800800014010680001a020016"),
        ("udp6,tp_dst=53", "80000a0286dd8000140111800020020035"),
        ("arp,arp_op=2", "80000a02080680002a020002"),
        ("arp,arp_spa=10.0.0.1", "80000a02080680002c040a000001"),
        ("arp,arp_tha=fa:16:3e:00:00:01", "80000a02080680003206fa163e000001"),
        ("tun_id=0x10/0xf0", "80004d10000000000000001000000000000000f0"),
    ],
)
def test_match_oxm_tlvs(match: str, tlvs: str) -> None:
    msg = encode_flow_mod(parse_flow(f"{match},actions=drop", "br"), ADD, {})
    match_len = struct.unpack_from("!H", msg, 50)[0]
    assert msg[52 : 48 + match_len].hex() == tlvs


@pytest.mark.parametrize(
    ("action", "encoded"),
    [
        ("output:7", "00000010000000070000000000000000"),
        ("IN_PORT", "00000010fffffff80000000000000000"),
        ("NORMAL", "00000010fffffffa0000000000000000"),
        ("LOCAL", "00000010fffffffe0000000000000000"),
        ("push_vlan:0x8100", "0011000881000000"),
        ("pop_vlan", "0012000800000000"),
        ("group:5", "0016000800000005"),
        ("resubmit(,60)", "ffff001000002320000efff83c000000"),
        ("resubmit(LOCAL,)", "ffff001000002320000efffeff000000"),
        ("set_field:0x1001->vlan_vid", "0019001080000c021001000000000000"),
        ("set_field:0x3e9->tun_id", "0019001080004c0800000000000003e9"),
        ("set_field:10.0.0.1->arp_spa", "0019001080002c040a00000100000000"),
        (
            "move:NXM_NX_REG0[0..3]->NXM_NX_REG1[4..7]",
            "001c00180004000000040000000100040001020400000000",
        ),
        (
            "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]",  # OXM ids where the field has one
            "001c00180030000000000000800008068000060600000000",
        ),
        ("load:5->NXM_NX_REG0[0..3]", "0019001000010108000000050000000f"),
    ],
)
def test_actions(action: str, encoded: str) -> None:
    msg = encode_flow_mod(parse_flow(f"actions={action}", "br"), ADD, {})
    assert struct.unpack_from("!HH", msg, 56) == (4, 8 + len(encoded) // 2)
    assert msg[64:].hex() == encoded


def test_learn_spec_layout() -> None:
    learn = (
        "learn(table=20,hard_timeout=300,priority=1,cookie=0xf10c800000000000,"
        "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
        "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[])"
    )
    action = encode_flow_mod(parse_flow(f"actions={learn}", "br"), ADD, {})[64:]
    fields = struct.unpack_from("!HHIHHHHQHBxHH", action)
    assert fields == (0xFFFF, 96, 0x2320, 16, 0, 300, 1, 0xF10C800000000000, 0, 20, 0, 0)
    specs = [
        "000c 00000802 0000 00000802 0000",  # NXM_OF_VLAN_TCI[0..11]: match, 12 bits
        "0030 00000406 0000 00000206 0000",  # NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[]: match
        "2810 0000 00000802 0000",  # load:0->NXM_OF_VLAN_TCI[]: immediate (16 bits) to load
        "0840 00012008 0000 00012008 0000",  # load:TUN_ID[]->TUN_ID[]: field to load
        "1020 80000004 0000",  # output:OXM_OF_IN_PORT[]: field (32 bits) to output
        "00000000",  # zero padding to a multiple of 8 bytes, read as the end
    ]
    assert action[32:].hex() == "".join(specs).replace(" ", "")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("nw_tos=4,actions=drop", "unsupported match field"),
        ("nw_src=10.0.0.1,actions=drop", "needs dl_type"),
        ("ip,arp_tpa=10.0.0.1,actions=drop", "needs dl_type"),
        ("tp_dst=80,ip,actions=drop", "needs nw_proto"),
        ("dl_vlan=5,vlan_tci=0x1005,actions=drop", "dl_vlan and vlan_tci"),
        ("vlan_tci=0x2000/0xe000,actions=drop", "no exact OpenFlow 1.5"),
        ("dl_type=0x800/0xff00,actions=drop", "takes no mask"),
        ("in_port=NORMAL,actions=drop", "unsupported in_port"),
        ("actions=CONTROLLER", "unsupported action"),
        ("actions=output:CONTROLLER", "unsupported output"),
        ("actions=output:0", "not a switch port"),
        ("actions=output:4294967040", "not a switch port"),
        ("actions=ct(commit)", "needs an ip or ipv6 match"),
        ("arp,actions=ct(commit)", "needs an ip or ipv6 match"),
        ("ip,actions=ct(commit,nat)", "unsupported ct argument"),
        ("ip,actions=ct(commit,alg=ftp)", "unsupported ct argument"),
        ("ip,actions=ct(zone=1,exec(set_field:1->ct_mark))", "needs commit"),
        ("ip,actions=ct(commit,exec(set_field:1->reg0))", "unsupported action in ct exec"),
        ("ip,actions=ct(commit,zone=NXM_NX_REG6[0..7])", "16-bit subfield"),
        ("ip,actions=ct(zone=65536)", "out of range"),
        ("ip,actions=ct(table=255)", "out of range"),
        ("actions=conjunction(1,1/2),resubmit(,5)", "conjunction with other actions"),
        ("actions=conjunction(1,1/2),goto_table:5", "conjunction with other actions"),
        ("actions=conjunction(1,3/2)", "bad conjunction clause"),
        ("actions=conjunction(1,1/1)", "bad conjunction clause"),
        ("actions=conjunction(4294967296,1/2)", "out of range"),
        ("ct_state=+est+est,actions=drop", "bad ct_state"),
        ("ct_state=+bogus,actions=drop", "bad ct_state"),
        ("ct_state=0x100/0x100,actions=drop", "out of range"),
        ("ct_zone=1/1,actions=drop", "takes no mask"),
        ("conj_id=1/1,actions=drop", "takes no mask"),
        ("reg5=0x100000000,actions=drop", "out of range"),
        ("tcp,icmp_type=3,actions=drop", "needs nw_proto 1"),
        ("icmp_code=3,actions=drop", "needs dl_type"),
        ("icmp,tp_dst=3,actions=drop", "needs nw_proto 6, 17 or 132"),
        ("actions=resubmit(70000,5)", "does not fit in 16 bits"),
        ("actions=goto_table:5,output:1", "unsupported action"),
        ("actions=move:NXM_NX_REG0[0..3]->NXM_NX_REG1[0..4]", "different widths"),
        ("actions=move:NXM_NX_REG0[0..32]->NXM_NX_REG1[]", "out of field"),
        ("actions=move:NXM_NX_XXREG0[]->NXM_NX_REG1[]", "unknown NXM field"),
        ("actions=load:16->NXM_NX_REG0[0..3]", "out of range"),
        ("actions=set_field:5->nw_ttl", "unsupported set_field"),
        ("actions=set_field:0x5->vlan_vid", "without OFPVID_PRESENT"),
        ("actions=push_vlan:0x800", "unsupported push_vlan"),
        ("actions=learn(table=1,limit=10,NXM_OF_ETH_DST[])", "unsupported learn argument"),
        ("actions=learn(table=1,NXM_OF_ETH_TYPE[]=0x800)", "unsupported learn argument"),
        ("actions=learn(table=1,NXM_NX_REG0[]=NXM_OF_ETH_SRC[])", "different widths"),
    ],
)
def test_refusals(text: str, why: str) -> None:
    with pytest.raises(UnsupportedFlow, match=why):
        encode_flow_mod(parse_flow(text, "br"), ADD, {})


def test_refusals_of_actions_the_record_does_not_parse() -> None:
    encoder = FlowModEncoder({})
    for action in ("resubmit(,5,ct)", "resubmit(1)", "learn(table=1", "set_field:1"):
        with pytest.raises(UnsupportedFlow):
            encoder.action(action)


def test_unknown_port_names_the_port() -> None:
    for text in ("in_port=tapx,actions=drop", "actions=output:tapx", "actions=resubmit(tapx,)"):
        with pytest.raises(UnknownPort, match="tapx") as info:
            encode_flow_mod(parse_flow(text, "br"), ADD, {"tapy": 3})
        assert info.value.port == "tapx"


def test_delete_strict_needs_only_the_match() -> None:
    flow = parse_flow("table=4,priority=3,dl_vlan=9,actions=ct(commit),CONTROLLER", "br")
    msg = encode_flow_mod(flow, DELETE_STRICT, {})
    assert len(msg) == 56 + 8 and msg[25] == DELETE_STRICT
    with pytest.raises(UnsupportedFlow):
        encode_flow_mod(flow, ADD, {})
    with pytest.raises(UnsupportedFlow, match="command"):
        encode_flow_mod(flow, 1, {})


@given(
    vlan=st.integers(0, 4095),
    mac=st.binary(min_size=6, max_size=6),
    tun_id=st.integers(0, 2**64 - 1),
    port=st.integers(1, 0xFFFFFEFF),
    cookie=st.integers(0, 2**64 - 1),
    priority=st.integers(0, 65535),
    table=st.integers(0, 254),
)
def test_table20_shape_roundtrip(
    vlan: int, mac: bytes, tun_id: int, port: int, cookie: int, priority: int, table: int
) -> None:
    text_mac = ":".join(f"{b:02x}" for b in mac)
    flow = parse_flow(
        f"cookie={cookie},table={table},priority={priority},dl_vlan={vlan},dl_dst={text_mac},"
        f"actions=pop_vlan,set_field:{tun_id}->tun_id,output:p",
        "br",
    )
    msg = encode_flow_mod(flow, ADD, {"p": port})
    assert len(msg) == 120
    _check_framing(msg, flow, ADD)
    assert msg[52:68] == struct.pack("!I6sIH", 0x80000606, mac, 0x80000C02, 0x1000 | vlan)
    assert struct.unpack_from("!Q", msg, 96)[0] == tun_id
    assert struct.unpack_from("!I", msg, 108)[0] == port
