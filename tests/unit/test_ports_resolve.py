"""Which flows of a delta the switch can take, given the ports it has."""

from __future__ import annotations

from flowkeeper.flows.flowset import FlowDelta
from flowkeeper.flows.ports import flow_ports, renumbered, resolve_ports, stale_by_number
from flowkeeper.flows.record import Flow, parse_flow


def flow(text: str, bridge: str = "br-int") -> Flow:
    return parse_flow(text, bridge)


DISPATCH = flow("table=0,priority=10,in_port=tapA,actions=mod_vlan_vid:1,resubmit(,60)")
TO_A = flow("table=60,priority=20,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,actions=output:tapA")
FLOOD = flow("table=60,priority=5,dl_vlan=1,actions=output:patch-tun,strip_vlan,output:tapA")
NUMBERED = flow("table=0,priority=10,in_port=7,actions=drop")


def test_flow_ports_names_in_port_and_outputs_only() -> None:
    assert flow_ports(DISPATCH) == {"tapA"}
    assert flow_ports(FLOOD) == {"patch-tun", "tapA"}
    assert flow_ports(NUMBERED) == set()
    assert flow_ports(flow("table=1,priority=1,actions=IN_PORT")) == set()


def test_everything_goes_when_every_port_is_there() -> None:
    delta = FlowDelta(add=[DISPATCH, TO_A], modify=[FLOOD], delete=[NUMBERED])
    out = resolve_ports(delta, {"tapA": 3, "patch-tun": 1}, {})
    assert out.send == delta and out.applied == delta
    assert not out.deferred and not out.missing


def test_flows_naming_a_port_the_switch_lacks_wait() -> None:
    delta = FlowDelta(add=[DISPATCH, TO_A], modify=[FLOOD])
    out = resolve_ports(delta, {"patch-tun": 1}, {})
    assert not out.send and not out.applied
    assert out.deferred == delta
    assert out.missing == {"tapA"}


def test_a_gone_port_is_deleted_by_the_number_it_last_had() -> None:
    delta = FlowDelta(delete=[DISPATCH, TO_A])
    out = resolve_ports(delta, {"patch-tun": 1}, {"tapA": 5})
    assert out.applied.delete == [DISPATCH, TO_A]  # as the agent knows them
    sent = out.send.delete
    assert sent[0].match == (("in_port", "5"),) and sent[0].key != DISPATCH.key
    assert sent[1] is TO_A  # deleted by match only: its output needs no port
    assert not out.deferred


def test_a_gone_port_with_no_known_number_waits() -> None:
    out = resolve_ports(FlowDelta(delete=[DISPATCH]), {}, {})
    assert not out.send and out.deferred.delete == [DISPATCH]
    assert out.missing == {"tapA"}


def test_a_port_recreated_with_another_number_is_found() -> None:
    used = {"tapA": 5, "tapB": 6, "vxlan-c6120002": 2}
    now = {"tapA": 105, "tapB": 6, "patch-tun": 1}
    assert renumbered(used, now) == {"tapA": 5}  # tapB kept its number; the tunnel is gone
    assert renumbered({}, now) == {}


def test_flows_of_a_renumbered_port_are_forgotten_and_its_in_port_flow_deleted_by_number() -> None:
    other = flow("table=0,priority=10,in_port=tapB,actions=mod_vlan_vid:2,resubmit(,60)")
    forget, deletes = stale_by_number([DISPATCH, TO_A, FLOOD, other, NUMBERED], {"tapA": 5})
    assert forget == [DISPATCH, TO_A, FLOOD]
    # Only the in_port flow needs a delete: adding the others by name replaces them.
    assert [d.match for d in deletes] == [(("in_port", "5"),)]
    assert deletes[0].table == DISPATCH.table and deletes[0].priority == DISPATCH.priority
