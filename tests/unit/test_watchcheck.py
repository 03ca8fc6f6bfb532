"""The watch history check: the expected stream from a real store's event log, and the
checks that find a gap, a repeat and a revision out of order."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowkeeper.lab.watchcheck import Message, check_history, check_stream, expected_streams
from flowkeeper.model import Host, Port
from flowkeeper.store.base import Event
from flowkeeper.store.sqlite import SqliteStore


def _port(net: str, host: str, n: int) -> Port:
    return Port(str(uuid.uuid4()), net, host, f"fa:16:3e:00:00:{n:02x}")


@pytest.fixture
def log(tmp_path: Path) -> tuple[list[Event], int, int]:
    """h1 and h2 share net a; h3 is alone on net b. Returns (events, start, end)."""
    store = SqliteStore(tmp_path / "s.db")
    for i in (1, 2, 3):
        store.put_host(Host(f"h{i}", f"198.18.0.{i}"))
    a = store.create_network("a", "vxlan").id
    b = store.create_network("b", "vxlan").id
    store.create_port(_port(a, "h1", 1))
    start = store.revision()
    p2 = store.create_port(_port(a, "h2", 2))  # h1 gets it; h2 joins a: a + both ports
    store.create_port(_port(b, "h3", 3))  # only h3
    store.set_port_status(p2.id, "ACTIVE")
    store.delete_port(p2.id)  # h2 leaves a: port delete, network delete
    end = store.revision()
    events = store.events_since(0)
    store.close()
    return events, start, end


def _records(expected: dict[int, Counter[Message]]) -> list[dict[str, Any]]:
    return [
        {"revision": rev, "kind": k, "op": op, "id": oid}
        for rev in sorted(expected)
        for (k, op, oid) in sorted(expected[rev].elements())
    ]


def test_expected_streams_follow_the_fan_out(log: tuple[list[Event], int, int]) -> None:
    events, start, end = log
    exp = expected_streams(events, ["h1", "h2", "h3"], start, end)
    h1 = [(k, op) for rev in sorted(exp["h1"]) for (k, op, _) in exp["h1"][rev].elements()]
    assert h1 == [("port", "put"), ("port", "put"), ("port", "delete")]
    h2 = sorted(m[:2] for rev in exp["h2"] for m in exp["h2"][rev].elements())
    joined = [("network", "put"), ("port", "put"), ("port", "put")]
    active = [("port", "put")]
    left = [("port", "delete"), ("network", "delete")]
    assert h2 == sorted([*joined, *active, *left])
    assert [len(exp["h3"][r]) for r in sorted(exp["h3"])] == [2]  # joined b: b + its port


def test_a_faithful_log_passes_and_noise_outside_the_window_is_ignored(
    log: tuple[list[Event], int, int],
) -> None:
    events, start, end = log
    exp = expected_streams(events, ["h2"], start, end)["h2"]
    records = [{"revision": start, "kind": "port", "op": "put", "id": "x"}]
    records += [*_records(exp), {"revision": end, "kind": "heartbeat", "op": "", "id": ""}]
    check = check_stream("h2", records, exp, start, end)
    assert check.ok, check.problems
    assert check.logged == sum(sum(c.values()) for c in exp.values())


def test_a_gap_a_repeat_and_a_step_back_are_each_found(log: tuple[list[Event], int, int]) -> None:
    events, start, end = log
    exp = expected_streams(events, ["h2"], start, end)["h2"]
    records = _records(exp)
    revs = sorted(exp)
    gap = [r for r in records if r["revision"] != revs[1]]
    assert any("missing" in p for p in check_stream("h2", gap, exp, start, end).problems)
    twice = [*records, records[-1]]
    assert any("twice" in p for p in check_stream("h2", twice, exp, start, end).problems)
    back = [*records, records[0]]
    assert any("after" in p for p in check_stream("h2", back, exp, start, end).problems)
    again = records[:1] + records[3:] + records[1:3]  # rev 1 twice, split by a later one
    assert not check_stream("h2", again, exp, start, end).ok


def test_ignored_repeats_pass_and_a_list_is_a_break(log: tuple[list[Event], int, int]) -> None:
    events, start, end = log
    exp = expected_streams(events, ["h2"], start, end)["h2"]
    records = _records(exp)
    resumed = [*records[:2], {**records[1], "dup": True}, *records[2:]]
    check = check_stream("h2", resumed, exp, start, end)
    assert check.ok and check.dups == 1, check.problems
    relisted = [*records[:3], {"revision": records[3]["revision"], "kind": "list", "op": ""}]
    assert any("listed again" in p for p in check_stream("h2", relisted, exp, start, end).problems)


def test_history_is_cut_at_each_restart_and_checked_from_its_list(
    log: tuple[list[Event], int, int],
) -> None:
    events, start, end = log
    exp = expected_streams(events, ["h2"], start, end)["h2"]
    revs = sorted(exp)
    # Restarted once, when revs[0] had reached it; the new agent listed at revs[1].
    before = [r for r in _records(exp) if r["revision"] <= revs[0]]
    after = [r for r in _records(exp) if r["revision"] > revs[1]]
    head = [{"revision": start - 1, "kind": "list", "op": ""}]
    records = [*head, *before, {"revision": revs[1], "kind": "list", "op": ""}, *after]
    checks = check_history("h2", records, events, start, end, restarts=[revs[0]])
    assert [c.ok for c in checks] == [True, True], [c.problems for c in checks]
    unplanned = check_history("h2", records, events, start, end)
    assert not all(c.ok for c in unplanned)
