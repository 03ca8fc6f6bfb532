"""etcd watches: the store's persistent watch of the object keys (feeding the ring), a
one-off watch of older revisions, and the watch of the liveness keys."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aetcd import rpc

from flowkeeper.store.base import Event
from flowkeeper.store.etcd_conn import LEADER, CompactedError, Conn, Transient, classify
from flowkeeper.store.etcd_events import RawEvent, Ring, group, page
from flowkeeper.store.etcd_keys import Keys, range_end

log = logging.getLogger("flowkeeper.store")

DELETE = 1  # mvccpb.Event.DELETE


def raw_events(response: Any) -> list[RawEvent]:
    out = []
    for ev in response.events:
        prev = ev.prev_kv if ev.HasField("prev_kv") else None
        out.append(
            RawEvent(
                delete=ev.type == DELETE,
                key=ev.kv.key,
                value=ev.kv.value,
                mod_revision=ev.kv.mod_revision,
                prev_value=None if prev is None else prev.value,
                prev_mod_revision=0 if prev is None else prev.mod_revision,
                lease=ev.kv.lease,
            )
        )
    return out


async def watch(
    conn: Conn, index: int, prefix: bytes, start_revision: int, prev_kv: bool
) -> AsyncIterator[Any]:
    """The responses of one watch on one member (after the `created` one); raises
    CompactedError, or Transient when the stream ends or the member loses its leader."""
    client = await conn.client(index)
    create = rpc.WatchCreateRequest(
        key=prefix, range_end=range_end(prefix), start_revision=start_revision, prev_kv=prev_kv
    )
    stop = asyncio.Event()

    async def requests() -> AsyncIterator[Any]:
        yield rpc.WatchRequest(create_request=create)
        await stop.wait()

    call = rpc.WatchStub(client.channel).Watch(requests(), metadata=LEADER)
    try:
        async for resp in call:
            if resp.compact_revision:
                raise CompactedError(int(resp.compact_revision))
            if resp.canceled:
                raise Transient(f"watch canceled: {resp.cancel_reason or 'no reason given'}")
            if resp.created and not resp.events:
                continue
            yield resp
        raise Transient("the watch stream ended")
    except rpc.AioRpcError as exc:
        found = classify(exc)
        raise found from None
    finally:
        stop.set()
        call.cancel()


async def history(conn: Conn, keys: Keys, after: int, upto: int, limit: int | None) -> list[Event]:
    """Events in (after, upto] read by a one-off watch (CompactedError if they are gone)."""
    groups: list[tuple[int, list[Event]]] = []
    count = 0
    if upto <= after:
        return []
    async for resp in watch(conn, conn.index, keys.objects, after + 1, prev_kv=True):
        for rev, evs in group(keys, raw_events(resp)):
            if rev <= upto:
                groups.append((rev, evs))
                count += len(evs)
        last = resp.events[-1].kv.mod_revision if resp.events else 0
        if last >= upto or (limit is not None and count >= limit):
            break
    return page(groups, after, limit)


class Follower:
    """The store's persistent watch of the object keys: appends every revision to the ring
    and calls `changed()`; after a failure it resumes from its last revision on the next
    member."""

    def __init__(self, conn: Conn, keys: Keys, ring: Ring, changed: Callable[[], None]) -> None:
        self.conn = conn
        self.keys = keys
        self.ring = ring
        self.changed = changed
        self.failures = 0

    async def run(self) -> None:
        while True:
            index = self.conn.index
            try:
                async for resp in watch(
                    self.conn, index, self.keys.objects, self.ring.upto + 1, prev_kv=True
                ):
                    self.failures = 0
                    groups = group(self.keys, raw_events(resp))
                    if groups:
                        self.ring.append(groups, groups[-1][0])
                        self.changed()
            except asyncio.CancelledError:
                raise
            except CompactedError as exc:
                log.warning("etcd watch: revision %d compacted; the ring restarts", exc.revision)
                self.ring.reset(exc.revision)
                self.changed()
            except Exception as exc:
                self.failures += 1
                if self.failures == 1 or self.failures % 50 == 0:
                    log.warning("etcd watch on %s failed: %s", self.conn.endpoint(index), exc)
            self.conn.rotate(index)
            await asyncio.sleep(min(0.05 * self.failures, 1.0))


async def follow_keys(
    conn: Conn, prefix: bytes, on_event: Callable[[RawEvent], Awaitable[None]]
) -> None:
    """Watch the keys under `prefix` from now on, forever, resuming after failures."""
    start = 0
    failures = 0
    while True:
        index = conn.index
        try:
            async for resp in watch(conn, index, prefix, start, prev_kv=False):
                failures = 0
                for raw in raw_events(resp):
                    try:
                        await on_event(raw)
                    except Exception as exc:
                        log.debug("etcd watch of %r: %s", prefix, exc)
                    start = raw.mod_revision + 1
        except asyncio.CancelledError:
            raise
        except CompactedError:
            start = 0
        except Exception:
            failures += 1
        conn.rotate(index)
        await asyncio.sleep(min(0.05 * failures, 1.0))
