"""Assemble and run the server: store, hub, aiohttp app, JSON errors, auth, TLS, signals."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from flowkeeper.cperrors import http_status
from flowkeeper.errors import FlowkeeperError, UsageError
from flowkeeper.server import api, sg_api, token_api, watch
from flowkeeper.server.asyncstore import AsyncStore
from flowkeeper.server.auth import auth_middleware, load_token
from flowkeeper.server.hub import MAX_WATCHERS_PER_HOST, Hub
from flowkeeper.server.state import STATE, ServerState
from flowkeeper.server.stats import Stats
from flowkeeper.server.tokens import TokenTable
from flowkeeper.server.tokensync import TokenSync
from flowkeeper.store import open_store
from flowkeeper.store.base import DEFAULT_KEEP_EVENTS, DEFAULT_LIVENESS_TTL_S
from flowkeeper.tlsconf import server_context

log = logging.getLogger("flowkeeper.server")

DEFAULT_LISTEN = "127.0.0.1:9696"
DEFAULT_STORE = "sqlite:/var/lib/flowkeeper/flowkeeper.db"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ServerConfig:
    listen: str = DEFAULT_LISTEN
    store: str = DEFAULT_STORE
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    keep_events: int = DEFAULT_KEEP_EVENTS
    heartbeat_s: float = 5.0
    max_watchers_per_host: int = MAX_WATCHERS_PER_HOST
    liveness_ttl_s: float = DEFAULT_LIVENESS_TTL_S  # gone this long after the last heartbeat
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


def parse_listen(text: str, tls: bool = False) -> tuple[str, int]:
    """IPv4:PORT. Without TLS only a loopback address: tokens must not cross a network
    in clear text. With TLS any address (0.0.0.0: all)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"bad --listen {text!r}: use ADDRESS:PORT, e.g. 127.0.0.1:9696")
    host = "127.0.0.1" if host in ("", "localhost") else host
    try:
        loopback = ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        raise UsageError(f"bad --listen {text!r}: the address must be IPv4") from None
    if not loopback and not tls:
        raise UsageError(
            f"--listen {text!r}: without TLS only 127.0.0.0/8; "
            "use --tls-cert and --tls-key to listen on other addresses"
        )
    return host, int(port_text)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    line = " ".join(message.split()) or "error"
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return web.json_response({"error": line}, status=status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes {"error": "one line"} with a 4xx (or 5xx) status."""
    try:
        return await handler(request)
    except FlowkeeperError as exc:
        status = http_status(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc)
        return _error(status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = {
            404: f"no such endpoint: {request.method} {request.path}",
            405: f"method {request.method} not allowed on {request.path}",
            413: "request body too large",
        }.get(exc.status, exc.reason)
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error(exc.status, text, allow)
    except TimeoutError:
        return _error(503, "timed out waiting for the event log; try again")


def build_app(state: ServerState) -> web.Application:
    app = web.Application(middlewares=[errors_middleware, auth_middleware])
    app[STATE] = state
    app.add_routes(api.routes)
    app.add_routes(sg_api.routes)
    app.add_routes(watch.routes)
    app.add_routes(token_api.routes)

    async def on_shutdown(_app: web.Application) -> None:
        await state.hub.close()  # ends every watch stream so shutdown does not wait on them

    app.on_shutdown.append(on_shutdown)
    from flowkeeper.server.cluster import add_cluster_header

    add_cluster_header(app, state.db.store)
    return app


@dataclass
class RunningServer:
    url: str
    state: ServerState
    runner: web.AppRunner
    token_source: str

    async def stop(self) -> None:
        if self.state.token_sync is not None:
            await self.state.token_sync.stop()
        await self.state.hub.close()
        await self.runner.cleanup()
        await self.state.db.close()


async def start(config: ServerConfig) -> RunningServer:
    """Open the store, load the tokens, bind the listen address; returns once serving."""
    tls: ssl.SSLContext | None = server_context(config.tls_cert, config.tls_key)
    host, port = parse_listen(config.listen, tls is not None)
    if config.heartbeat_s <= 0:
        raise UsageError("--heartbeat must be > 0 seconds")
    store = open_store(config.store, config.keep_events, config.liveness_ttl_s)
    db = AsyncStore(store)  # the store first: it makes the dir 0700
    stats = Stats()
    hub = Hub(db, stats, max_watchers_per_host=config.max_watchers_per_host)
    try:
        token, token_source = load_token(config.token_file, config.env, config.store)
        tokens = TokenTable(token, await db.run(db.store.list_tokens))
        await hub.start()
        state = ServerState(db, hub, stats, tokens, config.heartbeat_s)
        state.token_sync = TokenSync(state)
        runner = web.AppRunner(build_app(state), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise FlowkeeperError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    except BaseException:
        await hub.close()
        await db.close()
        raise
    state.token_sync.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    scheme = "https" if tls else "http"
    return RunningServer(f"{scheme}://{host}:{bound}", state, runner, token_source)


async def serve(config: ServerConfig, announce: Callable[[str], None] = print) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    running = await start(config)
    announce(f"flowkeeper server: listening on {running.url} (store {config.store})")
    announce(f"flowkeeper server: admin token from {running.token_source}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await running.stop()
    announce("flowkeeper server: stopped")
