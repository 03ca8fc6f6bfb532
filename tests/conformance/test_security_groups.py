"""Security groups in the store, the same tests on both backends (sqlite and etcd)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from flowkeeper.model import (
    AddressPair,
    Port,
    SecurityGroup,
    SecurityGroupRule,
    ValidationError,
)
from flowkeeper.model_sg import default_group_rules
from flowkeeper.store.base import Conflict, NotFound, Store
from tests.conformance.helpers import state

MAC = "fa:16:3e:00:00:01"


def group(
    gid: str, name: str = "web", project: str = "p1", *rules: SecurityGroupRule
) -> SecurityGroup:
    return SecurityGroup(gid, name, project, rules=rules)


def ssh(rid: str = "r-ssh") -> SecurityGroupRule:
    return SecurityGroupRule(rid, "ingress", "IPv4", "tcp", 22, 22, "198.19.0.0/16")


def secured(pid: str, mac: str, *groups: str, project: str = "p1") -> Port:
    return Port(
        pid,
        "n1",
        "h1",
        mac,
        project_id=project,
        port_security_enabled=True,
        security_groups=groups,
    )


def test_group_writes_are_one_event_each(store: Store) -> None:
    g = store.create_security_group(group("g1", "web", "p1", ssh()))
    assert g.revision == store.revision() > 0
    assert store.get_security_group("g1") == g
    icmp = SecurityGroupRule("r-icmp", "ingress", "IPv4", "icmp", 8, 0)
    g2 = store.add_security_group_rule("g1", icmp)
    assert g2.revision == store.revision() > g.revision
    assert [r.id for r in g2.rules] == ["r-icmp", "r-ssh"]
    g3 = store.delete_security_group_rule("g1", "r-ssh")
    assert g3.rules == (icmp,) and g3.revision > g2.revision
    gone = store.delete_security_group("g1")
    assert gone == g3
    events = store.events_since(0)
    assert [(e.kind, e.op, e.id) for e in events] == [
        ("security_group", "put", "g1"),
        ("security_group", "put", "g1"),
        ("security_group", "put", "g1"),
        ("security_group", "delete", "g1"),
    ]
    assert [e.revision for e in events] == [g.revision, g2.revision, g3.revision, store.revision()]
    assert events[0].object == g and events[0].prev is None
    assert events[1].prev == g and events[1].object == g2
    assert events[3].object == g3 and events[3].prev == g3
    with pytest.raises(NotFound, match="security group 'g1' not found"):
        store.get_security_group("g1")


def test_lists_and_snapshot(store: Store) -> None:
    store.create_security_group(group("g2", "db", "p2"))
    store.create_security_group(group("g1", "web", "p1", ssh()))
    groups, rev = store.list_security_groups()
    assert [g.id for g in groups] == ["g1", "g2"] and rev == store.revision()
    mine, _ = store.list_security_groups("p2")
    assert [g.id for g in mine] == ["g2"]
    assert store.list_security_groups("nobody")[0] == []
    snap = store.snapshot()
    assert snap.security_groups == groups and snap.revision == rev
    listed, _ = store.list("security_group")
    assert listed == groups


def test_one_default_group_per_project(store: Store) -> None:
    rules = default_group_rules("d1", ["a", "b", "c", "d"])
    d1 = store.create_security_group(SecurityGroup("d1", "default", "p1", rules=rules))
    assert d1.remote_groups() == {"d1"}  # itself: no remote to check
    with pytest.raises(Conflict, match="project 'p1' already has its default group 'd1'"):
        store.create_security_group(group("d2", "default", "p1"))
    store.create_security_group(group("d3", "default", "p2"))
    store.create_security_group(group("w1", "web", "p1"))
    store.create_security_group(group("w2", "web", "p1"))  # other names may repeat
    with pytest.raises(Conflict, match="security group id 'w1' already exists"):
        store.create_security_group(group("w1", "other", "p1"))
    store.delete_security_group("d1")
    store.create_security_group(group("d2", "default", "p1"))  # the name is free again


def test_rules_are_unique_in_a_group(store: Store) -> None:
    store.create_security_group(group("g1", "web", "p1", ssh()))
    before = state(store)
    same = SecurityGroupRule("other", "ingress", "IPv4", "tcp", 22, 22, "198.19.1.1/16")
    with pytest.raises(Conflict, match="group 'web' already has this rule: r-ssh"):
        store.add_security_group_rule("g1", same)
    with pytest.raises(Conflict, match="rule id 'r-ssh' already exists"):
        store.add_security_group_rule("g1", SecurityGroupRule("r-ssh", "egress"))
    with pytest.raises(NotFound, match="rule 'nope' not found in security group 'g1'"):
        store.delete_security_group_rule("g1", "nope")
    with pytest.raises(NotFound, match="security group 'g9' not found"):
        store.add_security_group_rule("g9", SecurityGroupRule("x", "egress"))
    assert state(store) == before


def test_remote_groups_must_exist_and_stay(store: Store) -> None:
    store.create_security_group(group("web", "web", "p1"))
    from_web = SecurityGroupRule("r1", "ingress", "IPv4", "tcp", 5432, 5432, remote_group_id="web")
    with pytest.raises(NotFound, match="remote group 'nope' not found"):
        store.create_security_group(
            group("db", "db", "p1", SecurityGroupRule("r0", "ingress", remote_group_id="nope"))
        )
    store.create_security_group(group("other", "x", "p2"))
    with pytest.raises(ValidationError, match="remote group 'other' is of project 'p2'"):
        store.add_security_group_rule(
            "web", SecurityGroupRule("r9", "ingress", remote_group_id="other")
        )
    store.create_security_group(group("db", "db", "p1", from_web))
    with pytest.raises(Conflict, match=r"'web' \(web\) is the remote group of rules in group 'db'"):
        store.delete_security_group("web")
    store.delete_security_group_rule("db", "r1")
    store.delete_security_group("web")
    store.add_security_group_rule("db", SecurityGroupRule("r2", "ingress", remote_group_id="db"))
    store.delete_security_group("db")  # a group naming itself is no obstacle


def test_ports_and_their_groups(store: Store) -> None:
    store.create_network("net1", "vxlan", id="n1")
    store.create_security_group(group("g1", "web", "p1"))
    store.create_security_group(group("g2", "db", "p1"))
    store.create_security_group(group("gx", "web", "p2"))
    before = state(store)
    with pytest.raises(NotFound, match="security group 'nope' not found"):
        store.create_port(secured("pa", MAC, "g1", "nope"))
    with pytest.raises(ValidationError, match="security group 'gx' is of project 'p2'"):
        store.create_port(secured("pa", MAC, "gx"))
    assert state(store) == before
    p = store.create_port(secured("pa", MAC, "g1", "g2"))
    assert store.get_port("pa").security_groups == ("g1", "g2") == p.security_groups
    with pytest.raises(Conflict, match=r"security group 'web' \(g1\) is used by port 'pa'"):
        store.delete_security_group("g1")
    p2 = store.update_port_security("pa", security_groups=("g2",))
    assert p2.security_groups == ("g2",) and p2.revision == store.revision() > p.revision
    assert store.events_since(p.revision)[0].prev == p
    store.delete_security_group("g1")  # no longer used
    assert store.update_port_security("pa", security_groups=("g2",)) == p2  # no write
    assert store.revision() > p2.revision  # (the delete above)
    rev = store.revision()
    assert store.update_port_security("pa", security_groups=("g2",)).revision == p2.revision
    assert store.revision() == rev
    with pytest.raises(NotFound, match="security group 'g1' not found"):
        store.update_port_security("pa", security_groups=("g1",))
    with pytest.raises(ValidationError, match="would have security groups without port security"):
        store.update_port_security("pa", port_security_enabled=False)
    off = store.update_port_security("pa", port_security_enabled=False, security_groups=())
    assert (off.port_security_enabled, off.security_groups) == (False, ())
    store.delete_security_group("g2")
    with pytest.raises(NotFound, match="port 'nope' not found"):
        store.update_port_security("nope", port_security_enabled=True)


def test_address_pairs_are_stored(store: Store) -> None:
    store.create_network("net1", "vxlan", id="n1")
    p = store.create_port(secured("pa", MAC))
    assert p.security_groups == () and p.port_security_enabled
    pairs = (AddressPair("198.19.5.0/24"), AddressPair("198.19.1.9", "fa:16:3e:00:00:09"))
    p2 = store.update_port_security("pa", allowed_address_pairs=pairs)
    assert p2.allowed_address_pairs == (
        AddressPair("198.19.1.9", "fa:16:3e:00:00:09"),
        AddressPair("198.19.5.0/24", MAC),
    )
    assert store.get_port("pa") == p2


def test_deleting_a_port_frees_its_groups(store: Store) -> None:
    store.create_network("net1", "vxlan", id="n1")
    store.create_security_group(group("g1"))
    store.create_port(secured("pa", MAC, "g1"))
    store.create_port(secured("pb", "fa:16:3e:00:00:02", "g1"))
    with pytest.raises(Conflict, match="used by port 'pa' and 1 more"):
        store.delete_security_group("g1")
    store.delete_port("pa")
    store.delete_port("pb")
    store.delete_security_group("g1")


def test_failed_group_writes_change_nothing(store: Store) -> None:
    store.create_network("net1", "vxlan", id="n1")
    store.create_security_group(group("g1", "web", "p1", ssh()))
    store.create_port(secured("pa", MAC, "g1"))
    before = state(store)
    attempts: list[Callable[[], object]] = [
        lambda: store.create_security_group(group("g1")),
        lambda: store.delete_security_group("g1"),
        lambda: store.delete_security_group("nope"),
        lambda: store.add_security_group_rule("g1", ssh("r2")),
        lambda: store.delete_security_group_rule("g1", "r2"),
        lambda: store.update_port_security("pa", security_groups=("nope",)),
        lambda: store.create_port(secured("pb", "fa:16:3e:00:00:02", "nope")),
    ]
    for attempt in attempts:
        with pytest.raises((Conflict, NotFound, ValidationError)):
            attempt()
        assert state(store) == before


def test_concurrent_rule_adds_all_land(store: Store) -> None:
    """Rules added at once to one group: each lands (no lost update), one revision each."""
    store.create_security_group(group("g1"))
    errors: list[BaseException] = []

    def add(n: int) -> None:
        try:
            store.add_security_group_rule(
                "g1", SecurityGroupRule(f"r{n}", "ingress", "IPv4", "tcp", 1000 + n, 1000 + n)
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(store.get_security_group("g1").rules) == 8
    puts = [e for e in store.events_since(0) if e.kind == "security_group"]
    assert len(puts) == 9 and len({e.revision for e in puts}) == 9


def test_concurrent_default_creates_one_wins(store: Store) -> None:
    results: list[str] = []

    def create(n: int) -> None:
        try:
            store.create_security_group(group(f"d{n}", "default", "p1"))
            results.append(f"d{n}")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=create, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results).count("conflict") == 5
    assert [g.name for g in store.list_security_groups("p1")[0]] == ["default"]
