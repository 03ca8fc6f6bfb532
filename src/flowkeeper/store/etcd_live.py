"""Host liveness on etcd: a lease per host, kept alive while its heartbeats come in.

The server that gets a host's heartbeats grants the host a lease (TTL liveness_ttl_s) and
writes `live/NAME` attached to it, only when the host's state word changes (or the lease
is new). Heartbeats refresh the lease with keep-alives, which are not writes: no revision,
no fsync. When heartbeats stop the lease expires, etcd deletes `live/NAME`, and the first
server to see that records `gone/NAME` (create-only: the first time wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from aetcd import rpc

from flowkeeper.model import Host
from flowkeeper.store.etcd_conn import Conn
from flowkeeper.store.etcd_events import RawEvent
from flowkeeper.store.etcd_keys import Keys, dumps, loads
from flowkeeper.store.etcd_txn import KV, absent, delete, get, put, txn

log = logging.getLogger("flowkeeper.store")


@dataclass
class Held:
    """A lease this server holds for a host it hears from."""

    lease: int
    state: str
    since: float
    heard: float  # time.monotonic() of the last heartbeat


def live_value(host: Host, since: float) -> bytes:
    return dumps(
        {
            "state": host.state,
            "revision": host.revision,
            "last_seen": host.last_seen,
            "since": since,
        }
    )


def overlay(host: Host, live: dict[str, Any] | None, local: Host | None) -> Host:
    """The host object with its latest liveness: this server's last heartbeat, else the
    liveness key's, else what the object was stored with."""
    src: Host | None = local
    if src is None and live is not None:
        try:
            return replace(
                host,
                state=str(live["state"]),
                revision=int(live["revision"]),
                last_seen=float(live["last_seen"]),
            )
        except (KeyError, TypeError, ValueError):
            return host
    if src is None:
        return host
    return replace(host, state=src.state, revision=src.revision, last_seen=src.last_seen)


class Liveness:
    def __init__(self, conn: Conn, keys: Keys, ttl_s: int) -> None:
        self.conn = conn
        self.keys = keys
        self.ttl_s = ttl_s
        self.held: dict[str, Held] = {}
        self.local: dict[str, Host] = {}  # the last heartbeat of each host heard here

    async def heartbeat(self, kv: Any, host: Host) -> None:
        """The host's heartbeat reached this server (inside a put_host attempt)."""
        name = host.name
        held = self.held.get(name)
        if held is not None and held.state == host.state:
            held.heard = time.monotonic()
            self.local[name] = host
            return
        key = self.keys.live_key(name)
        if held is None:
            since = time.time()
            existing = await get(kv, key)
            if existing is not None:  # alive through another server until now
                since = float(loads(existing.value, "liveness").get("since", since))
            client = await self.conn.client()
            grant = await client.leasestub.LeaseGrant(rpc.LeaseGrantRequest(TTL=self.ttl_s))
            held = Held(int(grant.ID), host.state, since, time.monotonic())
        try:
            await txn(
                kv,
                [],
                [
                    put(key, live_value(host, held.since), held.lease),
                    delete(self.keys.gone_key(name)),
                ],
            )
        except rpc.AioRpcError as exc:
            if exc.code() == rpc.StatusCode.NOT_FOUND:  # the lease expired meanwhile
                self.held.pop(name, None)
                raise
            raise
        held.state, held.heard = host.state, time.monotonic()
        self.held[name] = held
        self.local[name] = host

    def forget(self, name: str) -> int:
        """Stop keeping the host's lease alive; its lease id (0 if none)."""
        self.local.pop(name, None)
        held = self.held.pop(name, None)
        return 0 if held is None else held.lease

    async def revoke(self, lease: int) -> None:
        with contextlib.suppress(Exception):
            client = await self.conn.client()
            await client.leasestub.LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease), timeout=2.0)

    async def keep_alive(self) -> None:
        """Every third of the TTL: refresh the leases of hosts heard within the TTL."""
        while True:
            await asyncio.sleep(max(self.ttl_s / 3.0, 0.2))
            now = time.monotonic()
            for name, held in list(self.held.items()):
                if now - held.heard > self.ttl_s:
                    self.forget(name)  # silent: let the lease expire
            leases = {held.lease: name for name, held in self.held.items()}
            if not leases:
                continue
            try:
                await asyncio.wait_for(self._refresh(leases), self.conn.attempt_s * 2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("etcd lease keep-alive failed: %s", exc)
                self.conn.rotate(self.conn.index)

    async def _refresh(self, leases: dict[int, str]) -> None:
        client = await self.conn.client()

        async def requests() -> AsyncIterator[Any]:
            for lease in leases:
                yield rpc.LeaseKeepAliveRequest(ID=lease)

        answered = 0
        call = client.leasestub.LeaseKeepAlive(requests())
        try:
            async for resp in call:
                answered += 1
                if resp.TTL <= 0:  # expired: the next heartbeat grants a new one
                    name = leases.get(int(resp.ID))
                    held = None if name is None else self.held.get(name)
                    if name is not None and held is not None and held.lease == int(resp.ID):
                        self.forget(name)
                if answered >= len(leases):
                    break
        finally:
            call.cancel()

    async def on_live_event(self, raw: RawEvent) -> None:
        """A change of some live/NAME key (any server's)."""
        name = self.keys.last_part(raw.key)
        if raw.delete:
            self.forget(name)
            await self.mark_gone(name)
            return
        held = self.held.get(name)
        if held is not None and raw.lease != held.lease:
            self.forget(name)  # another server took the host over

    async def mark_gone(self, name: str, when: float | None = None) -> None:
        """Record when the host was first seen gone (create-only: the first server wins)."""
        key = self.keys.gone_key(name)
        value = dumps({"since": time.time() if when is None else when})
        _, kv = await self.conn.kv()
        await txn(kv, [absent(key), absent(self.keys.live_key(name))], [put(key, value)])


def gone_since(kv: KV | None) -> float | None:
    if kv is None:
        return None
    try:
        return float(loads(kv.value, "gone").get("since", 0.0))
    except (TypeError, ValueError):
        return None
