"""Twin switch slots: the flows HostView.slot_link adds (and that without it nothing changes)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings

from flowkeeper.flows.actions import split_actions
from flowkeeper.flows.flowset import FlowSet
from flowkeeper.flows.record import Flow, parse_flow
from flowkeeper.naming import BR_INT, BR_TUN, PATCH_TUN, SLOT_LINK, SLOT_LINK_OFPORT
from flowkeeper.pipeline import firewall as fw
from flowkeeper.pipeline import tables as t
from flowkeeper.pipeline.build import build_flows
from flowkeeper.pipeline.incremental import IncrementalBuild
from flowkeeper.pipeline.tables import cookie_for
from flowkeeper.pipeline.view import GroupView, HostView, LocalPort, NetworkView, RemotePort
from tests.unit.test_firewall import fw_views_st
from tests.unit.test_pipeline import views

COOKIE = cookie_for(5)
NET = NetworkView("net-a", "vxlan", 1001, 1)
OTHER = NetworkView("net-b", "gre", 2002, 2)  # no local port: only the flood flows
SG = "sg-1"
REMOTE = RemotePort("rp1", "net-a", "fa:16:3e:01:00:01", "198.18.0.3", ("198.19.2.1",))


def vif(i: int, *, secure: bool = False) -> LocalPort:
    return LocalPort(
        f"lp{i}",
        NET.id,
        f"tap{i}",
        f"fa:16:3e:00:00:0{i}",
        (f"198.19.1.{i}",),
        port_security=secure,
        security_groups=(SG,) if secure else (),
    )


def host(*ports: LocalPort, slot_link: bool = True, firewall: bool = False) -> HostView:
    return HostView(
        "198.18.0.2",
        cookie=COOKIE,
        networks=(NET, OTHER),
        local_ports=ports,
        remote_ports=(REMOTE,),
        firewall=firewall,
        groups=(GroupView(SG, ()),) if firewall else (),
        slot_link=slot_link,
    )


def int_flows(view: HostView, *tables: int) -> set[Flow]:
    return {f for f in build_flows(view) if f.bridge == BR_INT and f.table in tables}


def expect(*lines: str) -> set[Flow]:
    return {parse_flow(f"cookie={COOKIE:#x},{line}", BR_INT) for line in lines}


def test_the_slot_links_name_and_number() -> None:
    assert (SLOT_LINK, SLOT_LINK_OFPORT) == ("fk-slot", 65000)


# The flows of br-int table 0 and 60 (the firewall off), by number of local ports.
DISPATCH = (
    "table=0,priority=0,actions=drop",
    "table=0,priority=10,in_port=patch-tun,actions=resubmit(,60)",
    "table=0,priority=10,in_port=fk-slot,actions=resubmit(,60)",
)
SWITCH = (
    "table=60,priority=0,actions=drop",
    "table=60,priority=10,dl_vlan=1,dl_dst=fa:16:3e:01:00:01,actions=output:patch-tun",
    # net-b has no local port: its floods from the tunnels or the other slot go nowhere
    "table=60,priority=5,dl_vlan=2,actions=output:patch-tun,output:fk-slot",
    "table=60,priority=6,in_port=patch-tun,dl_vlan=2,actions=drop",
    "table=60,priority=6,in_port=fk-slot,dl_vlan=2,actions=drop",
)
BY_PORTS = {
    0: (
        "table=60,priority=5,dl_vlan=1,actions=output:patch-tun,output:fk-slot",
        "table=60,priority=6,in_port=patch-tun,dl_vlan=1,actions=drop",
        "table=60,priority=6,in_port=fk-slot,dl_vlan=1,actions=drop",
    ),
    1: (
        "table=0,priority=10,in_port=tap1,actions=mod_vlan_vid:1,resubmit(,60)",
        "table=60,priority=20,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,"
        "actions=output:fk-slot,strip_vlan,output:tap1",
        "table=60,priority=21,in_port=patch-tun,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,"
        "actions=strip_vlan,output:tap1",
        "table=60,priority=5,dl_vlan=1,actions=output:patch-tun,output:fk-slot,"
        "strip_vlan,output:tap1",
        "table=60,priority=6,in_port=patch-tun,dl_vlan=1,actions=strip_vlan,output:tap1",
        "table=60,priority=6,in_port=fk-slot,dl_vlan=1,actions=strip_vlan,output:tap1",
    ),
    2: (
        "table=0,priority=10,in_port=tap1,actions=mod_vlan_vid:1,resubmit(,60)",
        "table=0,priority=10,in_port=tap2,actions=mod_vlan_vid:1,resubmit(,60)",
        "table=60,priority=20,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,"
        "actions=output:fk-slot,strip_vlan,output:tap1",
        "table=60,priority=21,in_port=patch-tun,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,"
        "actions=strip_vlan,output:tap1",
        "table=60,priority=20,dl_vlan=1,dl_dst=fa:16:3e:00:00:02,"
        "actions=output:fk-slot,strip_vlan,output:tap2",
        "table=60,priority=21,in_port=patch-tun,dl_vlan=1,dl_dst=fa:16:3e:00:00:02,"
        "actions=strip_vlan,output:tap2",
        "table=60,priority=5,dl_vlan=1,actions=output:patch-tun,output:fk-slot,"
        "strip_vlan,output:tap1,output:tap2",
        "table=60,priority=6,in_port=patch-tun,dl_vlan=1,"
        "actions=strip_vlan,output:tap1,output:tap2",
        "table=60,priority=6,in_port=fk-slot,dl_vlan=1,actions=strip_vlan,output:tap1,output:tap2",
    ),
}
# The same views without the slot link: the flows of before.
WITHOUT = {
    0: ("table=60,priority=5,dl_vlan=1,actions=output:patch-tun",),
    1: (
        "table=0,priority=10,in_port=tap1,actions=mod_vlan_vid:1,resubmit(,60)",
        "table=60,priority=20,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,actions=strip_vlan,output:tap1",
        "table=60,priority=5,dl_vlan=1,actions=output:patch-tun,strip_vlan,output:tap1",
    ),
    2: (
        "table=0,priority=10,in_port=tap1,actions=mod_vlan_vid:1,resubmit(,60)",
        "table=0,priority=10,in_port=tap2,actions=mod_vlan_vid:1,resubmit(,60)",
        "table=60,priority=20,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,actions=strip_vlan,output:tap1",
        "table=60,priority=20,dl_vlan=1,dl_dst=fa:16:3e:00:00:02,actions=strip_vlan,output:tap2",
        "table=60,priority=5,dl_vlan=1,actions=output:patch-tun,strip_vlan,output:tap1,output:tap2",
    ),
}


@pytest.mark.parametrize("n", [0, 1, 2])
def test_switching_and_flooding_with_the_slot_link(n: int) -> None:
    v = host(*(vif(i) for i in range(1, n + 1)))
    assert int_flows(v, 0, 60) == expect(*DISPATCH, *SWITCH, *BY_PORTS[n])
    assert not int_flows(v, *t.FIREWALL_TABLES)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_without_the_slot_link_the_flows_of_before(n: int) -> None:
    v = host(*(vif(i) for i in range(1, n + 1)), slot_link=False)
    before = (
        "table=60,priority=0,actions=drop",
        "table=60,priority=10,dl_vlan=1,dl_dst=fa:16:3e:01:00:01,actions=output:patch-tun",
        "table=60,priority=5,dl_vlan=2,actions=output:patch-tun",
    )
    assert int_flows(v, 0, 60) == expect(*DISPATCH[:2], *before, *WITHOUT[n])
    assert not [f for f in build_flows(v) if SLOT_LINK in f.render()]


def test_br_tun_is_the_same_with_or_without_the_slot_link() -> None:
    for firewall in (False, True):
        on = host(vif(1, secure=firewall), vif(2), firewall=firewall)
        off = replace(on, slot_link=False)
        assert build_flows(on).for_bridge(BR_TUN) == build_flows(off).for_bridge(BR_TUN)


def _fw_lines(reg5: str, n: int) -> tuple[str, ...]:
    """Tables 0, 60, 73 and 94 with the firewall on: lp1 is protected, lp2 (n=2) is not."""
    lines = [
        "table=0,priority=0,actions=drop",
        "table=0,priority=10,in_port=patch-tun,actions=resubmit(,60)",
        "table=0,priority=10,in_port=fk-slot,actions=resubmit(,60)",
        "table=60,priority=0,actions=resubmit(,94)",
        "table=94,priority=0,actions=drop",
        "table=94,priority=10,dl_vlan=1,dl_dst=fa:16:3e:01:00:01,actions=output:patch-tun",
        "table=94,priority=5,dl_vlan=2,actions=output:patch-tun,output:fk-slot",
        "table=94,priority=6,in_port=patch-tun,dl_vlan=2,actions=drop",
        "table=94,priority=6,in_port=fk-slot,dl_vlan=2,actions=drop",
        "table=73,priority=0,actions=drop",
    ]
    if n == 0:
        return (
            *lines,
            "table=94,priority=5,dl_vlan=1,actions=output:patch-tun,output:fk-slot",
            "table=94,priority=6,in_port=patch-tun,dl_vlan=1,actions=drop",
            "table=94,priority=6,in_port=fk-slot,dl_vlan=1,actions=drop",
        )
    ingress = f"set_field:{reg5}->reg5,set_field:0x1->reg6,pop_vlan,resubmit(,81)"
    lines += [
        "table=0,priority=10,in_port=tap1,actions=mod_vlan_vid:1,resubmit(,60)",
        # lp1's own egress (port_flows, unchanged by the slot link)
        f"table=60,priority=100,in_port=tap1,"
        f"actions=set_field:{reg5}->reg5,set_field:0x1->reg6,resubmit(,71)",
        f"table=73,priority=90,ct_state=+new-est,ip,reg5={reg5},"
        "actions=ct(commit,zone=1),resubmit(,91)",
        f"table=73,priority=80,reg5={reg5},actions=resubmit(,94)",
        # lp1's ingress dispatch: copied to the other slot, but what came from patch-tun
        f"table=60,priority=90,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,actions=output:fk-slot,{ingress}",
        f"table=60,priority=91,in_port=patch-tun,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,"
        f"actions={ingress}",
        "table=73,priority=100,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,reg6=0x1,"
        f"actions=output:fk-slot,set_field:{reg5}->reg5,pop_vlan,resubmit(,81)",
        "table=94,priority=20,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,"
        "actions=output:fk-slot,strip_vlan,output:tap1",
        "table=94,priority=21,in_port=patch-tun,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,"
        "actions=strip_vlan,output:tap1",
    ]
    locals_ = "output:tap1" if n == 1 else "output:tap1,output:tap2"
    lines += [
        f"table=94,priority=5,dl_vlan=1,actions=output:patch-tun,output:fk-slot,"
        f"strip_vlan,{locals_}",
        f"table=94,priority=6,in_port=patch-tun,dl_vlan=1,actions=strip_vlan,{locals_}",
        f"table=94,priority=6,in_port=fk-slot,dl_vlan=1,actions=strip_vlan,{locals_}",
    ]
    if n == 2:
        lines += [
            "table=0,priority=10,in_port=tap2,actions=mod_vlan_vid:1,resubmit(,60)",
            "table=94,priority=20,dl_vlan=1,dl_dst=fa:16:3e:00:00:02,"
            "actions=output:fk-slot,strip_vlan,output:tap2",
            "table=94,priority=21,in_port=patch-tun,dl_vlan=1,dl_dst=fa:16:3e:00:00:02,"
            "actions=strip_vlan,output:tap2",
        ]
    return tuple(lines)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_the_firewalls_dispatch_with_the_slot_link(n: int) -> None:
    ports = [vif(1, secure=True), vif(2)][:n]
    v = host(*ports, firewall=True)
    reg5 = f"{fw.plan(v).numbers['lp1']:#x}" if n else ""
    assert int_flows(v, 0, 60, 73, 94) == expect(*_fw_lines(reg5, n))
    # Every other firewall table is as without the slot link.
    rest = (t.BASE_EGRESS, t.RULES_EGRESS, t.BASE_INGRESS, t.RULES_INGRESS, 91, 92, 93)
    assert int_flows(v, *rest) == int_flows(replace(v, slot_link=False), *rest)


def test_the_firewalls_dispatch_without_the_slot_link_is_that_of_before() -> None:
    v = host(vif(1, secure=True), vif(2), firewall=True, slot_link=False)
    reg5 = f"{fw.plan(v).numbers['lp1']:#x}"
    dispatch = {f for f in int_flows(v, 60, 73) if "dl_dst" in dict(f.match)}
    assert dispatch == expect(
        "table=60,priority=90,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,"
        f"actions=set_field:{reg5}->reg5,set_field:0x1->reg6,pop_vlan,resubmit(,81)",
        "table=73,priority=100,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,reg6=0x1,"
        f"actions=set_field:{reg5}->reg5,pop_vlan,resubmit(,81)",
    )


def without_slot_link(flows: FlowSet) -> FlowSet:
    """The slot link's flows taken back out: the copies to it, the flows that match it,
    and the flows one priority up for what came from patch-tun (p6, p21, p91)."""
    out = FlowSet()
    for f in flows:
        match = dict(f.match)
        if match.get("in_port") == SLOT_LINK:
            continue
        if match.get("in_port") == PATCH_TUN and f.table in (60, 94) and f.priority in (6, 21, 91):
            continue
        actions = [a for a in split_actions(f.actions) if a != f"output:{SLOT_LINK}"]
        out.add(replace(f, actions=",".join(actions)))
    return out


@settings(max_examples=200, deadline=None)
@given(views)
def test_the_slot_link_only_adds_copies_and_flows_of_its_own(view: HostView) -> None:
    on, off = replace(view, slot_link=True), replace(view, slot_link=False)
    assert without_slot_link(build_flows(on)) == build_flows(off)
    assert not [f for f in build_flows(off) if SLOT_LINK in f.render()]


@settings(max_examples=200, deadline=None)
@given(fw_views_st)
def test_the_slot_link_only_adds_copies_and_flows_of_its_own_with_the_firewall(
    view: HostView,
) -> None:
    on, off = replace(view, slot_link=True), replace(view, slot_link=False)
    assert without_slot_link(build_flows(on)) == build_flows(off)
    assert not [f for f in build_flows(off) if SLOT_LINK in f.render()]


def test_every_slot_flow_is_canonical() -> None:
    v = host(vif(1, secure=True), vif(2), firewall=True)
    for flow in build_flows(v):
        assert parse_flow(flow.render(), flow.bridge) == flow, flow.render()


@pytest.mark.parametrize("firewall", [False, True])
def test_turning_the_slot_link_on_and_off_rebuilds_what_depends_on_it(firewall: bool) -> None:
    off = host(vif(1, secure=firewall), vif(2), firewall=firewall, slot_link=False)
    on = replace(off, slot_link=True)
    inc = IncrementalBuild()
    inc.update(off)
    for v, before in ((on, off), (off, on), (on, off)):
        changed = inc.update(v)
        assert inc.desired == build_flows(v)
        old, new = build_flows(before), build_flows(v)
        moved = {f.key for f in new if old.get(f.key) != f} | {
            f.key for f in old if new.get(f.key) != f
        }
        assert moved and moved <= changed
    assert inc.update(on) == set()
