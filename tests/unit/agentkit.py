"""An Agent wired to a FakeSwitch and a FakeServer, and steps to drive it deterministically."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import cast

from flowkeeper.agent.daemon import Agent, AgentConfig
from flowkeeper.agent.ovsside import HostOvs
from flowkeeper.client import AsyncClient
from flowkeeper.flows.flowset import FlowSet, diff
from flowkeeper.model import Network, Port, PortStatus
from tests.unit.fakeovs import FakeSwitch
from tests.unit.fakeserver import FakeServer

HOST, TUNNEL_IP, PEER_IP = "h1", "198.18.0.1", "198.18.0.2"
NET = Network("n1", "net1", "vxlan", 1001)


def port(i: int, host: str = HOST) -> Port:
    """A port of NET; a remote one is ACTIVE (l2pop sends flows only for those)."""
    here = host == HOST
    tip = TUNNEL_IP if here else PEER_IP
    status: PortStatus = "DOWN" if here else "ACTIVE"
    return Port(f"p{i}", NET.id, host, f"fa:16:3e:00:00:{i:02x}", (), status, tunnel_ip=tip)


def world(server: FakeServer, switch: FakeSwitch) -> None:
    """One network; p1 is a VM here (plugged as tap1), p2 a VM on the peer host."""
    server.put_network(NET)
    server.put_port(port(1))
    server.put_port(port(2, host="h2"))
    switch.plug("tap1", "p1", port(1).mac)


def make_agent(state_dir: Path, switch: FakeSwitch, server: FakeServer) -> Agent:
    cfg = AgentConfig(
        host=HOST,
        tunnel_ip=TUNNEL_IP,
        server="http://127.0.0.1:9",
        ovsdb="unix:/nonexistent/db.sock",
        rundir=state_dir,
        state_dir=state_dir,
    )
    agent = Agent(cfg)
    agent.ovs = cast(HostOvs, switch)
    agent.client = cast(AsyncClient, server)
    return agent


async def until(check: Callable[[], bool], what: str, turns: int = 500) -> None:
    """Let other tasks run until `check` holds (bounded: a fake never needs many turns)."""
    for turn in range(turns):
        if check():
            return
        await asyncio.sleep(0.001 if turn % 10 == 9 else 0)  # now and then: worker threads
    raise AssertionError(f"never happened: {what}")


class Running:
    """An agent booted on the fake switch, its control plane running as a task; the test
    calls reconcile() itself, so every step is explicit."""

    def __init__(self, agent: Agent, switch: FakeSwitch) -> None:
        self.agent = agent
        self.switch = switch
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> bool:
        report = await asyncio.to_thread(self.agent.persist.load)
        need_list = await self.agent._boot(cast(HostOvs, self.switch), report)
        self.task = asyncio.create_task(self.agent._control_plane(need_list))
        return need_list

    async def reconcile(self) -> None:
        self.agent.wake.clear()
        async with self.agent.ovs_lock:
            await self.agent._reconcile()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def first_life(state_dir: Path, switch: FakeSwitch, server: FakeServer) -> None:
    """A cold start to in sync, then the agent stops (its flows stay)."""
    run = Running(make_agent(state_dir, switch, server), switch)
    assert await run.start()  # no snapshot: list
    await until(lambda: run.agent.in_sync, "the list")
    await run.reconcile()
    await run.stop()


def same_flows(a: FlowSet, b: FlowSet) -> bool:
    return not diff(a, b, ignore_cookie=True)
