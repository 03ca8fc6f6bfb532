"""The authorization policy as pure logic: every role against every kind of route."""

from __future__ import annotations

import pytest

from flowkeeper.server.policy import Principal, authorize, is_public

ADMIN = Principal("bootstrap", "admin")
READER = Principal("tk000000000001", "read-only")
H1 = Principal("tk0000000000h1", "host", "h1")

ROUTES = [
    ("GET", "/v1/networks", {}),
    ("POST", "/v1/networks", {}),
    ("GET", "/v1/networks/{id}", {"id": "n"}),
    ("DELETE", "/v1/networks/{id}", {"id": "n"}),
    ("GET", "/v1/ports", {}),
    ("POST", "/v1/ports", {}),
    ("DELETE", "/v1/ports/{id}", {"id": "p"}),
    ("PUT", "/v1/ports/{id}/binding", {"id": "p"}),
    ("GET", "/v1/hosts", {}),
    ("DELETE", "/v1/hosts/{name}", {"name": "h2"}),
    ("GET", "/v1/stats", {}),
    ("GET", "/v1/tokens", {}),
    ("POST", "/v1/tokens", {}),
    ("DELETE", "/v1/tokens/{id}", {"id": "tk000000000009"}),
    ("PATCH", "/v1/ports/{id}", {"id": "p"}),
    ("GET", "/v1/security-groups", {}),
    ("POST", "/v1/security-groups", {}),
    ("GET", "/v1/security-groups/{id}", {"id": "g"}),
    ("DELETE", "/v1/security-groups/{id}", {"id": "g"}),
    ("GET", "/v1/security-groups/{id}/rules", {"id": "g"}),
    ("POST", "/v1/security-groups/{id}/rules", {"id": "g"}),
    ("GET", "/v1/security-groups/{id}/rules/{rule_id}", {"id": "g", "rule_id": "r"}),
    ("DELETE", "/v1/security-groups/{id}/rules/{rule_id}", {"id": "g", "rule_id": "r"}),
]


@pytest.mark.parametrize(("method", "route", "params"), ROUTES)
def test_admin_may_do_everything(method: str, route: str, params: dict[str, str]) -> None:
    assert authorize(ADMIN, method, route, params).allowed
    assert authorize(ADMIN, "PUT", "/v1/ports/{id}/status", {"id": "p"}, "h7").allowed


@pytest.mark.parametrize(("method", "route", "params"), ROUTES)
def test_read_only_reads_all_but_tokens(method: str, route: str, params: dict[str, str]) -> None:
    decision = authorize(READER, method, route, params)
    assert decision.allowed == (method == "GET" and not route.startswith("/v1/tokens"))
    if not decision.allowed:
        assert (
            decision.reason
            == f"read-only token {READER.token_id} may only read (not {method} {route})"
        )


@pytest.mark.parametrize(("method", "route", "params"), ROUTES)
def test_host_token_may_not_touch_shared_objects(
    method: str, route: str, params: dict[str, str]
) -> None:
    decision = authorize(H1, method, route, params)
    assert not decision.allowed
    assert decision.reason.startswith("host token tk0000000000h1 (host h1) may not ")
    assert "\n" not in decision.reason


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("PUT", "/v1/hosts/{name}"),
        ("GET", "/v1/hosts/{name}"),
        ("GET", "/v1/hosts/{name}/view"),
        ("GET", "/v1/hosts/{name}/watch"),
    ],
)
def test_host_token_acts_only_as_its_own_host(method: str, route: str) -> None:
    assert authorize(H1, method, route, {"name": "h1"}).allowed
    other = authorize(H1, method, route, {"name": "h2"})
    assert not other.allowed
    assert other.reason == "host token tk0000000000h1 (host h1) may not act as host 'h2'"


def test_host_token_sets_the_status_of_its_own_ports_only() -> None:
    route, params = "/v1/ports/{id}/status", {"id": "p1"}
    assert authorize(H1, "PUT", route, params, "h1").allowed
    refused = authorize(H1, "PUT", route, params, "h2")
    assert not refused.allowed
    assert refused.reason == (
        "host token tk0000000000h1 (host h1) may not set the status of port 'p1': "
        "it is bound to 'h2'"
    )
    # no such port: allowed through, so that the handler answers 404
    assert authorize(H1, "PUT", route, params, None).allowed
    assert not authorize(READER, "PUT", route, params, None).allowed


def test_only_an_admin_deletes_a_host_even_its_own() -> None:
    route = "/v1/hosts/{name}"
    assert authorize(ADMIN, "DELETE", route, {"name": "h1"}).allowed
    own = authorize(H1, "DELETE", route, {"name": "h1"})
    assert not own.allowed
    assert own.reason == (
        "host token tk0000000000h1 (host h1) may not DELETE /v1/hosts/{name}: a host token "
        "may only register its host, read its view and watch, and report its ports' status"
    )
    reader = authorize(READER, "DELETE", route, {"name": "h1"})
    assert reader.reason == (
        "read-only token tk000000000001 may only read (not DELETE /v1/hosts/{name})"
    )


def test_only_the_api_description_is_public() -> None:
    assert is_public("GET", "/v1/openapi.json")
    for method, route, _ in ROUTES:
        assert not is_public(method, route)
    assert not is_public("GET", "/v1/hosts/{name}/watch")
