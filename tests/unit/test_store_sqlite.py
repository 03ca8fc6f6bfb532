"""The SQLite store's own properties: files, WAL, exact revision numbers. The behaviour
both backends share (CRUD, uniqueness, events, compaction) is in tests/conformance/."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkeeper.store.base import Compacted, Store
from flowkeeper.store.sqlite import SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "db" / "fk.db", keep_events=1000)
    yield s
    s.close()


def test_it_satisfies_the_store_protocol(store: SqliteStore) -> None:
    typed: Store = store
    assert typed.revision() == 0 and typed.concurrency == 1


def test_revisions_count_writes_from_one(store: SqliteStore) -> None:
    assert store.create_network("net1", "vxlan", id="n1").revision == 1
    assert store.create_network("net2", "vxlan", id="n2").revision == 2
    assert [e.revision for e in store.events_since(0)] == [1, 2]


def test_compaction_keeps_the_last_n_events(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "fk.db", keep_events=3)
    for i in range(1, 8):
        s.create_network(f"net{i}", "vxlan", id=f"n{i}")
    assert s.compact_revision() == 4
    assert [e.revision for e in s.events_since(4)] == [5, 6, 7]
    with pytest.raises(Compacted, match="revision 3 was compacted away"):
        s.events_since(3)
    s.close()


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
