"""Authentication and authorization of every request (one middleware), and where the
bootstrap admin token comes from."""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web

from flowkeeper.cperrors import Forbidden, NotFound, Unauthorized
from flowkeeper.errors import UsageError
from flowkeeper.fsutil import atomic_write
from flowkeeper.server.policy import PORT_STATUS, authorize, is_public
from flowkeeper.server.state import PRINCIPAL, STATE, ServerState
from flowkeeper.store import sqlite_path

TOKEN_ENV = "FLOWKEEPER_TOKEN"  # noqa: S105 - a variable name, not a secret
TOKEN_FILE_NAME = "token"  # noqa: S105 - a file name


def check_token_text(token: str, where: str) -> str:
    token = token.strip()
    if not token or any(c.isspace() for c in token) or not token.isprintable():
        raise UsageError(f"bad token in {where}: must be one word of printable characters")
    return token


def read_token_file(path: Path) -> str:
    try:
        return check_token_text(path.read_text(), str(path))
    except FileNotFoundError:
        raise UsageError(f"token file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read token file {path}: {exc}") from None


def load_token(token_file: Path | None, env: Mapping[str, str], store_url: str) -> tuple[str, str]:
    """The bootstrap admin token and where it came from: --token-file, else
    $FLOWKEEPER_TOKEN, else the file `token` next to the SQLite database, generated (mode
    0600) on first start. An etcd store has no such directory, and several servers must
    share one token: it needs --token-file or $FLOWKEEPER_TOKEN."""
    if token_file is not None:
        return read_token_file(token_file), str(token_file)
    if env.get(TOKEN_ENV):
        return check_token_text(env[TOKEN_ENV], f"${TOKEN_ENV}"), f"${TOKEN_ENV}"
    db = sqlite_path(store_url)
    if db is None and store_url.startswith("etcd://"):
        raise UsageError(
            f"an etcd store needs the bootstrap admin token given: --token-file PATH or "
            f"${TOKEN_ENV}, the same on every server"
        )
    if db is None:
        raise UsageError(f"give the server a token: --token-file PATH or ${TOKEN_ENV}")
    path = db.parent / TOKEN_FILE_NAME
    if path.exists():
        os.chmod(path, 0o600)
        return read_token_file(path), str(path)
    token = secrets.token_urlsafe(32)
    atomic_write(path, (token + "\n").encode(), mode=0o600)
    return token, f"{path} (generated)"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _port_host(st: ServerState, port_id: str) -> str | None:
    """The host a port is bound to, None if there is no such port."""
    try:
        port = await st.db.run(st.db.store.get_port, port_id)
    except NotFound:
        return None
    return port.host


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request but the public ones needs a valid token, and the policy's yes."""
    resource = request.match_info.route.resource
    if resource is None:  # no such endpoint or method: the handler answers 404 or 405
        return await handler(request)
    route, method = resource.canonical, request.method
    if is_public(method, route):
        return await handler(request)
    st = request.app[STATE]
    header = request.headers.get("Authorization")
    try:
        who = st.tokens.authenticate(header)
    except Unauthorized:
        if st.token_sync is None or not st.tokens.unknown_id(header):
            raise
        await st.token_sync.on_miss()  # made through another server a moment ago?
        who = st.tokens.authenticate(header)
    port_host = None
    if who.role == "host" and (method, route) == ("PUT", PORT_STATUS):
        port_host = await _port_host(st, request.match_info["id"])
    decision = authorize(who, method, route, request.match_info, port_host)
    if not decision.allowed:
        raise Forbidden(decision.reason)
    request[PRINCIPAL] = who
    if route.endswith("/watch"):
        with st.streams.track(who.token_id):  # a revocation cancels the stream
            return await handler(request)
    return await handler(request)
