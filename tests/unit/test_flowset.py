"""FlowSet identity and the delta between desired and installed flows."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from flowkeeper.flows.flowset import FlowSet, diff
from flowkeeper.flows.record import Flow, parse_flow


def flow(text: str, bridge: str = "br-tun") -> Flow:
    return parse_flow(text, bridge)


def test_diff_sorts_adds_modifies_deletes() -> None:
    keep = flow("table=0,priority=1,in_port=1,actions=resubmit(,2)")
    old = flow("table=20,priority=2,dl_vlan=1,actions=output:2")
    new = flow("table=20,priority=2,dl_vlan=1,actions=output:3")
    gone = flow("table=22,priority=1,dl_vlan=9,actions=drop")
    added = flow("table=22,priority=1,dl_vlan=7,actions=drop")
    delta = diff(FlowSet([keep, new, added]), FlowSet([keep, old, gone]))
    assert delta.add == [added]
    assert delta.modify == [new]
    assert delta.delete == [gone]
    assert len(delta) == 3


def test_cookie_change_is_a_modify() -> None:
    a = flow("cookie=1,table=0,priority=1,actions=drop")
    b = flow("cookie=2,table=0,priority=1,actions=drop")
    delta = diff(FlowSet([b]), FlowSet([a]))
    assert delta.modify == [b] and not delta.add and not delta.delete


def test_delta_per_bridge() -> None:
    a = flow("table=0,priority=1,actions=drop", "br-int")
    b = flow("table=0,priority=1,actions=drop", "br-tun")
    delta = diff(FlowSet([a, b]), FlowSet())
    assert delta.bridges() == ["br-int", "br-tun"]
    assert delta.for_bridge("br-int").add == [a]


vlans = st.integers(min_value=1, max_value=4094)
flows_strategy = st.lists(
    st.builds(
        lambda v, p, out: flow(f"table=20,priority={p},dl_vlan={v},actions=output:{out}"),
        vlans,
        st.integers(min_value=0, max_value=3),
        st.integers(min_value=1, max_value=9),
    ),
    max_size=40,
)


@given(flows_strategy, flows_strategy)
def test_applying_the_delta_gives_the_desired_set(
    desired: list[Flow], installed: list[Flow]
) -> None:
    want, have = FlowSet(desired), FlowSet(installed)
    delta = diff(want, have)
    result = have.copy()
    for f in delta.delete:
        result.discard(f.key)
    for f in [*delta.modify, *delta.add]:
        result.add(f)
    assert result == want
    assert not diff(want, want)


def test_ignore_cookie_leaves_cookie_only_changes_alone() -> None:
    a = flow("cookie=1,table=0,priority=1,actions=drop")
    b = flow("cookie=2,table=0,priority=1,actions=drop")
    c = flow("cookie=2,table=0,priority=1,actions=output:3")
    assert not diff(FlowSet([b]), FlowSet([a]), ignore_cookie=True)
    assert diff(FlowSet([c]), FlowSet([a]), ignore_cookie=True).modify == [c]
