"""Targeted fan-out of security groups: a host gets the groups its ports use and the
members of the groups those name as remote groups, and nothing else."""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st

from flowkeeper.agent.mirror import Mirror
from flowkeeper.model import (
    AddressPair,
    GroupMember,
    Host,
    Network,
    Port,
    SecurityGroup,
    SecurityGroupRule,
    WatchEvent,
)
from flowkeeper.server.fanout import HostState, concerned, concerned_before, fan_out
from flowkeeper.server.world import Rewound, World, build_view
from tests.unit.cpfake import Cluster, FakeLog, Replay, normal

HOSTS = ("h1", "h2", "h3", "h4")
NETS = ("n1", "n2")
GROUPS = ("g1", "g2", "g3", "g4")
Op = tuple[str, int, int]


def net(i: str) -> Network:
    return Network(i, f"name-{i}", "vxlan", 100 + NETS.index(i))


def group(gid: str, remotes: tuple[str, ...] = (), tcp: bool = False) -> SecurityGroup:
    rules = [SecurityGroupRule(f"{gid}-r-{r}", "ingress", remote_group_id=r) for r in remotes]
    rules.append(SecurityGroupRule(f"{gid}-egress", "egress"))
    if tcp:
        rules.append(
            SecurityGroupRule(
                f"{gid}-ssh", "ingress", protocol="tcp", port_range_min=22, port_range_max=22
            )
        )
    return SecurityGroup(gid, f"name-{gid}", rules=tuple(rules))


def port(
    pid: int,
    network: str,
    host: str,
    groups: tuple[str, ...] = (),
    secure: bool = True,
    pairs: tuple[str, ...] = (),
    ip: int = 0,
) -> Port:
    return Port(
        f"p{pid}",
        network,
        host,
        f"fa:16:3e:00:00:{pid:02x}",
        (f"10.0.{ip}.{pid}",),
        security_groups=groups if secure else (),
        port_security_enabled=secure,
        allowed_address_pairs=tuple(AddressPair(a) for a in pairs) if secure else (),
    )


def subset(code: int, items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(x for i, x in enumerate(items) if code >> i & 1)


def kinds(msgs: list[WatchEvent]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for m in msgs:
        obj = m.object
        name = (
            f"{obj.group_id}/{obj.port_id}"
            if isinstance(obj, GroupMember)
            else getattr(obj, "id", "")
        )
        out.append((m.kind, m.op, name))
    return out


def seeded() -> Cluster:
    """h1 has p1 in g1 (g1: ingress from g2); h2 has p2 in g2; h3 has p3 in g3."""
    c = Cluster()
    c.feed(c.log.put_network(net("n1")))
    c.feed(c.log.put_network(net("n2")))
    c.feed(c.log.put_group(group("g2")))
    c.feed(c.log.put_group(group("g3")))
    c.feed(c.log.put_group(group("g1", ("g2",))))
    c.feed(c.log.put_port(port(2, "n2", "h2", ("g2",))))
    c.feed(c.log.put_port(port(3, "n2", "h3", ("g3",))))
    c.feed(c.log.put_port(port(1, "n1", "h1", ("g1",))))
    return c


def test_a_hosts_first_port_in_a_group_brings_the_group_and_its_remote_members() -> None:
    c = seeded()
    assert kinds(c.sent["h1"]) == [
        ("network", "put", "n1"),
        ("port", "put", "p1"),
        ("security_group", "put", "g1"),
        ("member", "put", "g2/p2"),
    ]
    assert kinds(c.sent["h4"]) == []
    # h3 uses g3 only, which names no remote group: it never hears of g1, g2 or p2
    assert [k for k in kinds(c.sent["h3"]) if k[0] in ("security_group", "member")] == [
        ("security_group", "put", "g3")
    ]


def test_a_members_change_goes_only_to_hosts_referencing_its_group() -> None:
    c = seeded()
    moved = replace(port(2, "n2", "h2", ("g2",)), fixed_ips=("10.0.9.2",))
    out = c.feed(c.log.put_port(moved))
    assert kinds(out["h1"]) == [("member", "put", "g2/p2")]
    assert out["h1"][0].object == GroupMember("g2", "p2", ("10.0.9.2",))
    assert out["h4"] == [] and kinds(out["h3"]) == [("port", "put", "p2")]
    out = c.feed(c.log.put_port(replace(moved, status="ACTIVE")))
    assert out["h1"] == []  # the member's IPs did not change
    pairs = (AddressPair("10.0.100.0/24"),)
    out = c.feed(c.log.put_port(replace(moved, allowed_address_pairs=pairs)))
    assert [m.object for m in out["h1"]] == [GroupMember("g2", "p2", ("10.0.100.0/24", "10.0.9.2"))]
    out = c.feed(c.log.put_port(replace(moved, security_groups=("g3",), allowed_address_pairs=())))
    assert kinds(out["h1"]) == [("member", "delete", "g2/p2")]
    assert [k for k in kinds(out["h2"]) if k[0] == "security_group"] == [
        ("security_group", "delete", "g2"),
        ("security_group", "put", "g3"),
    ]


def test_port_security_off_removes_a_member_and_the_groups_its_host_used() -> None:
    c = seeded()
    out = c.feed(c.log.put_port(port(2, "n2", "h2", secure=False)))
    assert kinds(out["h1"]) == [("member", "delete", "g2/p2")]
    assert ("security_group", "delete", "g2") in kinds(out["h2"])


def test_a_rule_naming_a_remote_group_brings_and_takes_its_members() -> None:
    c = seeded()
    out = c.feed(c.log.put_group(group("g1", ("g2", "g3"))))
    assert kinds(out["h1"]) == [("security_group", "put", "g1"), ("member", "put", "g3/p3")]
    assert all(out[h] == [] for h in ("h2", "h3", "h4"))  # they do not use g1
    out = c.feed(c.log.put_group(group("g1", ("g3",))))
    assert kinds(out["h1"]) == [("security_group", "put", "g1"), ("member", "delete", "g2/p2")]
    out = c.feed(c.log.put_group(group("g2", tcp=True)))  # h1 does not use g2: nothing
    assert out["h1"] == [] and kinds(out["h2"]) == [("security_group", "put", "g2")]


def test_a_hosts_last_port_in_a_group_takes_the_group_and_its_remote_members() -> None:
    c = seeded()
    out = c.feed(c.log.delete_port("p1"))
    assert kinds(out["h1"]) == [
        ("port", "delete", "p1"),
        ("network", "delete", "n1"),
        ("security_group", "delete", "g1"),
        ("member", "delete", "g2/p2"),
    ]


def test_a_group_naming_itself_holds_its_hosts_own_ports_as_members() -> None:
    """Neutron's default group: ingress from its own members, on any host."""
    c = Cluster()
    c.feed(c.log.put_network(net("n1")))
    c.feed(c.log.put_group(group("g1", ("g1",))))
    c.feed(c.log.put_port(port(1, "n1", "h1", ("g1",))))
    c.feed(c.log.put_port(port(2, "n1", "h2", ("g1",))))
    assert kinds(c.sent["h1"])[-2:] == [("port", "put", "p2"), ("member", "put", "g1/p2")]
    assert ("member", "put", "g1/p1") in kinds(c.sent["h1"])
    assert ("member", "put", "g1/p1") in kinds(c.sent["h2"])


# --- properties -------------------------------------------------------------------------
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("net"), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("port"), st.integers(1, 8), st.integers(0, 1 << 12)),
        st.tuples(st.just("secure"), st.integers(1, 8), st.integers(0, 1 << 8)),
        st.tuples(st.just("delport"), st.integers(1, 8), st.just(0)),
        st.tuples(st.just("group"), st.integers(0, 3), st.integers(0, 1 << 5)),
        st.tuples(st.just("delgroup"), st.integers(0, 3), st.just(0)),
        st.tuples(st.just("host"), st.integers(0, 3), st.integers(1, 3)),
    ),
    min_size=12,
    max_size=60,
)


class Security(NamedTuple):
    secure: bool
    groups: tuple[str, ...]
    pairs: tuple[str, ...]
    ip: int


def _security(code: int, existing: set[str]) -> Security:
    groups = tuple(g for g in subset(code >> 1, GROUPS) if g in existing)
    pairs = ("10.1.0.0/24",) if code >> 5 & 1 else ()
    return Security(code & 1 == 0, groups, pairs, code >> 6 & 3)


def run_ops(log: FakeLog, ops: list[Op]) -> None:
    """Random writes; a port names only groups that exist and a used group is not deleted
    (the store refuses both), but a group named as remote may be deleted. Every group and
    network exists at first."""
    for gid in GROUPS:
        log.put_group(group(gid))
    for nid in NETS:
        log.put_network(net(nid))
    for op, a, b in ops:
        existing = {g.id for g in log.groups()}
        if op == "net":
            log.put_network(net(NETS[a]))
        elif op == "port" and log.networks():
            nets = sorted(n.id for n in log.networks())
            s = _security(b >> 4, existing)
            host = HOSTS[(b >> 2) % len(HOSTS)]
            log.put_port(port(a, nets[b % len(nets)], host, s.groups, s.secure, s.pairs, s.ip))
        elif op == "secure" and ("port", f"p{a}") in log.objects:
            p = log.objects[("port", f"p{a}")]
            assert isinstance(p, Port)
            s = _security(b, existing)
            log.put_port(port(a, p.network_id, p.host, s.groups, s.secure, s.pairs, s.ip))
        elif op == "delport" and ("port", f"p{a}") in log.objects:
            log.delete_port(f"p{a}")
        elif op == "group":
            log.put_group(group(GROUPS[a], subset(b, GROUPS), tcp=bool(b >> 4 & 1)))
        elif op == "delgroup" and GROUPS[a] in existing:
            if not any(GROUPS[a] in p.security_groups for p in log.ports()):
                log.delete_group(GROUPS[a])
        elif op == "host":
            log.put_host(Host(HOSTS[a], f"198.18.{b}.{a + 1}"))


def _held(world: World, host: str) -> tuple[set[str], set[str]]:
    """(used groups, referenced groups) of a host, from the world."""
    view = build_view(world, host, 0)
    used = {g.id for g in view.security_groups}
    return used, {r for g in view.security_groups for r in g.remote_groups()}


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_replaying_a_hosts_messages_yields_its_view_after_every_event(ops: list[Op]) -> None:
    """The invariant: after any sequence of store events, what a host built from its
    messages equals its view recomputed from the world; and a host gets a message about a
    group only if it uses (or references) that group before or after the event, and the
    hub's targeting never leaves out a host that gets a message."""
    log = FakeLog()
    run_ops(log, ops)
    c = Cluster()
    replays = {h: Replay() for h in HOSTS}
    mirrors = {h: Mirror() for h in HOSTS}  # the agent's side of the same messages
    for event in log.events:
        before = {h: _held(c.world, h) for h in HOSTS}
        hub_before = concerned_before(event, c.world)
        out = c.feed(event)
        targets = concerned(event, c.world, hub_before)
        for h, msgs in out.items():
            used = before[h][0] | _held(c.world, h)[0]
            refs = before[h][1] | _held(c.world, h)[1]
            for m in msgs:
                if isinstance(m.object, SecurityGroup):
                    assert m.object.id in used, (h, m)
                if isinstance(m.object, GroupMember):
                    assert m.object.group_id in refs, (h, m)
            if msgs and targets is not None:
                assert h in targets, (h, event, msgs)
            replays[h].apply(msgs)
            want = normal(build_view(c.world, h, event.revision))
            assert replays[h].as_view(event.revision) == want, (h, event)
            for m in msgs:
                assert mirrors[h].apply(m.revision, m.kind, m.op, m.object), m
            r, mirror = replays[h], mirrors[h]
            assert (mirror.ports, mirror.groups, mirror.members) == (
                r.ports,
                r.groups,
                r.members,
            )


@settings(max_examples=200, deadline=None)
@given(OPS, st.data())
def test_catch_up_from_any_revision_matches_the_live_stream(
    ops: list[Op], data: st.DataObject
) -> None:
    """A watcher that starts at R (the server rewinds its World to R) gets exactly the
    messages a watcher connected since R got, groups and members included."""
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
    head = live.world
    later = log.events[start:]
    for h in HOSTS:
        rewound = Rewound(head, later)
        assert normal(build_view(rewound, h, start)) == normal(views[h].as_view(start))
        state = HostState.from_world(h, rewound)
        got: list[WatchEvent] = []
        for event in later:
            rewound.apply(event)
            got += fan_out(state, event, rewound)
        assert got == live.sent[h]
        views[h].apply(got)
        assert views[h].as_view(log.revision) == normal(build_view(head, h, log.revision))
        assert rewound.overrides() == 0


def test_world_indexes_follow_ports_and_groups() -> None:
    c = seeded()
    w = c.world
    assert w.hosts_using("g2") == {"h2"} and w.referencing("g2") == {"g1"}
    assert w.hosts_referencing({"g2"}) == {"h1"}
    assert [p.id for p in w.members_of("g2")] == ["p2"]
    c.feed(c.log.put_port(port(2, "n2", "h3", ("g2",))))  # p2 moves to h3
    assert w.hosts_using("g2") == {"h3"}
    c.feed(c.log.put_group(group("g1")))
    assert w.referencing("g2") == set() and w.hosts_referencing({"g2"}) == set()
    c.feed(c.log.delete_port("p2"))
    assert w.members_of("g2") == [] and w.hosts_using("g2") == set()
