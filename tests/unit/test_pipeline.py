"""Property tests of the pure pipeline HostView -> FlowSet."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from flowkeeper.flows.flowset import diff
from flowkeeper.flows.record import parse_flow, parse_rendered
from flowkeeper.pipeline.build import build_flows
from flowkeeper.pipeline.tables import ARP_RESPONDER, FLOOD_TO_TUN, UCAST_TO_TUN, cookie_for
from flowkeeper.pipeline.view import HostView, LocalPort, NetworkView, RemotePort
from flowkeeper.pipeline.vlans import allocate

NETS = (
    NetworkView("net-a", "vxlan", 1001, 1),
    NetworkView("net-b", "gre", 2002, 2),
)


def local(i: int, net: str) -> LocalPort:
    return LocalPort(f"lp{i}", net, f"tap{i:011d}", f"fa:16:3e:00:00:{i:02x}", (f"198.19.1.{i}",))


def remote(i: int, net: str, host: int) -> RemotePort:
    return RemotePort(
        f"rp{i}", net, f"fa:16:3e:01:00:{i:02x}", f"198.18.0.{host}", (f"198.19.2.{i}",)
    )


locals_st = st.lists(
    st.builds(local, st.integers(1, 60), st.sampled_from(["net-a", "net-b"])),
    unique_by=lambda p: p.id,
    max_size=8,
)
remotes_st = st.lists(
    st.builds(remote, st.integers(1, 60), st.sampled_from(["net-a", "net-b"]), st.integers(3, 9)),
    unique_by=lambda p: p.id,
    max_size=12,
)
views = st.builds(
    lambda lp, rp, l2pop, arp, slot_link: HostView(
        "198.18.0.2", l2pop, arp, cookie_for(7), NETS, tuple(lp), tuple(rp), slot_link=slot_link
    ),
    locals_st,
    remotes_st,
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


@given(views)
def test_same_input_same_flowset(view: HostView) -> None:
    assert build_flows(view) == build_flows(replace(view))
    shuffled = replace(
        view,
        local_ports=tuple(reversed(view.local_ports)),
        remote_ports=tuple(reversed(view.remote_ports)),
    )
    assert build_flows(shuffled) == build_flows(view)


@given(views)
def test_diff_against_itself_is_empty(view: HostView) -> None:
    flows = build_flows(view)
    assert not diff(flows, flows)


@settings(max_examples=50)
@given(views, st.integers(61, 90), st.sampled_from(["net-a", "net-b"]), st.booleans())
def test_add_then_remove_port_gives_identical_flowset(
    view: HostView, i: int, net: str, is_local: bool
) -> None:
    before = build_flows(view)
    if is_local:
        grown = replace(view, local_ports=(*view.local_ports, local(i, net)))
    else:
        grown = replace(view, remote_ports=(*view.remote_ports, remote(i, net, 4)))
    if is_local or view.l2pop:
        assert build_flows(grown) != before
    assert build_flows(view) == before


def test_l2pop_flows_and_arp_responder() -> None:
    view = HostView(
        "198.18.0.2",
        True,
        True,
        cookie_for(1),
        NETS,
        (local(1, "net-a"),),
        (remote(2, "net-a", 3), remote(3, "net-b", 4)),
    )
    flows = list(build_flows(view))
    ucast = [f for f in flows if f.table == UCAST_TO_TUN and f.priority == 2]
    assert {dict(f.match)["dl_dst"] for f in ucast} == {"fa:16:3e:01:00:02", "fa:16:3e:01:00:03"}
    assert any("output:vxlan-c6120003" in f.actions for f in ucast)
    assert any("output:gre-c6120004" in f.actions for f in ucast)
    arp = [f for f in flows if f.table == ARP_RESPONDER and f.priority == 1]
    assert {dict(f.match)["arp_tpa"] for f in arp} == {"198.19.2.2", "198.19.2.3"}
    assert all(f.actions.endswith("IN_PORT") for f in arp)
    assert all(f.cookie == cookie_for(1) for f in flows)
    assert not any("NORMAL" in f.actions for f in flows)


def test_without_l2pop_no_unicast_or_arp_flows_but_flooding() -> None:
    view = HostView(
        "198.18.0.2", False, True, 0, NETS, (local(1, "net-a"),), (remote(2, "net-a", 3),)
    )
    flows = list(build_flows(view))
    assert not [f for f in flows if f.table == UCAST_TO_TUN and f.priority == 2]
    assert not [f for f in flows if f.table == ARP_RESPONDER]
    flood = [f for f in flows if f.table == FLOOD_TO_TUN and f.priority == 1]
    assert len(flood) == 1 and "vxlan-c6120003" in flood[0].actions


def test_vlan_allocation_is_stable_and_reuses_free_ids() -> None:
    first = allocate({}, ["n1", "n2", "n3"])
    assert first == {"n1": 1, "n2": 2, "n3": 3}
    assert allocate(first, ["n1", "n2", "n3"]) == first
    second = allocate(first, ["n1", "n3", "n4"])
    assert second == {"n1": 1, "n3": 3, "n4": 2}
    assert allocate({"a": 5, "b": 5}, ["a", "b"]) == {"a": 5, "b": 1}


@given(views)
def test_every_flow_is_already_canonical(view: HostView) -> None:
    """The pipeline's fast path writes flows exactly as the canonical parser would."""
    for f in build_flows(view):
        assert parse_flow(f.render(), f.bridge) == f


@given(views)
def test_rendered_lines_parse_back_fast(view: HostView) -> None:
    for f in build_flows(view):
        assert parse_rendered(f.render(), f.bridge) == f
