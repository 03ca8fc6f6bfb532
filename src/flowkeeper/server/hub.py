"""The watch hub: follows the store's event log, keeps the World, fans events out to watchers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from flowkeeper.cperrors import Compacted, NotFound, StoreError
from flowkeeper.errors import FlowkeeperError
from flowkeeper.model import Host, Port, View, WatchEvent
from flowkeeper.server.asyncstore import AsyncStore
from flowkeeper.server.fanout import HostState, concerned, concerned_before, fan_out
from flowkeeper.server.stats import Stats
from flowkeeper.server.world import Rewound, World, build_view
from flowkeeper.store.base import Event, StoreObject

log = logging.getLogger("flowkeeper.server")

BATCH = 5000
PAGE = 1000  # events per store read during a watcher's catch-up
MAX_PENDING = 1_000_000
MAX_WATCHERS_PER_HOST = 8  # an agent needs 1
IDLE_POLL_S = 1.0  # safety net for writers that bypass this server; local writes poke at once

Batch = tuple[list[WatchEvent], int]
Write = Callable[[list[WatchEvent]], Awaitable[None]]


class TooManyWatchers(FlowkeeperError):
    """The host already has the most watch streams the server allows."""

    status = 429


class _Rewinding:
    """While a catch-up scans the log: the first value the live World had for each object it
    changed since the catch-up began (the scan's own first values win over these)."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], StoreObject | None] = {}


class Watcher:
    """One watch stream: the host's fan-out state and the messages not yet written."""

    def __init__(self, hub: Hub, host: str, from_revision: int, target: int) -> None:
        self.hub = hub
        self.host = host
        self.state = HostState(host)
        self.revision = from_revision  # every event up to here was fanned out to this watcher
        self.target = target  # the live revision when it subscribed
        self.max_pending = hub.max_pending
        # Until the catch-up is done the hub does not fan out to this watcher: it only
        # records, before each event, what the World held (see world.Rewound).
        self.rewinding: _Rewinding | None = _Rewinding()
        self.rewound: Rewound | None = None
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

    @property
    def live(self) -> bool:
        return self.rewinding is None and self.rewound is None

    def before_live(self, event: Event) -> None:
        """The hub is about to apply `event` to the World (only while catching up)."""
        if self.rewound is not None:
            self.rewound.record(event)
        elif self.rewinding is not None:
            key = (event.kind, _key(event))
            if key not in self.rewinding.first:
                self.rewinding.first[key] = event.prev

    async def catch_up(self, write: Write) -> None:
        """Send the messages for every event after the subscribed revision, reading the log
        in pages of PAGE events; then the hub fans out to this watcher live."""
        if self.live:  # subscribed at the World's revision: nothing to catch up
            return
        hub, store = self.hub, self.hub.db.store
        first: dict[tuple[str, str], StoreObject | None] = {}
        last = self.revision
        while last < self.target and not self.closed:  # pass 1: the world as of `from`
            page = await hub.db.run(store.events_since, last, PAGE)
            if not page:
                break
            for event in page:
                if event.revision <= self.target:
                    first.setdefault((event.kind, _key(event)), event.prev)
            last = page[-1].revision
        assert self.rewinding is not None
        for key, value in self.rewinding.first.items():
            first.setdefault(key, value)
        rewound = self.rewound = Rewound.from_values(hub.world, first)
        self.rewinding = None
        del first
        self.state = HostState.from_world(self.host, rewound)
        while not self.closed:  # pass 2: walk forward, page by page, writing as we go
            if self.revision >= hub.revision:
                self.revision = hub.revision
                self.rewound = None  # no await since the check: from here the hub fans out
                return
            page = await hub.db.run(store.events_since, self.revision, PAGE)
            if not page:  # the World has events the store does not: it was replaced
                self.close("the store has no events the server applied; watch again")
                return
            messages: list[WatchEvent] = []
            for event in page:
                if event.revision > hub.revision:
                    break  # the World has not applied it yet; the hub will, then fan out
                rewound.apply(event)
                messages += fan_out(self.state, event, rewound)
                self.revision = event.revision
            await write(messages)

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

    def __init__(
        self,
        db: AsyncStore,
        stats: Stats,
        max_pending: int = MAX_PENDING,
        max_watchers_per_host: int = MAX_WATCHERS_PER_HOST,
    ) -> None:
        self.db = db
        self.stats = stats
        self.max_pending = max_pending
        self.max_watchers_per_host = max_watchers_per_host
        self.world = World()
        self.watchers: set[Watcher] = set()
        # Live fan-out of a port event only visits the watchers of the hosts it concerns
        # (see _targets); watchers still catching up are the only ones before_live needs.
        self._by_host: dict[str, set[Watcher]] = {}
        self._catching_up: set[Watcher] = set()
        self.closed = False
        self._poke = asyncio.Event()
        self._advanced = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    @property
    def revision(self) -> int:
        return self.world.revision

    async def start(self) -> None:
        self.world = World.from_snapshot(await self.db.run(self.db.store.snapshot))
        loop = asyncio.get_running_loop()

        def changed() -> None:  # from the store's thread: another server may have written
            if not loop.is_closed():
                loop.call_soon_threadsafe(self.poke)

        self.db.store.on_change(changed)
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

    async def sync(self, timeout: float = 10.0, target: int | None = None) -> int:
        """Wait until every event the store has now is fanned out; returns that revision.

        A write knows its own revision: `target` waits for that one and saves asking the
        store (on etcd a round trip to the leader) what its last revision is."""
        if target is None:
            target = await self.db.run(self.db.store.revision)
        if self.revision >= target:
            return self.revision
        self.poke()
        async with self._advanced:
            await asyncio.wait_for(
                self._advanced.wait_for(lambda: self.revision >= target or self.closed), timeout
            )
        return self.revision

    async def settle(self, target: int, timeout: float = 10.0) -> None:
        """After a write committed at revision `target`: wait (bounded) until it is fanned
        out, so that a view or watch asked of this server next includes it. The write is
        durable either way: a timeout here (the store's events lag, e.g. it lost its
        quorum just after the commit) is logged, not answered as a failure; a 503 would
        tell the client the write was not applied, and it would send it again."""
        try:
            await self.sync(timeout, target)
        except (TimeoutError, StoreError) as exc:
            log.warning(
                "the write at revision %d is committed; its events are not fanned out "
                "yet (%s): watchers get it when the store's events resume",
                target,
                exc or "timed out",
            )

    async def settle_delete(self, timeout: float = 10.0) -> int:
        """After a delete (the store does not return its revision): the store's revision
        now, at or after the delete, settled as `settle` does. If the store cannot say (it
        lost its quorum just after the commit), the last revision this server has seen,
        logged: the delete is committed all the same, and a watch from that revision
        still gets its event."""
        try:
            target = await self.db.run(self.db.store.revision)
        except StoreError as exc:
            log.warning("a delete is committed; the store's revision after it is unknown (%s)", exc)
            return self.revision
        await self.settle(target, timeout)
        return target

    async def view(self, host: str) -> View:
        await self.sync()
        self._known(host)
        return build_view(self.world, host, self.revision)

    def _known(self, host: str) -> None:
        """A view or watch is of a host the store knows: registered, or with ports bound
        to it (a port may be bound before the host's agent registers). A name that is
        neither, e.g. a deleted host (a delete is refused while ports are bound), is 404."""
        if host not in self.world.hosts and not self.world.ports_of(host):
            raise NotFound(f"host {host!r} is not registered and has no ports bound to it")

    async def subscribe(self, host: str, from_revision: int) -> Watcher:
        """A watcher whose `catch_up` first sends the messages for every event after
        `from_revision`; Compacted (410) if those are gone, TooManyWatchers (429)."""
        if self.closed:
            raise StoreError("the server is shutting down")
        streams = sum(1 for w in self.watchers if w.host == host and not w.closed)
        if streams >= self.max_watchers_per_host:
            raise TooManyWatchers(
                f"host {host!r} already has {streams} watch streams "
                f"(the most this server allows per host)"
            )
        await self.sync()
        self._known(host)
        if from_revision > self.revision:
            raise Compacted(
                f"revision {from_revision} is ahead of the server's revision {self.revision} "
                "(was the store replaced?); list the view again"
            )
        compacted = await self.db.run(self.db.store.compact_revision)
        if from_revision < compacted:
            raise Compacted(
                f"revision {from_revision} was compacted away (events up to {compacted} are "
                "gone); list the view again"
            )
        # No await from here to add(): the watcher records every change the World makes.
        watcher = Watcher(self, host, from_revision, self.revision)
        if from_revision == self.revision:  # nothing to catch up: live at once
            watcher.state = HostState.from_world(host, self.world)
            watcher.rewinding = None
        self.watchers.add(watcher)
        self._by_host.setdefault(host, set()).add(watcher)
        if not watcher.live:
            self._catching_up.add(watcher)
        self.stats.watch_connections += 1
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)
        self._catching_up.discard(watcher)
        group = self._by_host.get(watcher.host)
        if group is not None:
            group.discard(watcher)
            if not group:
                del self._by_host[watcher.host]

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
            start = self.revision
            events = await self.db.run(self.db.store.events_since, start, BATCH)
            for event in events:
                if event.revision > start:  # every event of a revision, even several
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
        self._by_host.clear()
        self._catching_up.clear()
        async with self._advanced:  # requests waiting in sync() see the new revision now
            self._advanced.notify_all()

    def _dispatch(self, event: Event) -> None:
        if event.revision < self.world.revision:
            return
        for watcher in list(self._catching_up):
            if watcher.live:
                self._catching_up.discard(watcher)
            else:
                watcher.before_live(event)
        before = concerned_before(event, self.world)  # members that may leave
        self.world.apply(event)
        self.stats.event(event.kind)
        hosts = concerned(event, self.world, before)
        targets: Iterable[Watcher]
        if hosts is None:
            targets = list(self.watchers)  # network and host events
        else:
            targets = {w for h in hosts for w in self._by_host.get(h, ())}
        delivered: set[str] = set()
        for watcher in targets:
            if watcher.closed:
                self.unsubscribe(watcher)
                continue
            if not watcher.live:
                continue
            messages = fan_out(watcher.state, event, self.world)
            if messages:
                watcher.push(messages)
                delivered.add(watcher.host)
        for watcher in self.watchers:  # every live watcher is now at this revision
            if watcher.live:
                watcher.revision = event.revision
        port = event.object
        if isinstance(port, Port):
            self.stats.port_fanout(
                event.revision,
                port.network_id,
                len(delivered),
                len(self.world.hosts_on(port.network_id) | {port.host}),
                self.world.host_count(),
            )


def _key(event: Event) -> str:
    obj = event.object
    return obj.name if isinstance(obj, Host) else obj.id
