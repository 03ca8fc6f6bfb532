"""The incremental pipeline equals the full one, and its key-restricted diff equals the
full diff whenever installed matched the previous desired flows."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from flowkeeper.flows.flowset import FlowDelta, FlowSet, diff
from flowkeeper.flows.record import Flow
from flowkeeper.pipeline.build import build_flows
from flowkeeper.pipeline.incremental import IncrementalBuild, diff_keys
from flowkeeper.pipeline.tables import cookie_for
from flowkeeper.pipeline.view import HostView, NetworkView, RemotePort
from tests.unit.test_pipeline import NETS, local, locals_st, remote, remotes_st

EXTRA = (NetworkView("net-c", "vxlan", 3003, 3), NetworkView("net-a", "vxlan", 1001, 4))

networks_st = st.lists(st.sampled_from(NETS + EXTRA), unique_by=lambda n: n.id, max_size=3)
views_st = st.builds(
    lambda nets, lp, rp, l2pop, arp, gen, slot_link: HostView(
        "198.18.0.2",
        l2pop,
        arp,
        cookie_for(gen),
        tuple(sorted(nets)),
        tuple(lp),
        tuple(rp),
        slot_link=slot_link,
    ),
    networks_st,
    locals_st,
    remotes_st,
    st.booleans(),
    st.booleans(),
    st.integers(1, 2),
    st.booleans(),
)


def same(a: FlowDelta, b: FlowDelta) -> bool:
    def key(f: Flow) -> tuple[object, ...]:
        return (*f.key, f.actions, f.cookie)

    return all(
        sorted(x, key=key) == sorted(y, key=key)
        for x, y in ((a.add, b.add), (a.modify, b.modify), (a.delete, b.delete))
    )


@settings(max_examples=300)
@given(st.lists(views_st, min_size=1, max_size=6))
def test_incremental_build_equals_the_full_build_after_every_update(
    views: list[HostView],
) -> None:
    inc = IncrementalBuild()
    previous = FlowSet()
    for view in views:
        changed = inc.update(view)
        full = build_flows(view)
        assert inc.desired == full
        # Installed as the previous step left it: the restricted diff sees all there is.
        fast = diff_keys(full, previous, changed)
        assert same(fast, diff(full, previous, ignore_cookie=True))
        previous = full


def test_a_moved_remote_port_changes_only_its_own_flows() -> None:
    ports = tuple(remote(i, "net-a", 3) for i in range(1, 9))
    view = HostView("198.18.0.2", True, True, cookie_for(1), NETS, (local(1, "net-b"),), ports)
    inc = IncrementalBuild()
    inc.update(view)
    moved = (*ports[:-1], RemotePort(**{**ports[-1].__dict__, "tunnel_ip": "198.18.0.9"}))
    changed = inc.update(replace(view, remote_ports=moved))
    delta = diff_keys(inc.desired, build_flows(view), changed)
    # Its unicast flow on br-tun, the flood list (a new tunnel), the new tunnel's dispatch.
    assert {(f.table, f.priority) for f in delta.modify} == {(20, 2), (22, 1)}
    assert [f.match for f in delta.add] == [(("in_port", "vxlan-c6120009"),)]
    assert not delta.delete
    assert len(changed) == 3


def test_an_unchanged_view_changes_nothing() -> None:
    view = HostView("198.18.0.2", True, True, cookie_for(1), NETS, (local(1, "net-a"),), ())
    inc = IncrementalBuild()
    assert inc.update(view)
    assert inc.update(replace(view)) == set()
