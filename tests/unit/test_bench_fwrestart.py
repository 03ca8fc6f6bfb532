"""The pure parts of the firewall bench's agent-restart run."""

from __future__ import annotations

from datetime import datetime

from flowkeeper.bench.fwrestart import counted, log_time, synced_at


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_counted_lost_bytes_and_resets_of_both_sides() -> None:
    c = counted(
        {"sent": 1000, "resets": 1, "error": ""},
        {"received": 700, "resets": 2, "sequence_errors": 0},
    )
    assert (c.lost_bytes, c.resets, c.sequence_errors) == (300, 3, 0)
    whole = counted(
        {"sent": 1000, "resets": 0, "error": ""},
        {"received": 1000, "resets": 0, "sequence_errors": 0},
    )
    assert whole.lost_bytes == 0 and whole.resets == 0


def test_synced_at_takes_the_first_in_sync_line_after_the_restart() -> None:
    lines = [
        "2026-12-03 09:00:00,100 INFO in sync at revision 5: 10 flows",
        "not a log line",
        "2026-12-03 09:00:02,000 INFO snapshot loaded",
        "2026-12-03 09:00:03,250 INFO in sync at revision 7: 10 flows",
        "2026-12-03 09:00:04,000 INFO in sync at revision 8: 10 flows",
    ]
    after = _stamp("2026-12-03 09:00:01,000")
    assert synced_at(lines, after) == _stamp("2026-12-03 09:00:03,250")
    assert synced_at(lines, _stamp("2026-12-03 09:00:05,000")) is None
    assert log_time("garbage") is None
