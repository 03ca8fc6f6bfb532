"""A property of the whole agent on the fakes: whatever the server's history, with agent
restarts, outages and a replaced server DB in between, the agent ends with the flows a
cold start computes."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from flowkeeper.agent import follow
from flowkeeper.failover import Backoff
from tests.unit.agentkit import Running, make_agent, port, same_flows, until, world
from tests.unit.fakeovs import FakeSwitch
from tests.unit.fakeserver import FakeServer

Op = tuple[str, int]
KINDS = st.sampled_from(["port", "port", "restart", "outage", "reconcile", "replace"])
OPS = st.lists(st.tuples(KINDS, st.integers(3, 9)), max_size=14)


async def until_current(run: Running, server: FakeServer) -> None:
    await until(
        lambda: run.agent.in_sync and run.agent.mirror.revision == server.revision,
        "the agent to catch up",
        turns=5000,
    )
    await run.reconcile()


async def history(state_dir: Path, ops: list[Op]) -> tuple[FakeSwitch, FakeServer]:
    switch, server = FakeSwitch(), FakeServer()
    world(server, switch)
    run = Running(make_agent(state_dir, switch, server), switch)
    await run.start()
    await until_current(run, server)
    for kind, i in ops:
        if kind == "port":  # a VM on the peer host comes or goes
            if f"p{i}" in server.ports:
                server.delete_port(f"p{i}")
            else:
                server.put_port(port(i, host="h2"))
        elif kind == "restart":  # the agent restarts from its snapshot
            await run.stop()
            run = Running(make_agent(state_dir, switch, server), switch)
            await run.start()
        elif kind == "outage":  # the server goes away for a while, and comes back
            server.end_streams()
            await run.reconcile()
            server.up = True
            server._closed = asyncio.Event()
        elif kind == "replace":  # the server's DB is replaced; one remote port is lost
            gone = next((p for p in sorted(server.ports) if p != "p1"), "")
            server.replace_store(server.serves + "+", drop=gone)
        else:
            await run.reconcile()
    await until_current(run, server)
    await run.stop()
    return switch, server


async def cold(state_dir: Path, server: FakeServer) -> FakeSwitch:
    """A new host with the same VIF, an empty switch and no snapshot."""
    switch = FakeSwitch()
    switch.plug("tap1", "p1", port(1).mac)
    run = Running(make_agent(state_dir, switch, server), switch)
    await run.start()
    await until_current(run, server)
    await run.stop()
    return switch


@settings(max_examples=30, deadline=None)
@given(ops=OPS)
def test_any_history_ends_with_the_flows_of_a_cold_start(ops: list[Op]) -> None:
    follow.BACKOFF, saved = Backoff(0.001, 0.001), follow.BACKOFF
    try:
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:

            async def go() -> None:
                switch, server = await history(Path(a), ops)
                reference = await cold(Path(b), server)
                assert same_flows(switch.table(), reference.table())

            asyncio.run(go())
    finally:
        follow.BACKOFF = saved
