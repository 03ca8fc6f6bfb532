"""The agent's boot on a fake switch: the quick restore, the snapshot put back before any
server, deferred flows of VIFs not back yet, and the journal carrying watch events over."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import cast

import pytest

from flowkeeper.agent import fastboot, follow
from flowkeeper.agent.ovsside import HostOvs
from flowkeeper.failover import Backoff
from flowkeeper.flows.flowset import FlowSet
from flowkeeper.naming import BR_INT, BR_TUN
from flowkeeper.ovs.errors import OpenFlowError
from flowkeeper.snapshot.store import SnapshotStore
from tests.unit.agentkit import (
    TUNNEL_IP,
    Running,
    first_life,
    make_agent,
    port,
    same_flows,
    until,
    world,
)
from tests.unit.fakeovs import FakeSwitch
from tests.unit.fakeserver import FakeServer


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow, "BACKOFF", Backoff(0.001, 0.001))


def test_after_a_reboot_the_snapshot_goes_back_before_the_server_answers(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        switch, server = FakeSwitch(), FakeServer()
        world(server, switch)
        await first_life(tmp_path, switch, server)
        before = switch.table()
        switch.restart()  # the host lost power: OVS comes back with empty tables
        server.up = False
        run = Running(make_agent(tmp_path, switch, server), switch)
        assert not await run.start()  # the snapshot is usable: no list
        assert same_flows(switch.table(), before)
        assert run.agent.installed == switch.table()
        await run.reconcile()  # server still away: nothing changes, nothing is deleted
        assert same_flows(switch.table(), before)
        server.up = True
        await until(lambda: run.agent.in_sync, "the catch-up", turns=5000)
        await run.reconcile()
        assert same_flows(switch.table(), run.agent.pipeline.desired)
        assert server.views == 1  # caught up by watching, from the snapshot's revision
        await run.stop()

    asyncio.run(go())


def test_flows_of_a_vif_not_back_yet_wait_and_go_in_when_it_is_plugged(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        switch, server = FakeSwitch(), FakeServer()
        world(server, switch)
        await first_life(tmp_path, switch, server)
        before = switch.table()
        switch.restart()
        switch.unplug("tap1")  # Nova has not re-plugged the VM yet
        run = Running(make_agent(tmp_path, switch, server), switch)
        await run.start()
        tap_flows = {f for f in before if "tap1" in f.render()}
        assert tap_flows and not any("tap1" in f.render() for f in switch.table())
        assert len(switch.table()) == len(before) - len(tap_flows)
        switch.plug("tap1", "p1", port(1).mac)  # back, with another ofport
        await until(lambda: run.agent.in_sync, "the catch-up")
        await run.reconcile()
        assert same_flows(switch.table(), before)
        await run.stop()

    asyncio.run(go())


def test_events_journalled_in_one_life_are_the_next_lifes_starting_point(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        switch, server = FakeSwitch(), FakeServer()
        world(server, switch)
        run = Running(make_agent(tmp_path, switch, server), switch)
        await run.start()
        await until(lambda: run.agent.in_sync, "the list")
        await run.reconcile()
        server.put_port(port(5, host="h2"))  # arrives by the watch, then is journalled
        await until(lambda: run.agent.mirror.revision == server.revision, "the event")
        await run.reconcile()
        await run.stop()
        data = SnapshotStore(tmp_path / "snapshot").load().data
        assert data is not None and data.revision == server.revision and "p5" in data.ports
        again = Running(make_agent(tmp_path, switch, server), switch)
        await again.start()
        await until(lambda: again.agent.in_sync, "the catch-up")
        assert server.watched_from[-1] == server.revision  # nothing to replay
        await again.stop()

    asyncio.run(go())


async def switch_after_a_life(state_dir: Path) -> FakeSwitch:
    """The switch as a first life left it: in sync, its snapshot in `state_dir`."""
    switch, server = FakeSwitch(), FakeServer()
    world(server, switch)
    await first_life(state_dir, switch, server)
    return switch


def test_the_quick_boot_restores_only_the_bridges_that_lost_their_flows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch = asyncio.run(switch_after_a_life(tmp_path))
    before = switch.table()
    switch.bridges[BR_INT].flows.clear()  # br-int lost its flows, br-tun kept them
    switch.calls.clear()
    monkeypatch.setattr(fastboot, "CliTarget", lambda _ovsdb, _rundir: switch)
    report, quick = fastboot.restore_if_lost(tmp_path, "unix:/nonexistent", tmp_path, TUNNEL_IP)
    assert report.data is not None and quick is not None
    assert set(quick.lines) == {BR_INT}
    assert [c for c in switch.calls if c.startswith("add_lines")] == [
        f"add_lines {BR_INT} {len(before.for_bridge(BR_INT))}"
    ]
    assert same_flows(switch.table(), before)

    async def boot() -> None:
        server = FakeServer()
        agent = make_agent(tmp_path, switch, server)
        agent.early = (report, quick)
        need_list = await agent._boot(cast(HostOvs, switch), report)
        assert not need_list
        # OVS holds exactly the restored lines and br-tun's own: no second restore.
        assert agent.installed == switch.table()
        assert [c for c in switch.calls if c.startswith("add_lines")] == [
            f"add_lines {BR_INT} {len(before.for_bridge(BR_INT))}"
        ]
        assert BR_TUN not in quick.lines

    asyncio.run(boot())


def test_the_quick_boot_does_nothing_when_ovs_kept_its_flows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch = asyncio.run(switch_after_a_life(tmp_path))
    switch.calls.clear()
    monkeypatch.setattr(fastboot, "CliTarget", lambda _ovsdb, _rundir: switch)
    report, quick = fastboot.restore_if_lost(tmp_path, "unix:/nonexistent", tmp_path, TUNNEL_IP)
    assert report.data is not None and quick is None
    assert switch.calls == []


def test_an_unreadable_switch_at_boot_means_a_cold_sync_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> None:
        switch, server = FakeSwitch(), FakeServer()
        world(server, switch)
        await first_life(tmp_path, switch, server)
        switch.restart()  # a reboot: empty tables ...
        switch.ofctl_down = "br-int: ovs-ofctl dump-flows timed out"  # ... and ovs-ofctl hangs
        caplog.clear()
        run = Running(make_agent(tmp_path, switch, server), switch)
        assert await run.start()  # no crash: a cold sync, the view listed from the server
        assert run.agent.installed == FlowSet() and run.agent.verify_installed
        boot_lines = [r.getMessage() for r in caplog.records if "cold sync" in r.getMessage()]
        assert len(boot_lines) == 1 and "timed out" in boot_lines[0]
        await until(lambda: run.agent.in_sync, "the list")
        with pytest.raises(OpenFlowError):  # the reconciler's loop retries this later
            await run.reconcile()
        assert switch.table() == FlowSet()
        switch.ofctl_down = ""  # ovs-ofctl answers again
        await run.reconcile()
        assert same_flows(switch.table(), run.agent.pipeline.desired)
        assert port(2).mac in " ".join(f.render() for f in switch.table())
        await run.stop()

    with caplog.at_level(logging.INFO, logger="flowkeeper.agent"):
        asyncio.run(go())
