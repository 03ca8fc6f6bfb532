"""The Store protocol's behaviour, the same tests on both backends (sqlite and etcd).

Revisions are compared with each other, never with fixed numbers: on etcd they are the
cluster's revisions, shared by every key and prefix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from flowkeeper.model import Host, ValidationError
from flowkeeper.store import open_store
from flowkeeper.store.base import Compacted, Conflict, Event, NotFound, Store
from flowkeeper.store.tokens import TokenRecord
from tests.conformance.helpers import compact_now, port, state

DIGEST = "ab" * 32


def token(n: int) -> TokenRecord:
    return TokenRecord(f"tk{n:012x}", "admin", DIGEST, created=1.0)


def revisions(events: list[Event]) -> list[int]:
    return [e.revision for e in events]


def test_it_satisfies_the_store_protocol(store: Store) -> None:
    typed: Store = store
    assert typed.revision() == 0
    assert typed.events_since(0) == []
    assert typed.concurrency >= 1


def test_every_write_bumps_the_revision_and_appends_one_event(store: Store) -> None:
    net = store.create_network("net1", "vxlan", 1001, "198.19.1.0/24", id="n1")
    assert net.revision == store.revision() > 0
    p = store.create_port(port("p1", "n1", "h1", "fa:16:3e:00:00:01", "198.19.1.10"))
    assert p.revision == store.revision() > net.revision
    p2 = store.set_port_status("p1", "ACTIVE")
    assert p2.revision > p.revision and p2.status == "ACTIVE"
    assert store.get_port("p1") == p2
    store.put_host(Host("h1", "198.18.0.1"))
    store.delete_port("p1")
    store.delete_network("n1")
    events = store.events_since(0)
    assert [(e.kind, e.op, e.id) for e in events] == [
        ("network", "put", "n1"),
        ("port", "put", "p1"),
        ("port", "put", "p1"),
        ("host", "put", "h1"),
        ("port", "delete", "p1"),
        ("network", "delete", "n1"),
    ]
    revs = revisions(events)
    assert revs == sorted(set(revs)) and revs[-1] == store.revision()
    assert revs[:3] == [net.revision, p.revision, p2.revision]
    assert events[0].object == net and events[1].object == p
    assert events[2].prev == p and events[2].object == p2
    assert events[1].prev is None and events[4].prev == p2 and events[4].object == p2
    assert events[5].object == net
    assert revisions(store.events_since(revs[3])) == revs[4:]
    assert store.events_since(revs[-1]) == []


def test_lists_are_consistent_with_a_revision(store: Store) -> None:
    store.create_network("b", "vxlan", id="nb")
    last = store.create_network("a", "gre", id="na")
    nets, rev = store.list_networks()
    assert [n.name for n in nets] == ["a", "b"] and rev == last.revision
    objs, rev = store.list("network")
    assert len(objs) == 2 and rev == last.revision
    store.create_port(port("p1", "na", "h1", "fa:16:3e:00:00:01"))
    p2 = store.create_port(port("p2", "nb", "h2", "fa:16:3e:00:00:02"))
    assert [p.id for p in store.list_ports(host="h2")[0]] == ["p2"]
    assert [p.id for p in store.list_ports(network_id="na")[0]] == ["p1"]
    assert store.list_ports(network_id="na", host="h2")[0] == []
    ports, rev = store.list_ports()
    assert [p.id for p in ports] == ["p1", "p2"] and rev == p2.revision
    snap = store.snapshot()
    assert snap.revision == p2.revision and snap.ports == ports
    assert [n.name for n in snap.networks] == ["a", "b"] and snap.hosts == []


def test_missing_objects_are_not_found(store: Store) -> None:
    for call, text in (
        (lambda: store.get_network("nope"), "network 'nope' not found"),
        (lambda: store.get_port("nope"), "port 'nope' not found"),
        (lambda: store.get_host("nope"), "host 'nope' not found"),
        (lambda: store.delete_token("tk000000000000"), "token 'tk000000000000' not found"),
    ):
        with pytest.raises(NotFound, match=text):
            call()


def test_liveness_updates_of_a_host_are_not_events(store: Store) -> None:
    first = store.put_host(Host("h1", "198.18.0.1"))
    rev = store.revision()
    store.put_host(Host("h1", "198.18.0.1", state="in-sync", revision=1, last_seen=5.0))
    assert store.revision() == rev
    assert store.get_host("h1").state == "in-sync"
    assert store.list_hosts()[0][0].state == "in-sync"
    store.put_host(Host("h1", "198.18.0.2", state="in-sync"))
    assert store.revision() > rev
    (event,) = store.events_since(rev)
    assert isinstance(event.prev, Host) and event.prev.same_spec(first)
    assert event.object == Host("h1", "198.18.0.2", state="in-sync")


def test_same_status_or_binding_is_not_a_write(store: Store) -> None:
    store.create_network("net1", "vxlan", id="n1")
    p = store.create_port(port("p1", "n1", "h1", "fa:16:3e:00:00:01"))
    assert store.set_port_status("p1", "DOWN") == p
    assert store.bind_port("p1", "h1") == p
    assert store.revision() == p.revision
    with pytest.raises(Conflict, match="port 'p1' is bound to 'h1', not 'h2'"):
        store.set_port_status("p1", "ACTIVE", host="h2")
    moved = store.bind_port("p1", "h2")
    assert moved.host == "h2" and moved.revision > p.revision
    assert [x.id for x in store.list_ports(host="h2")[0]] == ["p1"]


def test_segmentation_ids_are_allocated_lowest_free_and_unique_per_type(store: Store) -> None:
    assert store.create_network("a", "vxlan", 1).segmentation_id == 1
    assert store.create_network("b", "vxlan", 3).segmentation_id == 3
    assert store.create_network("c", "vxlan").segmentation_id == 2
    assert store.create_network("d", "vxlan").segmentation_id == 4
    assert store.create_network("e", "gre", 3).segmentation_id == 3  # other type: fine
    assert store.create_network("big", "gre", 4_294_967_295).segmentation_id == 4_294_967_295
    assert store.create_network("f", "gre").segmentation_id == 1
    with pytest.raises(Conflict, match="segmentation_id 3 is already used by vxlan network 'b'"):
        store.create_network("g", "vxlan", 3)
    with pytest.raises(Conflict, match="network name 'a' already exists"):
        store.create_network("a", "gre", 99)
    c = next(n for n in store.list_networks()[0] if n.name == "c")
    store.delete_network(c.id)  # frees its segment
    assert store.create_network("h", "vxlan").segmentation_id == 2


def test_ids_are_unique(store: Store) -> None:
    store.create_network("net1", "vxlan", id="n1")
    with pytest.raises(Conflict, match="network id 'n1' already exists"):
        store.create_network("net2", "vxlan", id="n1")


def test_mac_and_ip_unique_within_a_network_only(store: Store) -> None:
    store.create_network("net1", "vxlan", cidr="198.19.1.0/24", id="n1")
    store.create_network("net2", "vxlan", cidr="198.19.1.0/24", id="n2")
    store.create_port(port("p1", "n1", "h1", "fa:16:3e:00:00:01", "198.19.1.10"))
    store.create_port(port("p2", "n2", "h1", "fa:16:3e:00:00:01", "198.19.1.10"))  # other net
    with pytest.raises(
        Conflict, match="MAC fa:16:3e:00:00:01 is already used by port 'p1' on network 'net1'"
    ):
        store.create_port(port("p3", "n1", "h2", "FA:16:3E:00:00:01", "198.19.1.11"))
    with pytest.raises(
        Conflict, match=r"IP 198\.19\.1\.10 is already used by port 'p1' on network 'net1'"
    ):
        store.create_port(port("p3", "n1", "h2", "fa:16:3e:00:00:03", "198.19.1.10"))
    with pytest.raises(Conflict, match="port id 'p1' already exists"):
        store.create_port(port("p1", "n1", "h2", "fa:16:3e:00:00:04"))
    store.delete_port("p1")  # frees its MAC and IP
    store.create_port(port("p4", "n1", "h2", "fa:16:3e:00:00:01", "198.19.1.10"))


def test_failed_writes_change_nothing(store: Store) -> None:
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
        lambda: store.bind_port("nope", "h2"),
        lambda: store.events_since(-1),
    ]
    for attempt in attempts:
        with pytest.raises((Conflict, NotFound, ValidationError)):
            attempt()
        assert state(store) == before


def test_deleting_a_network_with_ports_is_refused(store: Store) -> None:
    store.create_network("net1", "vxlan", id="n1")
    store.create_port(port("p1", "n1", "h1", "fa:16:3e:00:00:01"))
    store.create_port(port("p2", "n1", "h2", "fa:16:3e:00:00:02"))
    with pytest.raises(Conflict, match="network 'net1' still has 2 port"):
        store.delete_network("n1")
    store.delete_port("p1")
    store.delete_port("p2")
    assert store.delete_network("n1").name == "net1"
    with pytest.raises(NotFound, match="network 'n1' not found"):
        store.get_network("n1")
    with pytest.raises(NotFound, match="network 'n1' not found"):
        store.delete_network("n1")


def test_tokens_are_not_events_and_do_not_move_the_revision(store: Store) -> None:
    net = store.create_network("net1", "vxlan", id="n1")
    store.add_token(token(2))
    store.add_token(token(1))
    with pytest.raises(Conflict, match="token id 'tk000000000001' already exists"):
        store.add_token(token(1))
    assert [t.id for t in store.list_tokens()] == [token(1).id, token(2).id]
    assert store.delete_token(token(2).id) == token(2)
    assert store.revision() == net.revision
    assert revisions(store.events_since(0)) == [net.revision]
    assert store.events_since(net.revision) == []
    later = store.create_port(port("p1", "n1", "h1", "fa:16:3e:00:00:01"))
    assert store.revision() == later.revision
    assert revisions(store.events_since(net.revision)) == [later.revision]


def test_events_since_pages_never_split_a_revision(store: Store) -> None:
    store.create_network("net1", "vxlan", id="n1")
    for i in range(10):
        store.create_port(port(f"p{i}", "n1", "h1", f"fa:16:3e:00:00:{i + 1:02x}"))
        if i % 3 == 0:
            store.set_port_status(f"p{i}", "ACTIVE")
    everything = store.events_since(0)
    for limit in (1, 2, 3, 5, 100):
        pages, after = [], 0
        for _ in range(100):
            page = store.events_since(after, limit)
            if not page:
                break
            assert len(page) >= min(limit, 1)
            # every revision in the page is complete
            last = page[-1].revision
            assert [e for e in everything if after < e.revision <= last] == page
            pages += page
            after = last
        assert pages == everything


def test_concurrent_creates_exactly_one_wins(store: Store) -> None:
    store.create_network("base", "vxlan", cidr="198.19.1.0/24", id="n0")
    cases: dict[str, Callable[[int], object]] = {
        "name": lambda i: store.create_network("same", "vxlan", 100 + i, id=f"name{i}"),
        "id": lambda i: store.create_network(f"id{i}", "vxlan", 200 + i, id="same-id"),
        "segment": lambda i: store.create_network(f"seg{i}", "gre", 77, id=f"seg{i}"),
        "mac": lambda i: store.create_port(port(f"m{i}", "n0", "h1", "fa:16:3e:00:01:01")),
        "ip": lambda i: store.create_port(
            port(f"ip{i}", "n0", "h1", f"fa:16:3e:00:02:{i + 1:02x}", "198.19.1.77")
        ),
        "port id": lambda i: store.create_port(
            port("same-port", "n0", "h1", f"fa:16:3e:00:03:{i + 1:02x}")
        ),
    }
    for what, create in cases.items():
        wins, conflicts = run_threads(create, 8)
        assert (wins, conflicts) == (1, 7), what


def test_concurrent_allocations_get_distinct_segments(store: Store) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        net = store.create_network(f"auto{i}", "vxlan", id=f"auto{i}")
        with lock:
            got.append(net.segmentation_id)

    wins, conflicts = run_threads(create, 8)
    assert (wins, conflicts) == (8, 0)
    assert sorted(got) == list(range(1, 9))


def run_threads(fn: Callable[[int], object], n: int) -> tuple[int, int]:
    """Start `n` threads at once running fn(i); (successes, Conflicts). Other errors fail."""
    barrier = threading.Barrier(n)
    results: list[str] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            fn(i)
            outcome = "win"
        except Conflict:
            outcome = "conflict"
        except Exception as exc:
            outcome = f"error {exc!r}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    errors = [r for r in results if r.startswith("error")]
    assert not errors and len(results) == n, results
    return results.count("win"), results.count("conflict")


def test_cluster_id_is_stable_across_reopen(url: str) -> None:
    first = open_store(url)
    cid = first.cluster_id()
    first.create_network("net1", "vxlan", id="n1")
    first.close()
    again = open_store(url)
    try:
        assert again.cluster_id() == cid and len(cid) == 36
        assert again.get_network("n1").name == "net1"
        assert revisions(again.events_since(0)) == [again.revision()]
    finally:
        again.close()


def test_two_stores_on_one_backend_see_each_others_writes_in_order(url: str) -> None:
    a, b = open_store(url), open_store(url)
    try:
        assert a.cluster_id() == b.cluster_id()
        a.create_network("net1", "vxlan", id="n1")
        b.create_port(port("p1", "n1", "h1", "fa:16:3e:00:00:01"))
        a.set_port_status("p1", "ACTIVE")
        b.put_host(Host("h1", "198.18.0.1"))
        last = a.create_port(port("p2", "n1", "h1", "fa:16:3e:00:00:02"))
        with pytest.raises(Conflict):
            b.create_network("net1", "gre")
        assert a.revision() == b.revision() == last.revision
        ea, eb = a.events_since(0), b.events_since(0)
        assert ea == eb and len(ea) == 5
        assert b.get_port("p1").status == "ACTIVE"
        assert a.snapshot() == b.snapshot()
    finally:
        a.close()
        b.close()


def test_compacted_after_compaction(backend: str, tmp_path: Path) -> None:
    from tests.conformance.conftest import dedicated_url

    with dedicated_url(backend, tmp_path) as url:
        s = open_store(url, keep_events=3)
        try:
            for i in range(1, 8):
                s.create_network(f"net{i}", "vxlan", id=f"n{i}")
            compact_now(s)
            cut = s.compact_revision()
            assert cut > 0
            assert [e.id for e in s.events_since(cut)] == ["n5", "n6", "n7"]
            with pytest.raises(Compacted, match=f"revision {cut - 1} was compacted away"):
                s.events_since(cut - 1)
            other = open_store(url, keep_events=3)  # another server: reads the log afresh
            try:
                assert other.compact_revision() == cut
                assert other.events_since(cut) == s.events_since(cut)
                with pytest.raises(Compacted):
                    other.events_since(0)
            finally:
                other.close()
        finally:
            s.close()
