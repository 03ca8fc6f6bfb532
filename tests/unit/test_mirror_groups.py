"""The agent's mirror of security groups and members: applied once, persisted with the
snapshot (old snapshots without them still load), assembled into the HostView."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from flowkeeper.agent.mirror import LocalVif, Mirror, assemble, bound_ports
from flowkeeper.agent.persist import Inputs, Persistence, mirror_from
from flowkeeper.flows.flowset import FlowDelta, FlowSet
from flowkeeper.flows.record import parse_flow
from flowkeeper.model import (
    AddressPair,
    GroupMember,
    Network,
    Port,
    SecurityGroup,
    SecurityGroupRule,
    WatchEvent,
)
from flowkeeper.pipeline.view import GroupView, RuleView
from flowkeeper.snapshot.content import SnapshotData

NET = Network("11111111-1111-1111-1111-111111111111", "a", "vxlan", 101)
WEB = SecurityGroup(
    "web",
    "web",
    rules=(
        SecurityGroupRule("r1", "ingress", protocol="tcp", port_range_min=80, port_range_max=80),
        SecurityGroupRule("r2", "ingress", remote_group_id="db"),
        SecurityGroupRule("r3", "egress", remote_ip_prefix="198.18.0.0/15"),
    ),
)
DB = SecurityGroup("db", "db", rules=(SecurityGroupRule("r4", "ingress", remote_group_id="web"),))


def port(i: int, host: str, groups: tuple[str, ...] = ("web",), secure: bool = True) -> Port:
    return Port(
        f"p{i}",
        NET.id,
        host,
        f"fa:16:3e:00:00:{i:02x}",
        (f"10.0.0.{i}",),
        "ACTIVE",
        tunnel_ip=f"198.18.0.{i}",
        security_groups=groups if secure else (),
        port_security_enabled=secure,
        allowed_address_pairs=(AddressPair("10.0.1.0/24"),) if secure else (),
    )


def loaded() -> Mirror:
    m = Mirror()
    m.load(
        7,
        [NET],
        [port(1, "h1"), port(2, "h1", secure=False), port(3, "h2", ("db",))],
        [WEB, DB],
        [GroupMember("db", "p3", ("10.0.0.3",)), GroupMember("db", "p9", ("10.0.9.0/24",))],
    )
    return m


def test_assemble_fills_the_ports_security_fields_groups_and_members() -> None:
    m = loaded()
    bound = bound_ports(m, "h1", [LocalVif("tap1", "p1"), LocalVif("tap2", "p2")])
    kw = dict(host="h1", tunnel_ip="198.18.0.1", l2pop=True, arp_responder=True, cookie=1)
    v = assemble(m, bound=bound, vlans={NET.id: 1}, firewall=True, **kw)  # type: ignore[arg-type]
    p1, p2 = v.local_ports
    assert (p1.port_security, p1.security_groups) == (True, ("web",))
    assert p1.allowed_pairs == (("fa:16:3e:00:00:01", "10.0.1.0/24"),)
    assert (p2.port_security, p2.security_groups, p2.allowed_pairs) == (False, (), ())
    assert v.firewall
    # db is held (the server sent it) but no local port uses it: not in the view
    assert v.groups == (
        GroupView(
            "web",
            (
                RuleView("egress", "IPv4", remote_ip_prefix="198.18.0.0/15"),
                RuleView("ingress", "IPv4", remote_group="db"),
                RuleView("ingress", "IPv4", "tcp", 80, 80),
            ),
        ),
    )
    assert v.members == (("db", ("10.0.0.3", "10.0.9.0/24")),)
    plain = assemble(m, bound=bound, vlans={NET.id: 1}, **kw)  # type: ignore[arg-type]
    assert not plain.firewall  # the caller's flag, off by default


def test_a_port_without_a_vlan_brings_no_groups() -> None:
    m = loaded()
    bound = {"p1": "tap1"}
    kw = dict(host="h1", tunnel_ip="198.18.0.1", l2pop=True, arp_responder=True, cookie=1)
    v = assemble(m, bound=bound, vlans={}, firewall=True, **kw)  # type: ignore[arg-type]
    assert v.groups == () and v.members == ()


def test_watch_events_of_groups_and_members() -> None:
    m = loaded()
    member = GroupMember("db", "p3", ("10.0.0.3",))
    assert m.apply(8, "member", "delete", member)
    assert not m.apply(8, "member", "delete", member)  # a repeat of the open revision
    assert m.apply(8, "security_group", "delete", DB)
    assert m.apply(9, "member", "put", GroupMember("db", "p4", ("10.0.0.4",)))
    assert sorted(m.members) == [("db", "p4"), ("db", "p9")]
    assert sorted(m.groups) == ["web"]
    copy = m.copy()
    m.apply(10, "security_group", "put", DB)
    assert sorted(copy.groups) == ["web"]  # a copy shares nothing


# A history of group and member events, cut anywhere and resumed: each applied once.
EVENTS = st.lists(
    st.lists(
        st.tuples(st.sampled_from(["put", "delete"]), st.integers(1, 4), st.booleans()),
        min_size=1,
        max_size=4,
        unique_by=lambda t: (t[1], t[2]),
    ),
    min_size=1,
    max_size=10,
)


def history(spec: list[list[tuple[str, int, bool]]]) -> list[WatchEvent]:
    out = []
    for n, group in enumerate(spec, start=1):
        for op, i, is_member in group:
            if is_member:
                obj: GroupMember | SecurityGroup = GroupMember("db", f"p{i}", (f"10.0.{n}.{i}",))
                out.append(WatchEvent(n, "member", op, obj))  # type: ignore[arg-type]
            else:
                obj = SecurityGroup(f"g{i}", f"g{i}", revision=n)
                out.append(WatchEvent(n, "security_group", op, obj))  # type: ignore[arg-type]
    return out


@given(spec=EVENTS, breaks=st.lists(st.integers(0, 40), max_size=4))
def test_a_watch_broken_anywhere_applies_each_group_event_once(
    spec: list[list[tuple[str, int, bool]]], breaks: list[int]
) -> None:
    events = history(spec)
    head = events[-1].revision
    reference = Mirror()
    for e in events:
        assert reference.apply(e.revision, e.kind, e.op, e.object)
    m = Mirror()
    applied: list[WatchEvent] = []
    pending = list(breaks)
    while True:
        after = m.resume_from()
        msgs = [e for e in events if e.revision > after] + [WatchEvent(head, "heartbeat", "")]
        cut = pending.pop(0) if pending else None
        for k, msg in enumerate(msgs):
            if cut is not None and k == cut:
                break
            if msg.kind == "heartbeat":
                m.complete(msg.revision)
            elif m.apply(msg.revision, msg.kind, msg.op, msg.object):
                applied.append(msg)
        else:
            break
    assert applied == events
    assert (m.groups, m.members) == (reference.groups, reference.members)


def _inputs(mirror: Mirror, installed: FlowSet | None) -> Inputs:
    return Inputs(
        revision=mirror.revision,
        generation=1,
        vlans={NET.id: 1},
        tunnels=set(),
        mirror=mirror,
        installed=installed,
        devices={},
        epoch=1,
    )


def test_groups_and_members_are_persisted_with_the_mirror(tmp_path: Path) -> None:
    """A reboot with the server down has them: from the snapshot and its journal."""
    persist = Persistence(tmp_path)
    m = loaded()
    persist.note_list()
    flow = parse_flow("cookie=0x1,table=60,priority=100,in_port=1,actions=drop", "br-int")
    persist.record(_inputs(m.copy(), FlowSet([flow])), FlowDelta(), [])
    events = [
        WatchEvent(8, "member", "delete", GroupMember("db", "p9", ("10.0.9.0/24",))),
        WatchEvent(8, "member", "put", GroupMember("db", "p5", ("10.0.0.5",))),
        WatchEvent(8, "security_group", "put", SecurityGroup("g9", "g9", revision=8)),
        WatchEvent(8, "security_group", "delete", DB),
    ]
    for e in events:
        assert m.apply(e.revision, e.kind, e.op, e.object)
        persist.note_event(e)
    persist.record(_inputs(m.copy(), None), FlowDelta(), persist.take_pending())
    report = Persistence(tmp_path).store.load()
    assert report.data is not None and report.journal_records == 1
    back = mirror_from(report.data)
    assert (back.groups, back.members, back.ports) == (m.groups, m.members, m.ports)
    # compacted again: the same from the snapshot alone
    persist.record(_inputs(m.copy(), FlowSet([flow])), FlowDelta(), [])
    report = Persistence(tmp_path).store.load()
    assert report.data is not None and report.journal_records == 0
    back = mirror_from(report.data)
    assert (back.groups, back.members) == (m.groups, m.members)


def test_a_snapshot_written_before_security_groups_still_loads() -> None:
    data = SnapshotData(revision=3, generation=1, networks={NET.id: NET.to_dict()})
    meta = data.meta()
    del meta["security_groups"], meta["members"]
    old_port = port(1, "h1").to_dict()
    for key in ("security_groups", "port_security_enabled", "allowed_address_pairs"):
        del old_port[key]
    meta["ports"] = {"p1": old_port}
    back = mirror_from(SnapshotData.from_meta(meta))
    assert back.groups == {} and back.members == {}
    assert not back.ports["p1"].port_security_enabled
