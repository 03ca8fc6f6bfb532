"""Who may do what: a pure function of (principal, method, route, path params, port's host).

Admin tokens may do everything; read-only tokens may read everything but the token list;
a host token may act only as its own host: register and heartbeat it, read its host record,
view and watch, and set the status of ports bound to it. Everything else is refused with a
one-line reason. The caller looks up a port's bound host for the port status rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flowkeeper.store.tokens import Role

READS = frozenset({"GET", "HEAD"})
PUBLIC = frozenset({("GET", "/v1/openapi.json"), ("HEAD", "/v1/openapi.json")})
PORT_STATUS = "/v1/ports/{id}/status"
HOST_ROUTES = frozenset(
    {
        ("PUT", "/v1/hosts/{name}"),
        ("GET", "/v1/hosts/{name}"),
        ("GET", "/v1/hosts/{name}/view"),
        ("GET", "/v1/hosts/{name}/watch"),
    }
)
ADMIN_ONLY_PREFIX = "/v1/tokens"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: a token's id and role (and host, for a host token)."""

    token_id: str
    role: Role
    host: str = ""

    def describe(self) -> str:
        if self.role == "host":
            return f"host token {self.token_id} (host {self.host})"
        return f"{self.role} token {self.token_id}"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""


ALLOW = Decision(True)


def is_public(method: str, route: str) -> bool:
    """Requests that need no token at all: the API's own description."""
    return (method, route) in PUBLIC


def authorize(
    who: Principal,
    method: str,
    route: str,
    params: Mapping[str, str],
    port_host: str | None = None,
) -> Decision:
    """Allow, or refuse with a one-line reason. `route` is the route's pattern (e.g.
    /v1/hosts/{name}), `params` its path parameters; `port_host` is the host the port is
    bound to for PUT /v1/ports/{id}/status (None: no such port, the handler answers 404)."""
    if who.role == "admin" or is_public(method, route):
        return ALLOW
    what = f"{method} {route}"
    if who.role == "read-only":
        if method in READS and not route.startswith(ADMIN_ONLY_PREFIX):
            return ALLOW
        return Decision(False, f"{who.describe()} may only read (not {what})")
    return _host_rule(who, method, route, params, port_host)


def _host_rule(
    who: Principal, method: str, route: str, params: Mapping[str, str], port_host: str | None
) -> Decision:
    if (method, route) in HOST_ROUTES:
        name = params.get("name", "")
        if name == who.host:
            return ALLOW
        return Decision(False, f"{who.describe()} may not act as host {name!r}")
    if (method, route) == ("PUT", PORT_STATUS):
        if port_host is None or port_host == who.host:
            return ALLOW
        return Decision(
            False,
            f"{who.describe()} may not set the status of port {params.get('id', '')!r}: "
            f"it is bound to {port_host!r}",
        )
    return Decision(
        False,
        f"{who.describe()} may not {method} {route}: a host token may only register its "
        "host, read its view and watch, and report its ports' status",
    )
