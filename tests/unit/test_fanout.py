"""Targeted fan-out: hosts get exactly what changes their view, and nothing else."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from flowkeeper.model import Host, Network, Port, WatchEvent
from flowkeeper.server.fanout import HostState, fan_out
from flowkeeper.server.world import Rewound, World, build_view
from tests.unit.cpfake import Cluster, FakeLog, Replay, normal

HOSTS = ("h1", "h2", "h3", "h4")
Op = tuple[str, object, int]  # (operation, argument, number)
NETS = ("n1", "n2", "n3")


def net(i: str, seg: int = 0) -> Network:
    return Network(i, f"name-{i}", "vxlan", seg or 100 + NETS.index(i))


def port(pid: int, network: str, host: str, status: str = "DOWN") -> Port:
    return Port(
        f"p{pid}",
        network,
        host,
        f"fa:16:3e:00:00:{pid:02x}",
        (f"10.0.0.{pid}",),
        "ACTIVE" if status == "ACTIVE" else "DOWN",
    )


def test_first_port_brings_the_network_and_its_whole_fdb() -> None:
    c = Cluster()
    c.feed(c.log.put_network(net("n1")))
    c.feed(c.log.put_port(port(1, "n1", "h2")))
    c.feed(c.log.put_port(port(2, "n1", "h3")))
    out = c.feed(c.log.put_port(port(3, "n1", "h1")))
    msgs = out["h1"]
    assert [(m.kind, m.op) for m in msgs] == [("network", "put")] + [("port", "put")] * 3
    assert {m.object.id for m in msgs if isinstance(m.object, Port)} == {"p1", "p2", "p3"}
    assert out["h4"] == []  # no port on n1: nothing at all
    assert [m.object.id for m in out["h2"] if m.object] == ["p3"]


def test_port_events_on_other_networks_are_not_sent() -> None:
    c = Cluster()
    c.feed(c.log.put_network(net("n1")))
    c.feed(c.log.put_network(net("n2")))
    c.feed(c.log.put_port(port(1, "n1", "h1")))
    out = c.feed(c.log.put_port(port(2, "n2", "h2")))
    assert out["h1"] == []
    out = c.feed(c.log.put_port(replace(port(2, "n2", "h2"), status="ACTIVE")))
    assert out["h1"] == [] and len(out["h2"]) == 1


def test_network_events_only_for_networks_in_view() -> None:
    c = Cluster()
    c.feed(c.log.put_network(net("n1")))
    assert all(m == [] for m in c.sent.values())  # a new network goes to nobody
    c.feed(c.log.put_port(port(1, "n1", "h1")))
    out = c.feed(c.log.put_network(replace(net("n1"), segmentation_id=999)))
    assert [m.kind for m in out["h1"]] == ["network"] and out["h2"] == []


def test_last_port_leaving_drops_the_network() -> None:
    c = Cluster()
    c.feed(c.log.put_network(net("n1")))
    c.feed(c.log.put_port(port(1, "n1", "h1")))
    c.feed(c.log.put_port(port(2, "n1", "h2")))
    out = c.feed(c.log.delete_port("p1"))
    assert [(m.kind, m.op) for m in out["h1"]] == [("port", "delete"), ("network", "delete")]
    assert [(m.kind, m.op) for m in out["h2"]] == [("port", "delete")]
    out = c.feed(c.log.put_port(replace(port(2, "n1", "h2"), status="ACTIVE")))
    assert out["h1"] == []  # h1 left n1: no more n1 updates


def test_port_moved_to_another_host_leaves_the_old_hosts_view() -> None:
    c = Cluster()
    c.feed(c.log.put_network(net("n1")))
    c.feed(c.log.put_port(port(1, "n1", "h1")))
    c.feed(c.log.put_port(port(2, "n1", "h2")))
    out = c.feed(c.log.put_port(port(1, "n1", "h3")))  # p1 moves h1 -> h3
    assert [(m.kind, m.op) for m in out["h1"]] == [("port", "delete"), ("network", "delete")]
    assert (out["h3"][0].kind, out["h3"][0].op) == ("network", "put")
    assert [(m.kind, m.op) for m in out["h2"]] == [("port", "put")]


def test_host_tunnel_ip_change_refreshes_its_fdb_entries() -> None:
    c = Cluster()
    c.feed(c.log.put_host(Host("h2", "198.18.0.2")))
    c.feed(c.log.put_network(net("n1")))
    c.feed(c.log.put_port(port(1, "n1", "h1")))
    c.feed(c.log.put_port(port(2, "n1", "h2")))
    out = c.feed(c.log.put_host(Host("h2", "198.18.0.22")))
    assert [m.object.tunnel_ip for m in out["h1"] if isinstance(m.object, Port)] == ["198.18.0.22"]
    assert out["h3"] == []
    same = c.feed(c.log.put_host(Host("h2", "198.18.0.22", l2pop=False)))
    assert same["h1"] == []  # tunnel IP unchanged: nothing to resend


def test_deleting_a_host_without_ports_tells_its_peers_nothing() -> None:
    """The store refuses a host delete while ports are bound to it, so its peers already
    dropped its FDB entries with the port deletes; a later registration under the same name
    with another tunnel IP re-puts the ports bound there by then."""
    c = Cluster()
    c.feed(c.log.put_host(Host("h2", "198.18.0.2")))
    c.feed(c.log.put_network(net("n1")))
    c.feed(c.log.put_port(port(1, "n1", "h1", "ACTIVE")))
    c.feed(c.log.put_port(port(2, "n1", "h2", "ACTIVE")))
    out = c.feed(c.log.delete_port("p2"))
    assert [(m.kind, m.op) for m in out["h1"]] == [("port", "delete")]
    out = c.feed(c.log.delete_host("h2"))
    assert all(msgs == [] for msgs in out.values())
    assert c.world.tunnel_ip("h2") is None and "h2" not in c.world.hosts
    c.feed(c.log.put_port(port(3, "n1", "h2", "ACTIVE")))  # bound before it registers again
    out = c.feed(c.log.put_host(Host("h2", "198.18.0.22")))
    assert [(m.op, m.object.id, m.object.tunnel_ip) for m in out["h1"]] == [  # type: ignore[union-attr]
        ("put", "p3", "198.18.0.22")
    ]


def test_a_host_deleted_with_ports_still_bound_leaves_them_without_a_tunnel_ip() -> None:
    """Not a state the store allows (it refuses the delete); fan-out stays exact anyway:
    the peers' copies of those ports lose their tunnel IP, as the view has them."""
    c = Cluster()
    c.feed(c.log.put_host(Host("h2", "198.18.0.2")))
    c.feed(c.log.put_network(net("n1")))
    c.feed(c.log.put_port(port(1, "n1", "h1", "ACTIVE")))
    c.feed(c.log.put_port(port(2, "n1", "h2", "ACTIVE")))
    out = c.feed(c.log.delete_host("h2"))
    assert [(m.op, m.object.id, m.object.tunnel_ip) for m in out["h1"]] == [  # type: ignore[union-attr]
        ("put", "p2", None)
    ]
    assert out["h3"] == []
    replay = Replay()
    replay.apply(c.sent["h1"])
    assert replay.as_view(5) == normal(build_view(c.world, "h1", 5))


def test_a_rewound_world_brings_back_a_deleted_host() -> None:
    log = FakeLog()
    log.put_host(Host("h2", "198.18.0.2"))
    log.put_network(net("n1"))
    log.put_port(port(1, "n1", "h1"))
    log.put_port(port(2, "n1", "h2"))
    log.delete_port("p2")
    log.delete_host("h2")
    log.put_host(Host("h2", "198.18.0.22"))
    head = World()
    for e in log.events:
        head.apply(e)
    assert Rewound(head, log.events[5:]).tunnel_ip("h2") == "198.18.0.2"
    assert Rewound(head, log.events[6:]).tunnel_ip("h2") is None
    assert Rewound(head, log.events[4:]).ports_of("h2")[0].id == "p2"


# --- properties -------------------------------------------------------------------------
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("net"), st.sampled_from(NETS), st.integers(1, 3)),
        st.tuples(st.just("delnet"), st.sampled_from(NETS), st.just(0)),
        st.tuples(st.just("port"), st.integers(1, 8), st.integers(0, 11)),
        st.tuples(st.just("status"), st.integers(1, 8), st.just(0)),
        st.tuples(st.just("delport"), st.integers(1, 8), st.just(0)),
        st.tuples(st.just("host"), st.sampled_from(HOSTS), st.integers(1, 3)),
        st.tuples(st.just("delhost"), st.sampled_from(HOSTS), st.just(0)),
    ),
    max_size=60,
)


def run_ops(log: FakeLog, ops: list[Op]) -> None:
    """Apply random writes, skipping those the store would refuse."""
    for op, a, b in ops:
        if op == "net":
            log.put_network(net(str(a), seg=100 * b))
        elif op == "delnet" and ("network", a) in log.objects:
            if all(p.network_id != a for p in log.ports()):
                log.delete_network(str(a))
        elif op == "port" and log.networks():
            nets = sorted(n.id for n in log.networks())
            log.put_port(port(int(str(a)), nets[b % len(nets)], HOSTS[b % len(HOSTS)]))
        elif op == "status" and ("port", f"p{a}") in log.objects:
            p = log.objects[("port", f"p{a}")]
            assert isinstance(p, Port)
            log.put_port(replace(p, status="ACTIVE" if p.status == "DOWN" else "DOWN"))
        elif op == "delport" and ("port", f"p{a}") in log.objects:
            log.delete_port(f"p{a}")
        elif op == "host":
            log.put_host(Host(str(a), f"198.18.{b}.{HOSTS.index(str(a)) + 1}"))
        elif op == "delhost" and ("host", a) in log.objects and not _bound(log, str(a)):
            log.delete_host(str(a))  # the store refuses it while ports are bound there


def _bound(log: FakeLog, host: str) -> bool:
    return any(p.host == host for p in log.ports())


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_replaying_a_hosts_messages_yields_its_view_after_every_event(ops: list[Op]) -> None:
    log = FakeLog()
    run_ops(log, ops)
    c = Cluster()
    replays = {h: Replay() for h in HOSTS}
    for event in log.events:
        before = {h: s.networks() for h, s in c.states.items()}
        out = c.feed(event)
        for h, msgs in out.items():
            # never a message about a network outside the host's view before or after
            touched = before[h] | c.states[h].networks()
            for m in msgs:
                obj = m.object
                net_id = (
                    obj.id
                    if isinstance(obj, Network)
                    else obj.network_id
                    if isinstance(obj, Port)
                    else ""
                )
                prev = event.prev
                old_net = prev.network_id if isinstance(prev, Port) else None
                assert net_id in touched or old_net in touched, (h, m)
            replays[h].apply(msgs)
            want = normal(build_view(c.world, h, event.revision))
            assert replays[h].as_view(event.revision) == want, (h, event)


@settings(max_examples=200, deadline=None)
@given(OPS, st.data())
def test_catch_up_from_any_revision_matches_the_live_stream(
    ops: list[Op], data: st.DataObject
) -> None:
    """A watcher that starts at R (server rewinds its World to R) gets exactly the messages a
    watcher connected since R got, so resuming loses nothing."""
    log = FakeLog()
    run_ops(log, ops)
    start = data.draw(st.integers(0, log.revision))
    live = Cluster()
    views: dict[str, Replay] = {}
    for event in log.events[:start]:
        live.feed(event)
    for h in HOSTS:
        views[h] = Replay(build_view(live.world, h, start))
        live.sent[h] = []
    for event in log.events[start:]:
        live.feed(event)
    head = live.world  # the server's World at the head
    later = log.events[start:]
    for h in HOSTS:
        rewound = Rewound(head, later)
        state = HostState.from_world(h, rewound)
        got: list[WatchEvent] = []
        for event in later:
            rewound.apply(event)
            got += fan_out(state, event, rewound)
        assert got == live.sent[h]
        views[h].apply(got)
        assert views[h].as_view(log.revision) == normal(build_view(head, h, log.revision))


def test_rewound_world_equals_the_world_at_that_revision() -> None:
    log = FakeLog()
    log.put_host(Host("h1", "198.18.0.1"))
    log.put_network(net("n1"))
    log.put_port(port(1, "n1", "h1"))
    log.put_port(port(2, "n1", "h2"))
    mid = World()
    for e in log.events:
        mid.apply(e)
    log.delete_port("p1")
    log.put_host(Host("h1", "198.18.0.9"))
    log.put_port(port(3, "n1", "h2"))
    head = World()
    for e in log.events:
        head.apply(e)
    rewound = Rewound(head, log.events[4:])
    for h in ("h1", "h2"):
        assert normal(build_view(rewound, h, 4)) == normal(build_view(mid, h, 4))
    assert rewound.tunnel_ip("h1") == "198.18.0.1"


@settings(max_examples=200, deadline=None)
@given(OPS, st.data())
def test_a_paged_catch_up_while_the_world_moves_matches_the_live_stream(
    ops: list[Op], data: st.DataObject
) -> None:
    """The server's paged catch-up: the World is at L0 when a watcher subscribes from R;
    while it scans (R, L0] and then walks forward, the World goes on applying events (each
    recorded into the Rewound first). The watcher still gets what a live one got."""
    log = FakeLog()
    run_ops(log, ops)
    start = data.draw(st.integers(0, log.revision))
    target = data.draw(st.integers(start, log.revision))
    live = Cluster()
    for event in log.events[:start]:
        live.feed(event)
    for h in HOSTS:
        live.sent[h] = []
    for event in log.events[start:target]:
        live.feed(event)
    pending = list(log.events[target:])  # the World applies these while the watcher works
    first: dict[tuple[str, str], object] = {}
    live_first: dict[tuple[str, str], object] = {}
    for event in log.events[start:target]:  # pass 1, with live events in between
        first.setdefault((event.kind, event.id), event.prev)
        if data.draw(st.booleans()) and pending:
            e = pending.pop(0)
            live_first.setdefault((e.kind, e.id), e.prev)
            live.feed(e)
    for key, value in live_first.items():
        first.setdefault(key, value)
    h = data.draw(st.sampled_from(HOSTS))
    rewound = Rewound.from_values(live.world, first)  # type: ignore[arg-type]
    state = HostState.from_world(h, rewound)
    got: list[WatchEvent] = []
    position = start
    while position < live.world.revision:  # pass 2
        event = log.events[position]
        rewound.apply(event)
        got += fan_out(state, event, rewound)
        position = event.revision
        if data.draw(st.booleans()) and pending:
            e = pending.pop(0)
            rewound.record(e)
            live.feed(e)
    assert got == live.sent[h][: len(got)]
    assert len(got) == len(live.sent[h])
    assert rewound.overrides() == 0  # caught up: nothing left to remember


def test_a_rewound_world_keeps_what_the_live_world_changes_after_it() -> None:
    """h1 joins n1 at revision 3, so it gets n1's full FDB as of 3; the live World has
    meanwhile deleted p2 and moved h2. The rewound view must still show both as of 3."""
    log = FakeLog()
    log.put_host(Host("h2", "198.18.0.2"))
    log.put_network(net("n1"))
    log.put_port(port(2, "n1", "h2"))
    join = log.put_port(port(1, "n1", "h1"))
    world = World()
    for e in log.events:
        world.apply(e)
    rewound = Rewound.from_values(world, {("port", "p1"): None})  # the world at `start`
    state = HostState.from_world("h1", rewound)
    for e in (log.delete_port("p2"), log.put_host(Host("h2", "198.18.0.22"))):
        rewound.record(e)  # what the hub does before the World applies a live event
        world.apply(e)
    rewound.apply(join)
    msgs = fan_out(state, join, rewound)
    assert [(m.kind, m.op, getattr(m.object, "id", "")) for m in msgs] == [
        ("network", "put", "n1"),
        ("port", "put", "p1"),
        ("port", "put", "p2"),
    ]
    assert [m.object.tunnel_ip for m in msgs[1:] if isinstance(m.object, Port)] == [
        None,
        "198.18.0.2",
    ]
