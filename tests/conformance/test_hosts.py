"""Host lifecycle on every backend: delete (refused while ports are bound), re-registration,
and liveness that goes from alive to gone when heartbeats stop."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from flowkeeper.model import Host, Port
from flowkeeper.store import open_store
from flowkeeper.store.base import Conflict, HostLiveness, NotFound, Store

SHORT_TTL_S = 2.0


@pytest.fixture
def short_ttl_store(url: str) -> Iterator[Store]:
    """A fresh store whose hosts are gone SHORT_TTL_S after their last heartbeat."""
    opened = open_store(url, liveness_ttl_s=SHORT_TTL_S)
    try:
        yield opened
    finally:
        opened.close()


def heartbeat(store: Store, name: str = "h1", ip: str = "198.18.0.1") -> Host:
    """What PUT /v1/hosts/{name} does: the server stamps last_seen."""
    return store.put_host(Host(name, ip, state="in-sync", last_seen=time.time()))


def port(pid: str, host: str, mac: str) -> Port:
    return Port(pid, "n1", host, mac, (), "ACTIVE")


def observable(store: Store) -> tuple[object, ...]:
    snap = store.snapshot()
    return (snap, store.revision(), sorted(store.host_liveness()))


def wait_liveness(store: Store, name: str, alive: bool, timeout: float = 30.0) -> HostLiveness:
    deadline = time.monotonic() + timeout
    while True:
        state = store.host_liveness().get(name)
        if state is not None and state.alive == alive:
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"host {name} never became {'alive' if alive else 'gone'}: {state}")
        time.sleep(0.1)


def test_a_host_delete_is_one_event_carrying_the_removed_host(store: Store) -> None:
    heartbeat(store)
    heartbeat(store, "h2", "198.18.0.2")
    before = store.revision()
    removed = store.delete_host("h1")
    assert (removed.name, removed.tunnel_ip) == ("h1", "198.18.0.1")
    [event] = store.events_since(before)
    assert (event.kind, event.op, event.id) == ("host", "delete", "h1")
    assert event.object == event.prev and isinstance(event.object, Host)
    assert event.object.tunnel_ip == "198.18.0.1"
    assert store.revision() == event.revision > before
    with pytest.raises(NotFound, match="host 'h1' not found"):
        store.get_host("h1")
    assert [h.name for h in store.list_hosts()[0]] == ["h2"]
    assert [h.name for h in store.snapshot().hosts] == ["h2"]
    assert set(store.host_liveness()) == {"h2"}


def test_deleting_an_unknown_host_is_not_found_and_changes_nothing(store: Store) -> None:
    heartbeat(store)
    before = observable(store)
    with pytest.raises(NotFound, match=r"^host 'nope' not found$"):
        store.delete_host("nope")
    assert observable(store) == before


def test_a_host_with_bound_ports_is_not_deleted_until_they_are_gone(store: Store) -> None:
    heartbeat(store)
    heartbeat(store, "h2", "198.18.0.2")
    store.create_network("net1", "vxlan", 1001, id="n1")
    store.create_port(port("p1", "h1", "fa:16:3e:00:00:01"))
    store.create_port(port("p2", "h1", "fa:16:3e:00:00:02"))
    store.create_port(port("p3", "h2", "fa:16:3e:00:00:03"))
    before = observable(store)
    with pytest.raises(Conflict) as refused:
        store.delete_host("h1")
    assert str(refused.value) == ("host 'h1' still has 2 bound port(s); delete or move them first")
    assert observable(store) == before
    store.bind_port("p1", "h2")  # moved away
    with pytest.raises(Conflict, match=r"^host 'h1' still has 1 bound port"):
        store.delete_host("h1")
    store.delete_port("p2")
    rev = store.revision()
    store.delete_host("h1")
    assert [(e.kind, e.op, e.id) for e in store.events_since(rev)] == [("host", "delete", "h1")]
    assert [p.host for p in store.list_ports()[0]] == ["h2", "h2"]


def test_a_deleted_host_registers_again_as_a_new_host(store: Store) -> None:
    heartbeat(store)
    store.delete_host("h1")
    rev = store.revision()
    heartbeat(store, "h1", "198.18.0.11")
    [event] = store.events_since(rev)
    assert (event.kind, event.op, event.prev) == ("host", "put", None)
    assert store.get_host("h1").tunnel_ip == "198.18.0.11"
    assert store.host_liveness()["h1"].alive


def test_a_registered_host_is_alive_since_its_first_heartbeat(store: Store) -> None:
    before = time.time()
    heartbeat(store)
    after = time.time()
    state = store.host_liveness()["h1"]
    assert state.alive and before <= state.since <= after
    rev = store.revision()
    heartbeat(store)
    assert store.host_liveness()["h1"] == state  # the same run of heartbeats
    assert store.revision() == rev  # a heartbeat is no event


def test_a_host_whose_heartbeats_stop_is_gone_and_comes_back(short_ttl_store: Store) -> None:
    store = short_ttl_store
    heartbeat(store, "h2", "198.18.0.2")
    last = heartbeat(store).last_seen
    rev = store.revision()
    gone = wait_liveness(store, "h1", alive=False)
    assert last < gone.since <= time.time()  # gone once the TTL after the last beat ran out
    assert store.get_host("h1").tunnel_ip == "198.18.0.1"  # still registered
    assert store.revision() == rev  # going is no event
    heartbeat(store)
    back = store.host_liveness()["h1"]
    assert back.alive and back.since >= gone.since
    assert store.revision() == rev
