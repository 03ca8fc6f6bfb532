"""Host liveness from heartbeat times (the SQLite store's rules) as pure logic."""

from __future__ import annotations

import pytest

from flowkeeper.model import Host
from flowkeeper.store.base import HostLiveness
from flowkeeper.store.liveness import check_ttl, liveness, must_sync, run_start
from flowkeeper.validation import ValidationError

TTL = 15.0


def beat(at: float, state: str = "in-sync", revision: int = 0, ip: str = "198.18.0.1") -> Host:
    return Host("h1", ip, state=state, revision=revision, last_seen=at)


def test_alive_while_the_last_heartbeat_is_within_the_ttl() -> None:
    assert liveness(100.0, 90.0, 100.0 + TTL, TTL) == HostLiveness(True, 90.0)
    assert liveness(100.0, 90.0, 100.0 + TTL + 0.01, TTL) == HostLiveness(False, 100.0 + TTL)
    # a store from before the run's start was kept: alive since the last heartbeat known
    assert liveness(100.0, None, 101.0, TTL) == HostLiveness(True, 100.0)


def test_a_run_of_heartbeats_starts_at_the_first_and_again_after_a_gap() -> None:
    assert run_start(None, None, beat(10.0), TTL) == 10.0
    assert run_start(beat(10.0), 10.0, beat(15.0), TTL) == 10.0
    assert run_start(beat(15.0), 10.0, beat(15.0 + TTL), TTL) == 10.0  # just in time
    assert run_start(beat(15.0), 10.0, beat(15.0 + TTL + 1), TTL) == 15.0 + TTL + 1
    assert run_start(beat(15.0), None, beat(20.0), TTL) == 15.0


def test_only_a_heartbeat_that_moves_times_and_revision_skips_the_fsync() -> None:
    old = beat(10.0, revision=3)
    assert not must_sync(old, beat(15.0, revision=4), TTL)
    assert must_sync(None, beat(15.0), TTL)  # registration
    assert must_sync(old, beat(15.0, ip="198.18.0.9"), TTL)  # spec: an event
    assert must_sync(old, beat(15.0, state="syncing"), TTL)  # the state word
    assert must_sync(old, beat(10.0 + TTL + 1), TTL)  # back after it was gone


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), 4000.0, True])
def test_a_bad_ttl_is_one_clear_line(bad: float) -> None:
    with pytest.raises(ValidationError, match="liveness TTL must be"):
        check_ttl(bad)
