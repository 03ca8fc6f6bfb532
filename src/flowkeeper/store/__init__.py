"""The control plane's store: open one from a URL (sqlite:PATH or etcd://H:P[,H:P...][/PREFIX])."""

from __future__ import annotations

from pathlib import Path

from flowkeeper.errors import UsageError
from flowkeeper.store.base import DEFAULT_KEEP_EVENTS, DEFAULT_LIVENESS_TTL_S, Store


def sqlite_path(url: str) -> Path | None:
    """The database path of a sqlite:PATH store URL, else None."""
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:").removeprefix("//")
        return Path(path) if path else None
    return None


def open_store(
    url: str,
    keep_events: int = DEFAULT_KEEP_EVENTS,
    liveness_ttl_s: float = DEFAULT_LIVENESS_TTL_S,
) -> Store:
    """Open the store named by `url`: sqlite:PATH or etcd://H:P[,H:P...][/PREFIX].
    `liveness_ttl_s`: a host is gone this long after its last heartbeat."""
    path = sqlite_path(url)
    if path is not None:
        from flowkeeper.store.sqlite import SqliteStore

        return SqliteStore(path, keep_events=keep_events, liveness_ttl_s=liveness_ttl_s)
    if url.startswith("etcd://"):
        from flowkeeper.store.etcd import EtcdStore
        from flowkeeper.store.etcd_keys import parse_url

        parse_url(url)  # a bad URL: a one-line UsageError before anything connects
        return EtcdStore(url, keep_events=keep_events, liveness_ttl_s=liveness_ttl_s)
    raise UsageError(f"bad --store {url!r}: use sqlite:PATH or etcd://HOST:PORT[,HOST:PORT...]")
