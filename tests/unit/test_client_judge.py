"""What the clients make of one attempt's answer (`judge`): which failures go to the next
server and which are final because the write may have been applied."""

from __future__ import annotations

import json

from flowkeeper.client import ApiError, MaybeApplied, Retry, judge

UNAVAILABLE = (503, json.dumps({"error": "etcd unavailable at m1, m2, m3"}).encode())


def test_a_503_to_a_delete_may_have_been_applied_and_is_not_repeated() -> None:
    verdict = judge("DELETE", "/v1/ports/p1", UNAVAILABLE)
    assert isinstance(verdict, Retry) and verdict.final
    assert isinstance(verdict.failure, MaybeApplied)
    text = str(verdict.failure)
    assert "etcd unavailable" in text and "(HTTP 503)" in text
    assert "DELETE /v1/ports/p1 may have been applied" in text and "\n" not in text


def test_a_503_to_a_post_is_final_and_may_have_been_applied() -> None:
    verdict = judge("POST", "/v1/networks", UNAVAILABLE)
    assert isinstance(verdict, Retry) and verdict.final
    assert isinstance(verdict.failure, MaybeApplied)


def test_a_503_to_a_read_or_a_put_goes_to_the_next_server() -> None:
    for method in ("GET", "PUT"):
        verdict = judge(method, "/v1/ports/p1", UNAVAILABLE)
        assert isinstance(verdict, Retry) and not verdict.final
        assert isinstance(verdict.failure, ApiError) and verdict.failure.status == 503


def test_a_success_is_the_decoded_answer() -> None:
    assert judge("DELETE", "/v1/ports/p1", (200, b'{"deleted": "p1", "revision": 7}')) == {
        "deleted": "p1",
        "revision": 7,
    }
