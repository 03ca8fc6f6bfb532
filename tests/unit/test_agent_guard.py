"""The agent's guard over OVS, on a fake switch: restarts noticed, flows put back from
memory, a snapshot-taken installed set checked against a dump."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest

from flowkeeper.agent import follow, guard
from flowkeeper.agent.ovsside import HostOvs
from flowkeeper.agent.watchdog import OvsWatch
from flowkeeper.failover import Backoff
from flowkeeper.naming import BR_INT, BR_TUN
from tests.unit.agentkit import Running, make_agent, same_flows, until, world
from tests.unit.fakeovs import FakeSwitch
from tests.unit.fakeserver import FakeServer


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow, "BACKOFF", Backoff(0.001, 0.001))
    monkeypatch.setattr(guard, "VERIFY_AFTER_S", 0.0)


async def in_sync(tmp_path: Path, switch: FakeSwitch) -> Running:
    server = FakeServer()
    world(server, switch)
    run = Running(make_agent(tmp_path, switch, server), switch)
    await run.start()
    await until(lambda: run.agent.in_sync, "the list")
    await run.reconcile()
    return run


def test_a_restarted_switch_gets_the_installed_flows_back_in_one_go(tmp_path: Path) -> None:
    async def go() -> None:
        switch = FakeSwitch()
        run = await in_sync(tmp_path, switch)
        before = switch.table()
        watch = OvsWatch(cast(HostOvs, switch))
        switch.restart()  # empty tables; the watch notices each bridge's reconnect
        assert len(switch.table()) == 0
        found = watch.check()
        assert found == {BR_INT, BR_TUN}
        switch.calls.clear()
        async with run.agent.ovs_lock:
            await run.agent._restore_from_memory(cast(HostOvs, switch), found)
        assert switch.table() == before
        assert run.agent.installed == before
        assert [c for c in switch.calls if c.startswith("add_lines")] == [
            f"add_lines {BR_INT} {len(before.for_bridge(BR_INT))}",
            f"add_lines {BR_TUN} {len(before.for_bridge(BR_TUN))}",
        ]
        await run.stop()

    asyncio.run(go())


def test_flow_restore_wait_is_cleared_after_a_restore_only_with_no_other_bridge(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        switch = FakeSwitch(other_bridges={"br-ex"})
        run = await in_sync(tmp_path, switch)
        for others, left in (({"br-ex"}, {"flow-restore-wait": "true"}), (set(), {})):
            switch.other_bridges = others
            switch.other_config["flow-restore-wait"] = "true"
            switch.restart()
            async with run.agent.ovs_lock:
                await run.agent._restore_from_memory(cast(HostOvs, switch), {BR_INT, BR_TUN})
            assert switch.other_config == left
        await run.stop()

    asyncio.run(go())


def test_the_watch_waits_while_the_switch_is_down_then_checks_every_bridge(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        switch = FakeSwitch()
        run = await in_sync(tmp_path, switch)
        watch = OvsWatch(cast(HostOvs, switch))
        assert watch.check() == set()  # all well: no reconnect, flows present
        switch.down = True
        assert watch.check() == set()  # down: nothing to restore into yet
        switch.down = False
        switch.bridges[BR_TUN].flows.clear()  # came back with br-tun empty, same connection
        assert watch.check() == {BR_TUN}
        await run.stop()

    asyncio.run(go())


def test_a_snapshot_taken_installed_set_that_differs_from_ovs_is_replaced_by_a_dump(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        switch = FakeSwitch()
        run = await in_sync(tmp_path, switch)
        agent = run.agent
        victim = next(iter(switch.bridges[BR_INT].flows))
        del switch.bridges[BR_INT].flows[victim]  # someone deleted a flow behind our back
        agent.verify_installed = True
        agent.wake.clear()
        await agent._verify_installed(cast(HostOvs, switch))
        assert agent.wake.is_set()
        assert agent.installed == switch.table()
        await run.reconcile()  # the diff against the real table puts the flow back
        assert victim in switch.bridges[BR_INT].flows
        assert same_flows(switch.table(), agent.pipeline.desired)
        await run.stop()

    asyncio.run(go())


def test_a_matching_installed_set_is_kept(tmp_path: Path) -> None:
    async def go() -> None:
        switch = FakeSwitch()
        run = await in_sync(tmp_path, switch)
        agent = run.agent
        kept = agent.installed
        agent.verify_installed = True
        agent.wake.clear()
        await agent._verify_installed(cast(HostOvs, switch))
        assert agent.installed is kept and not agent.wake.is_set()
        await run.stop()

    asyncio.run(go())
