"""Several servers: the list, the pool, backoff with full jitter, what may be sent again."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowkeeper.client import resolve_server, resolve_servers
from flowkeeper.errors import UsageError
from flowkeeper.failover import (
    AGENT_BACKOFF,
    Backoff,
    Budget,
    ServerPool,
    cli_budget,
    parse_servers,
    retry_safe,
    start_index,
)

A, B, C = "http://127.0.0.1:9001", "http://127.0.0.1:9002", "http://127.0.0.1:9003"


def test_a_comma_list_is_parsed_in_order_and_normalised() -> None:
    assert parse_servers(f"{A}/, {B} ,{C}") == [A, B, C]
    assert parse_servers([A, B]) == [A, B]
    assert parse_servers("https://[::1]:9696") == ["https://[::1]:9696"]
    assert parse_servers("http://cp.example") == ["http://cp.example"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no server URL given"),
        (" , ", "no server URL given"),
        (f"{A},,{B}", "empty server URL"),
        (f"{A},", "empty server URL"),
        ("ftp://x", "bad server URL 'ftp://x'"),
        ("127.0.0.1:9696", "bad server URL"),
        ("http://", "bad server URL"),
        ("http://h:99999", "bad server URL"),
        ("http://h:port", "bad server URL"),
        ("http://h:", "bad server URL"),
        ("http://h:1/v1", "bad server URL"),
        ("http://h:1?x=1", "bad server URL"),
        ("http://user@h:1", "bad server URL"),
        (f"{A},{A}/", "is given twice"),
        (f"{A},https://127.0.0.1:9002", "mix http and https"),
    ],
)
def test_bad_lists_are_refused_with_one_line(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as exc:
        parse_servers(text)
    assert "\n" not in str(exc.value)


def test_the_environment_takes_the_same_list() -> None:
    env = {"FLOWKEEPER_SERVER": f"{A},{B}"}
    assert resolve_servers(None, env) == [A, B]
    assert resolve_servers(C, env) == [C]  # --server wins
    assert resolve_server(None, env) == f"{A},{B}"
    assert resolve_servers(None, {}) == ["http://127.0.0.1:9696"]
    with pytest.raises(UsageError, match="empty server URL"):
        resolve_servers(None, {"FLOWKEEPER_SERVER": f"{A},,"})


def test_the_pool_moves_round_the_list_once_per_failure() -> None:
    pool = ServerPool([A, B, C])
    assert pool.current == A
    assert pool.failed(A) == B
    assert pool.failed(A) is None  # a second caller saw A fail too: no second move
    assert pool.current == B
    assert pool.failed(B) == C
    assert pool.failed(C) == A  # round again
    one = ServerPool([A])
    assert one.failed(A) == A and one.current == A


def test_the_pool_starts_where_it_is_told() -> None:
    assert ServerPool([A, B, C], start=4).current == B
    with pytest.raises(UsageError):
        ServerPool([])


def test_hosts_spread_over_the_servers_and_stay_put() -> None:
    starts = [start_index(f"host-{i}", 3) for i in range(300)]
    assert starts == [start_index(f"host-{i}", 3) for i in range(300)]  # stable
    counts = [starts.count(i) for i in range(3)]
    assert all(c > 60 for c in counts), counts  # roughly a third each, none left empty
    assert start_index("h1", 1) == 0 and start_index("h1", 0) == 0


def test_backoff_ceiling_doubles_to_its_cap() -> None:
    b = Backoff(base_s=0.1, cap_s=1.0)
    assert [b.ceiling(n) for n in range(7)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.ceiling(10_000) == 1.0  # no overflow after a long outage
    assert AGENT_BACKOFF.ceiling(1_000_000) == AGENT_BACKOFF.cap_s


@given(failures=st.integers(0, 200), r=st.floats(0.0, 1.0, exclude_max=True))
def test_full_jitter_is_anywhere_below_the_ceiling(failures: int, r: float) -> None:
    b = Backoff(base_s=0.2, cap_s=5.0)
    delay = b.delay(failures, lambda: r)
    assert 0.0 <= delay <= b.ceiling(failures) <= 5.0
    assert b.delay(failures, lambda: 0.0) == 0.0


def test_the_cli_budget() -> None:
    assert cli_budget(1).attempts == 1  # one server: one attempt, as without failover
    assert cli_budget(3).attempts == 6  # each server twice
    budget = Budget(attempts=3, seconds=10.0)
    assert budget.allows(2, 9.9)
    assert not budget.allows(3, 0.0)
    assert not budget.allows(1, 10.0)


@pytest.mark.parametrize(
    ("method", "sent", "safe"),
    [
        ("GET", False, True),
        ("GET", True, True),
        ("PUT", True, True),  # host heartbeat, port status, binding: they set a state
        ("put", True, True),
        ("POST", False, True),  # never reached a server: cannot have been applied
        ("POST", True, False),  # may have been applied: a create is not repeated blindly
        ("DELETE", False, True),
        ("DELETE", True, False),
    ],
)
def test_what_may_be_sent_again(method: str, sent: bool, safe: bool) -> None:
    assert retry_safe(method, sent) is safe
