"""What only the etcd backend has: several events in one revision, member failures,
leases for liveness, compaction by several servers at once. Real etcd members."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowkeeper.cperrors import StoreUnavailable
from flowkeeper.lab.etcdcluster import EtcdCluster
from flowkeeper.model import Host, Network
from flowkeeper.store.etcd import EtcdStore
from flowkeeper.store.etcd_keys import encode_value
from flowkeeper.store.etcd_txn import put, txn
from tests.conformance.conftest import require_etcd
from tests.conformance.helpers import port


@pytest.fixture
def etcd_url(etcd_cluster: EtcdCluster) -> str:
    import uuid

    return f"{etcd_cluster.url}/e-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[EtcdCluster]:
    require_etcd()
    cluster = EtcdCluster.create(tmp_path / "etcd3", 3)
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.remove()


def write_two_networks_in_one_transaction(store: EtcdStore, a: Network, b: Network) -> int:
    """As a batch writer would: two objects (and the head) in one etcd transaction."""

    async def op(_ambiguous: bool) -> int:
        _, kv = await store.conn.kv()
        ops = [put(store.keys.obj("network", n.id), encode_value(n)) for n in (a, b)]
        resp = await txn(kv, [], [*ops, put(store.keys.head)])
        return int(resp.header.revision)

    return store.conn.call(op)


def test_a_revision_with_several_events_is_never_split(etcd_url: str) -> None:
    s = EtcdStore(etcd_url)
    other = EtcdStore(etcd_url)
    try:
        first = s.create_network("net0", "vxlan", id="n0")
        a, b = Network("na", "a", "vxlan", 10), Network("nb", "b", "vxlan", 11)
        rev = write_two_networks_in_one_transaction(s, a, b)
        last = s.create_network("net9", "vxlan", id="n9")
        assert s.revision() == other.revision() == last.revision
        for store in (s, other):  # the writer's ring, and another server's (same path)
            page = store.events_since(first.revision, 1)
            assert [(e.revision, e.id) for e in page] == [(rev, "na"), (rev, "nb")]
            assert [e.id for e in store.events_since(rev, 1)] == ["n9"]
            assert [e.id for e in store.events_since(0, 2)] == ["n0", "na", "nb"]
        late = EtcdStore(etcd_url)  # opened after: reads the old revisions by a one-off watch
        try:
            assert [e.id for e in late.events_since(first.revision, 1)] == ["na", "nb"]
        finally:
            late.close()
    finally:
        s.close()
        other.close()


def test_a_host_lease_expires_and_the_host_is_gone_since_then(etcd_url: str) -> None:
    s = EtcdStore(etcd_url, liveness_ttl_s=2)
    watcher = EtcdStore(etcd_url)  # another server: it only watches
    try:
        before = time.time()
        rev = s.put_host(Host("h1", "198.18.0.1", state="syncing")) and s.revision()
        for i in range(5):  # heartbeats: no writes
            s.put_host(Host("h1", "198.18.0.1", state="in-sync", revision=i, last_seen=1.0 + i))
        assert s.revision() == rev
        alive = watcher.host_liveness()["h1"]
        assert alive.alive and before - 1 <= alive.since <= time.time()
        assert watcher.get_host("h1").state == "in-sync"
        deadline = time.monotonic() + 30
        while watcher.host_liveness()["h1"].alive and time.monotonic() < deadline:
            time.sleep(0.2)  # no heartbeats: the lease expires
        gone = watcher.host_liveness()["h1"]
        assert not gone.alive and gone.since >= alive.since
        assert s.host_liveness()["h1"] == gone  # the first to see it wins, all agree
        assert s.revision() == rev
        s.put_host(Host("h1", "198.18.0.1", state="syncing"))  # back: a new lease
        back = watcher.host_liveness()["h1"]
        assert back.alive and back.since >= gone.since
    finally:
        s.close()
        watcher.close()


def test_delete_host_refused_while_ports_are_bound(etcd_url: str) -> None:
    from flowkeeper.store.base import Conflict, NotFound

    s = EtcdStore(etcd_url)
    try:
        s.put_host(Host("h1", "198.18.0.1"))
        s.create_network("net1", "vxlan", id="n1")
        s.create_port(port("p1", "n1", "h1", "fa:16:3e:00:00:01"))
        s.create_port(port("p2", "n1", "h1", "fa:16:3e:00:00:02"))
        with pytest.raises(Conflict, match=r"^host 'h1' still has 2 bound port\(s\); delete or"):
            s.delete_host("h1")
        s.delete_port("p1")
        s.bind_port("p2", "h2")
        gone = s.delete_host("h1")
        assert gone.name == "h1"
        (event,) = s.events_since(s.revision() - 1)
        assert (event.kind, event.op, event.id) == ("host", "delete", "h1")
        assert "h1" not in s.host_liveness()
        with pytest.raises(NotFound, match="host 'h1' not found"):
            s.delete_host("h1")
    finally:
        s.close()


def test_several_servers_compact_at_once(etcd_url: str, tmp_path: Path) -> None:
    cluster = EtcdCluster.create(tmp_path / "own", 1)
    cluster.start_all()
    try:
        stores = [EtcdStore(cluster.url, keep_events=5) for _ in range(3)]
        for i in range(20):
            stores[i % 3].create_network(f"n{i}", "vxlan", id=f"n{i}")
        errors: list[BaseException] = []

        def run(store: EtcdStore) -> None:
            try:
                for _ in range(5):
                    store.compact()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        marks = {s.compact_revision() for s in stores}
        assert len(marks) == 1
        (mark,) = marks
        assert [e.id for e in stores[0].events_since(mark)] == [f"n{i}" for i in range(15, 20)]
        for s in stores:
            s.close()
    finally:
        cluster.remove()


def test_a_member_killed_writes_go_on(cluster3: EtcdCluster) -> None:
    a = EtcdStore(cluster3.url)
    b = EtcdStore(cluster3.url)  # another server, watching
    try:
        a.create_network("net1", "vxlan", id="n1")
        cluster3.stop(1, hard=True)  # kill -9 of the member both are connected to
        done = [
            a.create_port(port(f"p{i}", "n1", "h1", f"fa:16:3e:00:00:{i + 1:02x}"))
            for i in range(5)
        ]
        assert [p.id for p in a.list_ports()[0]] == [f"p{i}" for i in range(5)]
        # b's watch resumed on another member: it has every revision, in order
        assert [e.id for e in b.events_since(0)] == ["n1"] + [p.id for p in done]
        assert b.revision() == done[-1].revision
    finally:
        a.close()
        b.close()


def test_no_quorum_is_unavailable_then_writes_work_again(cluster3: EtcdCluster) -> None:
    s = EtcdStore(cluster3.url)
    try:
        s.create_network("net1", "vxlan", id="n1")
        cluster3.stop(1, hard=True)
        cluster3.stop(2, hard=True)
        calls: list[Callable[[], object]] = [
            lambda: s.create_network("net2", "vxlan", id="n2"),
            s.list_networks,
            s.revision,
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable) as info:
                call()
            text = str(info.value)
            assert "\n" not in text and text.startswith("etcd unavailable at ")
            assert all(e in text for e in cluster3.endpoints)
            assert info.value.status == 503
        cluster3.start(1)
        cluster3.start(2)
        net = None
        for _ in range(20):  # bounded: the members elect a leader again
            try:
                net = s.create_network("net2", "vxlan", id="n2")
                break
            except StoreUnavailable:
                time.sleep(0.5)
        assert net is not None and net.name == "net2"
        assert [e.id for e in s.events_since(0)] == ["n1", "n2"]
    finally:
        s.close()


def test_bad_urls_are_one_line_usage_errors() -> None:
    from flowkeeper.errors import UsageError
    from flowkeeper.store import open_store

    for url in (
        "etcd://",
        "etcd://h",
        "etcd://h:0",
        "etcd://h:1,h:1",
        "etcd://h:1/a//b",
        "etc://x",
    ):
        with pytest.raises(UsageError) as info:
            open_store(url)
        assert "\n" not in str(info.value)
