"""The server's watch hub on a fake store: catch-up, live fan-out, slow readers, closing,
and falling behind compaction."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import cast

import pytest

from flowkeeper.cperrors import Compacted, StoreError
from flowkeeper.model import Host, Network, Port, SecurityGroup, SecurityGroupRule, WatchEvent
from flowkeeper.server import hub as hub_module
from flowkeeper.server.asyncstore import AsyncStore
from flowkeeper.server.hub import Hub, Watcher
from flowkeeper.server.stats import Stats
from flowkeeper.store.base import Event, Snapshot, Store
from tests.unit.cpfake import FakeLog, Replay, normal


class FakeStore:
    """The three reads the hub makes, over a FakeLog; `compacted`: events up to it gone."""

    concurrency = 1

    def __init__(self) -> None:
        self.log = FakeLog()
        self.compacted = 0
        self.callbacks: list[Callable[[], None]] = []

    def on_change(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)

    def snapshot(self) -> Snapshot:
        objs = self.log.objects.values()
        return Snapshot(
            self.log.revision,
            self.log.networks(),
            self.log.ports(),
            [o for o in objs if isinstance(o, Host)],
            sorted(self.log.groups(), key=lambda g: g.id),
        )

    def revision(self) -> int:
        return self.log.revision

    def events_since(self, revision: int, limit: int | None = None) -> list[Event]:
        if revision < self.compacted:
            raise Compacted(f"revision {revision} compacted")
        out = [e for e in self.log.events if e.revision > revision]
        if limit is None or len(out) <= limit:
            return out
        last = out[limit - 1].revision  # a page never splits a revision
        return [e for e in out if e.revision <= last]

    def compact_revision(self) -> int:
        return self.compacted

    def close(self) -> None:
        pass


NET = Network("n1", "net1", "vxlan", 1001)


def port(i: int, host: str) -> Port:
    return Port(f"p{i}", "n1", host, f"fa:16:3e:00:00:{i:02x}", (), "ACTIVE")


def seed(store: FakeStore) -> None:
    store.log.put_host(Host("h1", "198.18.0.1"))
    store.log.put_host(Host("h2", "198.18.0.2"))
    store.log.put_network(NET)
    store.log.put_port(port(1, "h1"))
    store.log.put_port(port(2, "h2"))


async def started(store: FakeStore, max_pending: int = 1000) -> Hub:
    hub = Hub(AsyncStore(cast(Store, store)), Stats(), max_pending=max_pending)
    await hub.start()
    return hub


async def drain(watcher: Watcher) -> list[WatchEvent]:
    """The catch-up (read from the store page by page, if not done yet), then what is queued."""
    got: list[WatchEvent] = []

    async def collect(messages: list[WatchEvent]) -> None:
        got.extend(messages)

    if not watcher.live:
        await watcher.catch_up(collect)
    batch = await watcher.next_batch(0.01)
    return got + ([] if batch is None else batch[0])


def test_a_watch_from_zero_replays_to_the_hosts_view() -> None:
    async def go() -> None:
        store = FakeStore()
        seed(store)
        hub = await started(store)
        watcher = await hub.subscribe("h1", 0)
        replay = Replay()
        replay.apply(await drain(watcher))
        assert watcher.live and watcher.revision == hub.revision == store.log.revision
        assert normal(replay.as_view(hub.revision)) == normal(await hub.view("h1"))
        await hub.close()

    asyncio.run(go())


def test_a_watch_from_ahead_of_the_server_is_refused() -> None:
    async def go() -> None:
        store = FakeStore()
        seed(store)
        hub = await started(store)
        with pytest.raises(Compacted, match="ahead"):
            await hub.subscribe("h1", store.log.revision + 1)
        await hub.close()

    asyncio.run(go())


def test_live_writes_reach_only_the_hosts_they_concern() -> None:
    async def go() -> None:
        store = FakeStore()
        seed(store)
        store.log.put_host(Host("h3", "198.18.0.3"))
        hub = await started(store)
        w1, w3 = await hub.subscribe("h1", hub.revision), await hub.subscribe("h3", hub.revision)
        store.log.put_port(port(5, "h2"))
        await hub.sync()
        got = await drain(w1)
        assert [(m.kind, m.op, getattr(m.object, "id", "")) for m in got] == [("port", "put", "p5")]
        assert await drain(w3) == []  # h3 has no port on n1
        assert w3.revision == hub.revision  # but it has seen the revision go by
        assert hub.stats.port_events == 1 and hub.stats.port_deliveries == 1
        await hub.close()

    asyncio.run(go())


def test_group_and_member_changes_reach_only_the_hosts_using_or_referencing_them() -> None:
    web = SecurityGroup(
        "web", "web", rules=(SecurityGroupRule("r1", "ingress", remote_group_id="db"),)
    )
    db = SecurityGroup("db", "db")
    net2 = Network("n2", "net2", "vxlan", 1002)

    def secured(i: int, host: str, network: str, group: str, ip: str) -> Port:
        mac = f"fa:16:3e:00:00:{i:02x}"
        return Port(
            f"p{i}", network, host, mac, (ip,), security_groups=(group,), port_security_enabled=True
        )

    async def go() -> None:
        store = FakeStore()
        seed(store)  # p1 on h1 and p2 on h2, both on n1, no groups
        log = store.log
        log.put_host(Host("h3", "198.18.0.3"))
        log.put_group(web)
        log.put_group(db)
        log.put_network(net2)
        log.put_port(secured(1, "h1", "n1", "web", "10.0.0.1"))
        log.put_port(secured(3, "h3", "n2", "db", "10.0.2.3"))
        hub = await started(store)
        view = await hub.view("h1")
        assert [g.id for g in view.security_groups] == ["web"]
        assert [(m.group_id, m.port_id, m.ips) for m in view.members] == [
            ("db", "p3", ("10.0.2.3",))
        ]
        assert (await hub.view("h2")).security_groups == [] and (await hub.view("h2")).members == []
        w1, w2, w3 = [await hub.subscribe(h, hub.revision) for h in ("h1", "h2", "h3")]
        log.put_port(secured(3, "h3", "n2", "db", "10.0.2.33"))  # a member of db moves IP
        await hub.sync()
        got = await drain(w1)
        assert [(m.kind, m.op) for m in got] == [("member", "put")]
        assert got[0].object.ips == ("10.0.2.33",)  # type: ignore[union-attr]
        assert await drain(w2) == []  # h2 neither uses nor references db
        assert [m.kind for m in await drain(w3)] == ["port"]  # its own port; db names no remote
        log.put_group(SecurityGroup("db", "db", rules=(SecurityGroupRule("r2", "egress"),)))
        await hub.sync()
        assert await drain(w1) == [] and await drain(w2) == []
        assert [(m.kind, m.op) for m in await drain(w3)] == [("security_group", "put")]
        replay = Replay()
        replay.apply(await drain(await hub.subscribe("h1", 0)))
        assert normal(replay.as_view(hub.revision)) == normal(await hub.view("h1"))
        await hub.close()

    asyncio.run(go())


def test_nothing_to_send_means_a_heartbeat_at_the_current_revision() -> None:
    async def go() -> None:
        store = FakeStore()
        seed(store)
        hub = await started(store)
        watcher = await hub.subscribe("h1", hub.revision)
        assert await watcher.next_batch(0.01) == ([], hub.revision)
        await hub.close()

    asyncio.run(go())


def test_a_reader_too_slow_is_cut_off_and_its_queue_dropped() -> None:
    async def go() -> None:
        store = FakeStore()
        seed(store)
        hub = await started(store, max_pending=3)
        watcher = await hub.subscribe("h1", hub.revision)
        for i in range(10, 15):
            store.log.put_port(port(i, "h2"))
        await hub.sync()
        assert watcher.closed and "too slow" in watcher.reason
        assert await watcher.next_batch(0.01) is None
        await hub.close()

    asyncio.run(go())


def test_closing_ends_every_stream_and_refuses_new_ones() -> None:
    async def go() -> None:
        store = FakeStore()
        seed(store)
        hub = await started(store)
        watcher = await hub.subscribe("h1", 0)
        await hub.close()
        assert watcher.closed and watcher.reason == "server shutting down"
        assert await drain(watcher) == []  # a closed stream sends no catch-up
        assert (await watcher.next_batch(0.01)) is None
        with pytest.raises(StoreError):
            await hub.subscribe("h1", 0)

    asyncio.run(go())


def test_falling_behind_compaction_reloads_the_world_and_ends_the_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The hub's safety-net poll never comes: sync() must be woken by the reload itself.
    monkeypatch.setattr(hub_module, "IDLE_POLL_S", 3600.0)

    async def go() -> None:
        store = FakeStore()
        seed(store)
        hub = await started(store)
        watcher = await hub.subscribe("h1", hub.revision)
        # Another writer wrote and compacted past the hub's revision.
        store.log.put_port(port(7, "h2"))
        store.log.put_port(port(8, "h2"))
        store.compacted = store.log.revision
        await hub.sync()
        assert hub.revision == store.log.revision
        assert "p8" in hub.world.ports
        assert watcher.closed and "watch again" in watcher.reason
        assert hub.watchers == set()
        await hub.close()

    asyncio.run(go())


def test_every_event_of_a_revision_reaches_live_and_catching_up_watchers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "PAGE", 1)  # catch-up pages of one event: still whole

    async def go() -> None:
        store = FakeStore()
        seed(store)
        hub = await started(store)
        before = hub.revision
        live = await hub.subscribe("h1", before)
        store.log.begin()  # one transaction, two objects
        store.log.put_port(port(5, "h2"))
        store.log.put_port(port(6, "h2"))
        store.log.one_revision = False
        await hub.sync()
        rev = store.log.revision
        assert rev == before + 1 and {"p5", "p6"} <= set(hub.world.ports)
        got = await drain(live)
        assert [(m.revision, getattr(m.object, "id", "")) for m in got] == [
            (rev, "p5"),
            (rev, "p6"),
        ]
        assert live.revision == rev
        late = await hub.subscribe("h1", before)  # catches up through the same revision
        caught = [(m.revision, getattr(m.object, "id", "")) for m in await drain(late)]
        assert caught == [(rev, "p5"), (rev, "p6")] and late.revision == rev
        await hub.close()

    asyncio.run(go())


def test_the_store_change_callback_wakes_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "IDLE_POLL_S", 3600.0)  # only the callback can wake it

    async def go() -> None:
        store = FakeStore()
        seed(store)
        hub = await started(store)
        assert len(store.callbacks) == 1
        store.log.put_port(port(9, "h2"))  # another server wrote it
        threading.Thread(target=store.callbacks[0]).start()  # from the store's thread
        for _ in range(200):  # bounded
            if hub.revision == store.log.revision:
                break
            await asyncio.sleep(0.01)
        assert hub.revision == store.log.revision and "p9" in hub.world.ports
        await hub.close()

    asyncio.run(go())
