"""The store's identity: made with the store, kept across restarts, recorded in snapshots."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flowkeeper.agent.catchup import same_history
from flowkeeper.snapshot.content import SnapshotData
from flowkeeper.store.sqlite import SqliteStore


def test_a_store_keeps_its_cluster_id_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "fk.db"
    first = SqliteStore(path)
    cid = first.cluster_id()
    first.create_network("n1", "vxlan")
    first.close()
    again = SqliteStore(path)
    assert again.cluster_id() == cid
    assert again.revision() == 1
    again.close()


def test_two_stores_have_different_cluster_ids(tmp_path: Path) -> None:
    a, b = SqliteStore(tmp_path / "a.db"), SqliteStore(tmp_path / "b.db")
    assert a.cluster_id() and b.cluster_id()
    assert a.cluster_id() != b.cluster_id()
    a.close()
    b.close()


def test_the_id_is_stored_as_text_in_the_meta_table(tmp_path: Path) -> None:
    path = tmp_path / "fk.db"
    store = SqliteStore(path)
    cid = store.cluster_id()
    store.close()
    db = sqlite3.connect(path)
    row = db.execute("SELECT value, typeof(value) FROM meta WHERE key = 'cluster_id'").fetchone()
    db.close()
    assert row == (cid, "text")


def test_a_store_from_before_cluster_ids_gets_one_that_then_stays(tmp_path: Path) -> None:
    path = tmp_path / "fk.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE key = 'cluster_id'")
    db.commit()
    db.close()
    made = SqliteStore(path)
    cid = made.cluster_id()
    made.close()
    reopened = SqliteStore(path)
    assert cid and reopened.cluster_id() == cid
    reopened.close()


def test_snapshot_meta_records_the_cluster_id() -> None:
    data = SnapshotData(revision=7, generation=2, cluster_id="c-1")
    assert SnapshotData.from_meta(data.meta()).cluster_id == "c-1"
    old = data.meta()
    del old["cluster_id"]  # a snapshot written before snapshots recorded it
    assert SnapshotData.from_meta(old).cluster_id == ""


def test_only_the_same_store_lets_the_agent_watch_from_its_revision() -> None:
    assert same_history("c-1", "c-1")
    assert not same_history("c-1", "c-2")  # replaced or restored: list again
    assert not same_history("", "c-2")  # ours unknown: list again
    assert same_history("c-1", None)  # a server that does not say: nothing to compare
