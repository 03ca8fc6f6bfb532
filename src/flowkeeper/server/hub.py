"""The watch hub: follows the store's event log, keeps the World, fans events out to watchers."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from flowkeeper.cperrors import Compacted, StoreError
from flowkeeper.model import Port, View, WatchEvent
from flowkeeper.server.asyncstore import AsyncStore
from flowkeeper.server.fanout import HostState, fan_out
from flowkeeper.server.stats import Stats
from flowkeeper.server.world import Rewound, World, build_view
from flowkeeper.store.base import Event

log = logging.getLogger("flowkeeper.server")

BATCH = 5000
MAX_PENDING = 1_000_000
IDLE_POLL_S = 1.0  # safety net for writers that bypass this server; local writes poke at once

Batch = tuple[list[WatchEvent], int]


class Watcher:
    """One watch stream: the host's fan-out state and the messages not yet written."""

    def __init__(self, host: str, state: HostState, revision: int, max_pending: int) -> None:
        self.host = host
        self.state = state
        self.revision = revision  # every event up to here was fanned out to this watcher
        self.max_pending = max_pending
        self.closed = False
        self.reason = ""
        self._pending: list[WatchEvent] = []
        self._wake = asyncio.Event()

    def push(self, messages: list[WatchEvent]) -> None:
        if self.closed or not messages:
            return
        self._pending += messages
        if len(self._pending) > self.max_pending:
            self._pending = []
            self.close(f"more than {self.max_pending} messages queued (reader too slow)")
        self._wake.set()

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed, self.reason = True, reason
        self._wake.set()

    async def next_batch(self, timeout: float) -> Batch | None:
        """Queued messages and the revision they bring the reader to; ([], revision) after
        `timeout` with nothing queued (time for a heartbeat); None once closed and drained."""
        if not self._pending and not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()
        if self._pending:
            batch, self._pending = self._pending, []
            return batch, self.revision
        return None if self.closed else ([], self.revision)


class Hub:
    """Applies every store event, in order, to the World and to each watcher's fan-out."""

    def __init__(self, db: AsyncStore, stats: Stats, max_pending: int = MAX_PENDING) -> None:
        self.db = db
        self.stats = stats
        self.max_pending = max_pending
        self.world = World()
        self.watchers: set[Watcher] = set()
        self.closed = False
        self._poke = asyncio.Event()
        self._advanced = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    @property
    def revision(self) -> int:
        return self.world.revision

    async def start(self) -> None:
        self.world = World.from_snapshot(await self.db.run(self.db.store.snapshot))
        self._task = asyncio.create_task(self._follow(), name="flowkeeper-hub")

    async def close(self) -> None:
        self.closed = True
        for watcher in list(self.watchers):
            watcher.close("server shutting down")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._advanced:
            self._advanced.notify_all()

    def poke(self) -> None:
        """Something was written: read the new events now."""
        self._poke.set()

    async def sync(self, timeout: float = 10.0) -> int:
        """Wait until every event the store has now is fanned out; returns that revision."""
        target = await self.db.run(self.db.store.revision)
        self.poke()
        async with self._advanced:
            await asyncio.wait_for(
                self._advanced.wait_for(lambda: self.revision >= target or self.closed), timeout
            )
        return self.revision

    async def view(self, host: str, standby_for: str = "") -> View:
        await self.sync()
        return build_view(self.world, host, self.revision, standby_for)

    async def subscribe(self, host: str, from_revision: int, standby_for: str = "") -> Watcher:
        """A watcher that first gets the messages for every event after `from_revision`."""
        if self.closed:
            raise StoreError("the server is shutting down")
        await self.sync()
        if from_revision > self.revision:
            raise Compacted(
                f"revision {from_revision} is ahead of the server's revision {self.revision} "
                "(was the store replaced?); list the view again"
            )
        events = await self._events_after(from_revision)
        # From here on no await: the World stays at self.revision while we rewind it.
        rewound = Rewound(self.world, events)
        state = HostState.from_world(host, rewound, standby_for)
        watcher = Watcher(host, state, from_revision, self.max_pending)
        for event in events:
            rewound.apply(event)
            watcher.push(fan_out(state, event, rewound))
        watcher.revision = self.revision
        self.watchers.add(watcher)
        self.stats.watch_connections += 1
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    async def _events_after(self, revision: int) -> list[Event]:
        events: list[Event] = []
        last = revision
        while last < self.revision:
            batch = await self.db.run(self.db.store.events_since, last, BATCH)
            if not batch:
                break
            events += batch
            last = batch[-1].revision
        return [e for e in events if e.revision <= self.revision]

    async def _follow(self) -> None:
        while not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), IDLE_POLL_S)
            self._poke.clear()
            try:
                await self._catch_up()
            except Compacted:
                await self._reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("reading the event log failed: %s; retrying", exc)
                await asyncio.sleep(0.2)

    async def _catch_up(self) -> None:
        while True:
            events = await self.db.run(self.db.store.events_since, self.revision, BATCH)
            for event in events:
                self._dispatch(event)
            async with self._advanced:
                self._advanced.notify_all()
            if len(events) < BATCH:
                return

    async def _reload(self) -> None:
        """We fell behind compaction (another writer?): start over from a snapshot."""
        log.warning("event log compacted past revision %d: reloading the store", self.revision)
        self.world = World.from_snapshot(await self.db.run(self.db.store.snapshot))
        for watcher in list(self.watchers):
            watcher.close("server reloaded its state; watch again")
        self.watchers.clear()

    def _dispatch(self, event: Event) -> None:
        if event.revision <= self.world.revision:
            return
        self.world.apply(event)
        self.stats.event(event.kind)
        delivered: set[str] = set()
        for watcher in list(self.watchers):
            if watcher.closed:
                self.watchers.discard(watcher)
                continue
            messages = fan_out(watcher.state, event, self.world)
            if messages:
                watcher.push(messages)
                delivered.add(watcher.host)
            watcher.revision = event.revision
        port = event.object
        if isinstance(port, Port):
            interested = self.world.hosts_on(port.network_id) | {port.host}
            self.stats.port_fanout(
                event.revision,
                port.network_id,
                len(delivered),
                len(interested),
                self.world.host_count(),
            )
