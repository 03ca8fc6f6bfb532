"""The SQLite store's host lifecycle: liveness from stored heartbeat times, heartbeats that
skip the fsync, delete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkeeper.model import Host
from flowkeeper.store.base import HostLiveness
from flowkeeper.store.sqlite import SqliteStore, _NeedsSync


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "fk.db", liveness_ttl_s=15.0, clock=clock)
    yield s
    s.close()


def beat(at: float, state: str = "in-sync", revision: int = 0) -> Host:
    return Host("h1", "198.18.0.1", state=state, revision=revision, last_seen=at)


def test_alive_since_the_first_heartbeat_gone_since_the_ttl_ran_out(
    tmp_path: Path, store: SqliteStore, clock: Clock
) -> None:
    store.put_host(beat(100.0))
    store.put_host(beat(105.0, revision=1))
    clock.now = 110.0
    assert store.host_liveness() == {"h1": HostLiveness(True, 100.0)}
    clock.now = 120.5
    assert store.host_liveness() == {"h1": HostLiveness(False, 120.0)}  # 105 + 15
    store.put_host(beat(130.0))  # back: a new run of heartbeats
    store.put_host(beat(135.0))
    clock.now = 136.0
    assert store.host_liveness() == {"h1": HostLiveness(True, 130.0)}
    assert store.revision() == 1  # liveness is never an event
    reopened = SqliteStore(tmp_path / "fk.db", clock=clock)
    assert reopened.host_liveness() == {"h1": HostLiveness(True, 130.0)}  # it is stored
    reopened.close()


def test_a_store_without_a_hosts_run_start_counts_it_from_the_last_heartbeat(
    store: SqliteStore, clock: Clock
) -> None:
    store.put_host(beat(100.0))
    store._db.execute("DELETE FROM host_liveness")  # as a store made before the table
    clock.now = 101.0
    assert store.host_liveness() == {"h1": HostLiveness(True, 100.0)}
    store.put_host(beat(105.0))
    assert store.host_liveness() == {"h1": HostLiveness(True, 100.0)}


def statements(store: SqliteStore, write: Host) -> list[str]:
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    try:
        store.put_host(write)
    finally:
        store._db.set_trace_callback(None)
    return seen


def test_only_a_heartbeat_that_changes_no_state_commits_without_fsync(
    store: SqliteStore,
) -> None:
    assert "PRAGMA synchronous=NORMAL" not in statements(store, beat(100.0))  # registration
    quiet = statements(store, beat(105.0, revision=7))
    assert quiet.index("PRAGMA synchronous=NORMAL") < quiet.index("BEGIN IMMEDIATE")
    assert quiet.index("COMMIT") < quiet.index("PRAGMA synchronous=FULL")
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
    assert store.get_host("h1").revision == 7
    for change in (beat(110.0, state="syncing"), beat(200.0)):  # state word; back after gone
        assert "PRAGMA synchronous=NORMAL" not in statements(store, change)
    store.create_network("net1", "vxlan", id="n1")  # every other write: FULL
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_a_heartbeat_that_turns_out_to_change_state_is_not_committed_without_fsync(
    store: SqliteStore,
) -> None:
    """What put_host redoes with an fsync when another writer changed the host between its
    first read and the write."""
    store.put_host(beat(100.0))
    before = (store.snapshot(), store.host_liveness())
    with pytest.raises(_NeedsSync):
        store._put_host(beat(105.0, state="syncing"), sync=False)
    assert (store.snapshot(), store.host_liveness()) == before
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_a_deleted_host_that_registers_again_is_alive_since_then(
    store: SqliteStore, clock: Clock
) -> None:
    store.put_host(beat(100.0))
    store.delete_host("h1")
    assert store.host_liveness() == {}
    store.put_host(beat(104.0))
    clock.now = 105.0
    assert store.host_liveness() == {"h1": HostLiveness(True, 104.0)}
