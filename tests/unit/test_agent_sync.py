"""The agent's sync logic on a fake switch and a fake server: cold start, in-sync gating,
catching up from a snapshot, listing again (compaction, another store)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from flowkeeper.agent import follow
from flowkeeper.agent.catchup import gate_deletes, must_record
from flowkeeper.failover import Backoff
from flowkeeper.flows.flowset import FlowDelta
from flowkeeper.flows.record import Flow
from flowkeeper.naming import BR_TUN
from flowkeeper.pipeline.tables import cookie_for
from flowkeeper.snapshot.store import SnapshotStore
from tests.unit.agentkit import Running, first_life, make_agent, port, same_flows, until, world
from tests.unit.fakeovs import FakeSwitch
from tests.unit.fakeserver import FakeServer


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake server is back at once: no need to wait the real backoff."""
    monkeypatch.setattr(follow, "BACKOFF", Backoff(0.001, 0.001))


def snapshot_of(state_dir: Path) -> tuple[int, str] | None:
    data = SnapshotStore(state_dir / "snapshot").load().data
    return None if data is None else (data.revision, data.cluster_id)


def stale_flow(generation: int = 1) -> Flow:
    """A flow no view wants: unicast to a MAC that left long ago."""
    return Flow(
        BR_TUN,
        20,
        2,
        (("dl_dst", "fa:16:3e:99:99:99"), ("dl_vlan", "1")),
        "pop_vlan,output:patch-int",
        cookie_for(generation),
    )


def test_a_cold_start_lists_installs_exactly_the_desired_flows_and_records_them(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        switch, server = FakeSwitch(), FakeServer()
        world(server, switch)
        run = Running(make_agent(tmp_path, switch, server), switch)
        assert await run.start()
        await until(lambda: run.agent.in_sync, "the list")
        await run.reconcile()
        agent = run.agent
        assert server.views == 1
        assert port(2).mac in " ".join(f.render() for f in switch.table())
        assert same_flows(switch.table(), agent.pipeline.desired)
        assert switch.table() == agent.installed
        assert ("in-sync", server.revision) in server.registered
        assert server.statuses == {"p1": "ACTIVE"}
        assert snapshot_of(tmp_path) == (server.revision, "cluster-a")
        await run.stop()

    asyncio.run(go())


def test_stale_flows_stay_until_the_agent_is_in_sync_then_go(tmp_path: Path) -> None:
    async def go() -> None:
        switch, server = FakeSwitch(), FakeServer()
        world(server, switch)
        await first_life(tmp_path, switch, server)
        switch.bridges[BR_TUN].install(stale_flow())
        server.up = False  # the agent comes back while the server is away
        run = Running(make_agent(tmp_path, switch, server), switch)
        assert not await run.start()  # a snapshot: no list needed
        await run.reconcile()
        assert not run.agent.in_sync
        assert stale_flow() in switch.table()  # not in sync: nothing is deleted
        server.up = True
        await until(lambda: run.agent.in_sync, "the catch-up heartbeat", turns=5000)
        await run.reconcile()
        assert stale_flow() not in switch.table()
        assert same_flows(switch.table(), run.agent.pipeline.desired)
        assert server.views == 1  # the first life's only: caught up by watching
        await run.stop()

    asyncio.run(go())


def test_changes_made_while_the_agent_was_away_arrive_by_the_watch(tmp_path: Path) -> None:
    async def go() -> None:
        switch, server = FakeSwitch(), FakeServer()
        world(server, switch)
        await first_life(tmp_path, switch, server)
        before = server.revision
        server.delete_port("p2")  # the peer VM is gone ...
        server.put_port(port(3, host="h2"))  # ... and another came
        run = Running(make_agent(tmp_path, switch, server), switch)
        await run.start()
        await until(lambda: run.agent.in_sync, "the catch-up")
        await run.reconcile()
        assert server.watched_from[-1] == before
        assert server.views == 1
        rendered = " ".join(f.render() for f in switch.table())
        assert port(3).mac in rendered and port(2).mac not in rendered
        assert snapshot_of(tmp_path) == (server.revision, "cluster-a")
        await run.stop()

    asyncio.run(go())


def test_a_compacted_revision_makes_the_agent_list_again(tmp_path: Path) -> None:
    async def go() -> None:
        switch, server = FakeSwitch(), FakeServer()
        world(server, switch)
        await first_life(tmp_path, switch, server)
        server.put_port(port(4, host="h2"))
        server.compact_revision = server.revision  # the events since our revision are gone
        run = Running(make_agent(tmp_path, switch, server), switch)
        await run.start()
        await until(lambda: server.views == 2, "a second list")
        await until(lambda: run.agent.in_sync, "the list")
        await run.reconcile()
        assert port(4).mac in " ".join(f.render() for f in switch.table())
        await run.stop()

    asyncio.run(go())


def test_another_store_makes_the_agent_list_again_and_record_it(tmp_path: Path) -> None:
    async def go() -> None:
        switch, server = FakeSwitch(), FakeServer()
        world(server, switch)
        await first_life(tmp_path, switch, server)
        # The server's DB is replaced: another store, revision further on, without p2.
        other = FakeServer(cluster_id="cluster-b")
        other.put_network(server.networks["n1"])
        other.put_port(server.ports["p1"])
        for i in range(10):
            other.put_port(port(10 + i, host="h3"))
            other.delete_port(f"p{10 + i}")
        assert other.revision > server.revision
        run = Running(make_agent(tmp_path, switch, other), switch)
        await run.start()
        await until(lambda: other.views == 1, "a list of the other store")
        await until(lambda: run.agent.in_sync, "the list")
        await run.reconcile()
        assert port(2).mac not in " ".join(f.render() for f in switch.table())
        assert same_flows(switch.table(), run.agent.pipeline.desired)
        assert snapshot_of(tmp_path) == (other.revision, "cluster-b")
        await run.stop()

    asyncio.run(go())


def test_in_sync_gating_is_a_pure_rule() -> None:
    stale, broken = stale_flow(), stale_flow(2)
    before = gate_deletes(FlowDelta(delete=[stale]), in_sync=False, broken=[broken])
    assert before.delete == [broken]
    after = gate_deletes(FlowDelta(delete=[stale]), in_sync=True, broken=[broken])
    assert after.delete == [stale, broken]


def test_a_list_is_always_recorded_even_with_no_flow_change() -> None:
    assert not must_record(False, False, False)
    assert must_record(False, False, True)  # e.g. listed since the last compaction
    assert must_record(True, False, False)
    assert must_record(False, True, False)


def test_a_list_during_a_reconcile_is_recorded_by_the_next_one(tmp_path: Path) -> None:
    """List epochs: a reconcile that copied the mirror before a full list must not stand
    for the list in the snapshot; the next reconcile, on the listed mirror, compacts."""

    async def go() -> None:
        switch, server = FakeSwitch(), FakeServer()
        world(server, switch)
        run = Running(make_agent(tmp_path, switch, server), switch)
        await run.start()
        await until(lambda: run.agent.in_sync, "the list")
        await run.reconcile()
        listed_before = run.agent.persist.list_epoch
        switch.hold, switch.entered = threading.Event(), threading.Event()
        held = asyncio.create_task(run.reconcile())  # copies the mirror, then waits on OVS
        await until(switch.entered.is_set, "the reconcile to be held")
        server.put_port(port(6, host="h2"))
        server.compact_revision = server.revision  # our revision's events are gone ...
        server.break_streams()  # ... and the watch reconnects: 410, list again
        await until(lambda: server.views == 2, "the second list")
        assert run.agent.persist.list_epoch == listed_before + 1
        switch.hold.set()
        await held
        assert run.agent.persist.compaction_due()  # the held one did not stand for the list
        switch.hold = None
        await run.reconcile()
        assert not run.agent.persist.compaction_due()
        data = SnapshotStore(tmp_path / "snapshot").load().data
        assert data is not None and data.revision == server.revision and "p6" in data.ports
        assert data.flow_count() == len(run.agent.installed)
        await run.stop()

    asyncio.run(go())
