"""`agent --watch-log`: one JSON line per message, private, bounded."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from flowkeeper.agent.watchlog import WatchLog, record
from flowkeeper.errors import UsageError
from flowkeeper.model import Network, Port, WatchEvent

NET = Network("11111111-1111-1111-1111-111111111111", "a", "vxlan", 101)
PORT = Port("p1", NET.id, "h2", "fa:16:3e:00:00:01", revision=3)
URL = "http://127.0.0.1:9696"


def test_a_line_names_revision_kind_op_id_network_and_server() -> None:
    assert record(WatchEvent(3, "port", "put", PORT), URL, 1.5) == {
        "t": 1.5,
        "server": URL,
        "revision": 3,
        "kind": "port",
        "op": "put",
        "id": "p1",
        "network_id": NET.id,
    }
    net = record(WatchEvent(2, "network", "delete", NET), URL, 2.0, dup=True)
    assert (net["id"], net["network_id"], net["dup"]) == (NET.id, NET.id, True)
    beat = record(WatchEvent(4, "heartbeat", ""), URL, 3.0)
    assert beat["kind"] == "heartbeat" and "id" not in beat and "dup" not in beat
    assert record(None, URL, 4.0, listed=9)["kind"] == "list"


def test_the_file_is_private_and_rotates_at_its_cap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "watch.ndjson"
    path.write_text("")
    path.chmod(0o644)
    wl = WatchLog(path, max_bytes=2048)
    assert path.stat().st_mode & 0o777 == 0o600
    for i in range(40):
        wl.event(WatchEvent(i + 1, "port", "put", PORT), URL)
    wl.close()
    old = tmp_path / "watch.ndjson.1"
    assert old.exists() and old.stat().st_mode & 0o777 == 0o600
    assert path.stat().st_size <= 2048 and old.stat().st_size <= 2048
    revs = [json.loads(x)["revision"] for x in old.read_text().splitlines()]
    revs += [json.loads(x)["revision"] for x in path.read_text().splitlines()]
    assert revs == list(range(41 - len(revs), 41))  # the newest lines, none cut
    assert any("moved to" in r.getMessage() for r in caplog.records)


def test_a_path_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--watch-log .*: No such file or directory"):
        WatchLog(tmp_path / "no" / "such" / "file")
