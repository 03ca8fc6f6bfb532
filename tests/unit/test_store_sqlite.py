"""The SQLite store: revisions, events, compaction, uniqueness, atomic failed writes, files."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowkeeper.model import Host, Port, ValidationError
from flowkeeper.store.base import Compacted, Conflict, NotFound, Store
from flowkeeper.store.sqlite import SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "db" / "fk.db", keep_events=1000)
    yield s
    s.close()


def port(pid: str, net: str, host: str, mac: str, *ips: str) -> Port:
    return Port(pid, net, host, mac, tuple(ips), "DOWN")


def state(s: SqliteStore) -> tuple[object, ...]:
    """Everything observable: objects, revision, events."""
    return (s.snapshot(), s.revision(), s.events_since(s.compact_revision()))


def test_it_satisfies_the_store_protocol(store: SqliteStore) -> None:
    typed: Store = store
    assert typed.revision() == 0


def test_every_write_bumps_the_revision_and_appends_one_event(store: SqliteStore) -> None:
    net = store.create_network("net1", "vxlan", 1001, "198.19.1.0/24", id="n1")
    assert (net.revision, store.revision()) == (1, 1)
    p = store.create_port(port("p1", "n1", "h1", "fa:16:3e:00:00:01", "198.19.1.10"))
    assert p.revision == 2
    p2 = store.set_port_status("p1", "ACTIVE")
    assert (p2.revision, p2.status) == (3, "ACTIVE")
    store.put_host(Host("h1", "198.18.0.1"))
    store.delete_port("p1")
    store.delete_network("n1")
    events = store.events_since(0)
    assert [(e.revision, e.kind, e.op, e.id) for e in events] == [
        (1, "network", "put", "n1"),
        (2, "port", "put", "p1"),
        (3, "port", "put", "p1"),
        (4, "host", "put", "h1"),
        (5, "port", "delete", "p1"),
        (6, "network", "delete", "n1"),
    ]
    assert events[2].prev == p and events[2].object == p2
    assert events[1].prev is None and events[4].prev == p2
    assert [e.revision for e in store.events_since(4)] == [5, 6]
    assert store.events_since(6) == []


def test_lists_are_consistent_with_a_revision(store: SqliteStore) -> None:
    store.create_network("b", "vxlan", id="nb")
    store.create_network("a", "gre", id="na")
    nets, rev = store.list_networks()
    assert [n.name for n in nets] == ["a", "b"] and rev == 2
    objs, rev = store.list("network")
    assert len(objs) == 2 and rev == 2
    store.create_port(port("p1", "na", "h1", "fa:16:3e:00:00:01"))
    store.create_port(port("p2", "nb", "h2", "fa:16:3e:00:00:02"))
    assert [p.id for p in store.list_ports(host="h2")[0]] == ["p2"]
    assert [p.id for p in store.list_ports(network_id="na")[0]] == ["p1"]
    assert store.list_ports(network_id="na", host="h2")[0] == []


def test_liveness_updates_of_a_host_are_not_events(store: SqliteStore) -> None:
    store.put_host(Host("h1", "198.18.0.1"))
    store.put_host(Host("h1", "198.18.0.1", state="in-sync", revision=1, last_seen=5.0))
    assert store.revision() == 1
    assert store.get_host("h1").state == "in-sync"
    store.put_host(Host("h1", "198.18.0.2", state="in-sync"))
    assert store.revision() == 2
    assert store.events_since(1)[0].prev == Host(
        "h1", "198.18.0.1", state="in-sync", revision=1, last_seen=5.0
    )


def test_same_status_is_not_a_write(store: SqliteStore) -> None:
    store.create_network("net1", "vxlan", id="n1")
    store.create_port(port("p1", "n1", "h1", "fa:16:3e:00:00:01"))
    store.set_port_status("p1", "DOWN")
    assert store.revision() == 2


def test_compaction_keeps_the_last_n_events(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "fk.db", keep_events=3)
    for i in range(1, 8):
        s.create_network(f"net{i}", "vxlan", id=f"n{i}")
    assert s.compact_revision() == 4
    assert [e.revision for e in s.events_since(4)] == [5, 6, 7]
    with pytest.raises(Compacted, match="revision 3 was compacted away"):
        s.events_since(3)
    s.close()


def test_segmentation_ids_are_allocated_lowest_free_and_unique_per_type(
    store: SqliteStore,
) -> None:
    assert store.create_network("a", "vxlan", 1).segmentation_id == 1
    assert store.create_network("b", "vxlan", 3).segmentation_id == 3
    assert store.create_network("c", "vxlan").segmentation_id == 2
    assert store.create_network("d", "vxlan").segmentation_id == 4
    assert store.create_network("e", "gre", 3).segmentation_id == 3  # other type: fine
    with pytest.raises(Conflict, match="segmentation_id 3 is already used by vxlan network 'b'"):
        store.create_network("f", "vxlan", 3)
    with pytest.raises(Conflict, match="network name 'a' already exists"):
        store.create_network("a", "gre", 99)


def test_mac_and_ip_unique_within_a_network_only(store: SqliteStore) -> None:
    store.create_network("net1", "vxlan", cidr="198.19.1.0/24", id="n1")
    store.create_network("net2", "vxlan", cidr="198.19.1.0/24", id="n2")
    store.create_port(port("p1", "n1", "h1", "fa:16:3e:00:00:01", "198.19.1.10"))
    store.create_port(port("p2", "n2", "h1", "fa:16:3e:00:00:01", "198.19.1.10"))  # other net
    with pytest.raises(Conflict, match="MAC fa:16:3e:00:00:01 is already used by port 'p1'"):
        store.create_port(port("p3", "n1", "h2", "FA:16:3E:00:00:01", "198.19.1.11"))
    with pytest.raises(Conflict, match=r"IP 198\.19\.1\.10 is already used by port 'p1'"):
        store.create_port(port("p3", "n1", "h2", "fa:16:3e:00:00:03", "198.19.1.10"))
    with pytest.raises(Conflict, match="port id 'p1' already exists"):
        store.create_port(port("p1", "n1", "h2", "fa:16:3e:00:00:04"))
    store.delete_port("p1")  # frees its MAC and IP
    store.create_port(port("p4", "n1", "h2", "fa:16:3e:00:00:01", "198.19.1.10"))


def test_failed_writes_change_nothing(store: SqliteStore) -> None:
    store.create_network("net1", "vxlan", 1001, "198.19.1.0/24", id="n1")
    store.create_port(port("p1", "n1", "h1", "fa:16:3e:00:00:01", "198.19.1.10"))
    before = state(store)
    attempts: list[Callable[[], object]] = [
        lambda: store.create_port(port("p2", "n1", "h1", "fa:16:3e:00:00:01")),
        lambda: store.create_port(port("p2", "n1", "h1", "fa:16:3e:00:00:02", "198.19.2.1")),
        lambda: store.create_port(port("p2", "nope", "h1", "fa:16:3e:00:00:02")),
        lambda: store.create_network("net1", "gre"),
        lambda: store.create_network("net2", "vxlan", 20_000_000),
        lambda: store.delete_network("n1"),
        lambda: store.delete_port("nope"),
        lambda: store.set_port_status("nope", "ACTIVE"),
    ]
    for attempt in attempts:
        with pytest.raises((Conflict, NotFound, ValidationError)):
            attempt()
        assert state(store) == before


def test_deleting_a_network_with_ports_is_refused(store: SqliteStore) -> None:
    store.create_network("net1", "vxlan", id="n1")
    store.create_port(port("p1", "n1", "h1", "fa:16:3e:00:00:01"))
    with pytest.raises(Conflict, match="network 'net1' still has 1 port"):
        store.delete_network("n1")
    store.delete_port("p1")
    assert store.delete_network("n1").name == "net1"
    with pytest.raises(NotFound, match="network 'n1' not found"):
        store.get_network("n1")


def test_files_are_private_and_data_persists(tmp_path: Path) -> None:
    path = tmp_path / "new" / "fk.db"
    s = SqliteStore(path)
    s.create_network("net1", "vxlan", 7, id="n1")
    for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if f.exists():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    s.close()
    again = SqliteStore(path)
    assert again.revision() == 1 and again.get_network("n1").segmentation_id == 7
    again.create_network("net2", "vxlan", id="n2")
    assert again.revision() == 2
    again.close()
