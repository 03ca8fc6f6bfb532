"""`flowkeeper server`: run the control-plane server (REST API, list+watch streams)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from flowkeeper.cli.common import positive_int
from flowkeeper.errors import UsageError
from flowkeeper.store.base import DEFAULT_KEEP_EVENTS, DEFAULT_LIVENESS_TTL_S


def register(sub: Any) -> None:
    from flowkeeper.server.app import DEFAULT_LISTEN, DEFAULT_STORE
    from flowkeeper.server.hub import MAX_WATCHERS_PER_HOST

    srv = sub.add_parser("server", help="run the control-plane server")
    srv.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        help="ADDRESS:PORT (port 0: any); without TLS only 127.0.0.0/8",
    )
    srv.add_argument(
        "--store",
        default=os.environ.get("FLOWKEEPER_STORE", DEFAULT_STORE),
        help="sqlite:PATH or etcd://HOST:PORT[,HOST:PORT...][/PREFIX] "
        f"(env FLOWKEEPER_STORE; default {DEFAULT_STORE})",
    )
    srv.add_argument(
        "--token-file",
        type=Path,
        help="the bootstrap admin token (else env FLOWKEEPER_TOKEN, else a generated "
        "'token' file next to the SQLite database; an etcd store needs one of the first "
        "two, the same on every server)",
    )
    srv.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    srv.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    srv.add_argument(
        "--keep-events",
        type=_count,
        default=DEFAULT_KEEP_EVENTS,
        help=f"events kept for watchers to catch up (default {DEFAULT_KEEP_EVENTS})",
    )
    srv.add_argument("--heartbeat", type=float, default=5.0, help="watch heartbeat seconds")
    srv.add_argument(
        "--liveness-ttl",
        type=float,
        default=DEFAULT_LIVENESS_TTL_S,
        help="seconds after a host's last heartbeat before it counts as gone "
        f"(default {DEFAULT_LIVENESS_TTL_S:g}: three agent heartbeats of 5 s)",
    )
    srv.add_argument(
        "--max-watchers-per-host",
        type=_count,
        default=MAX_WATCHERS_PER_HOST,
        help="watch streams one host may hold open; more get 429 "
        f"(default {MAX_WATCHERS_PER_HOST})",
    )
    srv.set_defaults(func=_server)


def _count(text: str) -> int:
    value = positive_int(text)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def _announce(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _server(args: argparse.Namespace) -> int:
    from flowkeeper.server.app import ServerConfig, serve

    if not 0.01 <= args.heartbeat <= 300:
        raise UsageError("--heartbeat must be between 0.01 and 300 seconds")
    if not 0.1 <= args.liveness_ttl <= 3600:
        raise UsageError("--liveness-ttl must be between 0.1 and 3600 seconds")
    logging.getLogger("flowkeeper.server").setLevel(logging.DEBUG if args.debug else logging.INFO)
    config = ServerConfig(
        listen=args.listen,
        store=args.store,
        token_file=args.token_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        keep_events=args.keep_events,
        heartbeat_s=args.heartbeat,
        max_watchers_per_host=args.max_watchers_per_host,
        liveness_ttl_s=args.liveness_ttl,
    )
    asyncio.run(serve(config, announce=_announce))
    return 0
