"""List+watch on a real server: prompt, targeted, resumable; 410 when compacted."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from flowkeeper.client import AsyncClient, Compacted, Event, ServerUnavailable
from flowkeeper.model import Network, Port
from tests.controlplane.conftest import TOKEN, LiveServer, ServerFactory
from tests.unit.cpfake import Replay, normal

Inbox = dict[str, list[tuple[float, Event]]]


async def follow(client: AsyncClient, host: str, rev: int, inbox: Inbox) -> None:
    async for event in client.watch(host, rev):
        inbox.setdefault(host, []).append((time.monotonic(), event))


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def ports_seen(inbox: Inbox, host: str) -> list[Port]:
    return [e.object for _, e in inbox.get(host, []) if isinstance(e.object, Port)]


def test_a_port_event_reaches_only_the_hosts_of_its_network_promptly(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(heartbeat_s=0.2)
    c = server.client()
    net1 = c.create_network("net1", "vxlan", cidr="198.19.1.0/24")
    net2 = c.create_network("net2", "vxlan", cidr="198.19.2.0/24")
    # Without port security: no default group, whose members (the ports of every
    # network) its users' hosts would hear of; this is about the network's fan-out.
    c.create_port(net1.id, "h1", "fa:16:3e:00:00:01", ["198.19.1.1"], port_security_enabled=False)
    c.create_port(net1.id, "h2", "fa:16:3e:00:00:02", ["198.19.1.2"], port_security_enabled=False)
    c.create_port(net2.id, "h3", "fa:16:3e:00:00:03", ["198.19.2.3"], port_security_enabled=False)
    for i in range(1, 6):
        c.register_host(f"h{i}", f"198.18.0.{i}")
    rev = c.revision()

    async def scenario() -> tuple[Inbox, float]:
        inbox: Inbox = {}
        async with AsyncClient(server.url, TOKEN) as ac:
            tasks = [asyncio.create_task(follow(ac, h, rev, inbox)) for h in ("h1", "h2", "h3")]
            await until(lambda: all(h in inbox for h in ("h1", "h2", "h3")))  # subscribed
            started = time.monotonic()
            await ac.create_port(
                net1.id,
                "h4",
                "fa:16:3e:00:00:04",
                ["198.19.1.4"],
                id="new",
                port_security_enabled=False,
            )
            await until(lambda: all(ports_seen(inbox, h) for h in ("h1", "h2")), timeout=2)
            await asyncio.sleep(0.5)  # h3 gets heartbeats meanwhile, never the port
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return inbox, started

    inbox, started = asyncio.run(scenario())
    for h in ("h1", "h2"):
        [p] = ports_seen(inbox, h)
        assert (p.id, p.tunnel_ip) == ("new", "198.18.0.4")
        arrived = next(t for t, e in inbox[h] if e.object is not None)
        assert arrived - started < 0.5, f"{h} got the port after {arrived - started:.3f}s"
    assert ports_seen(inbox, "h3") == []
    assert all(e.kind == "heartbeat" for _, e in inbox["h3"]) and len(inbox["h3"]) >= 2
    stats = c.stats()["port_events"]["recent"][-1]
    assert (stats["delivered"], stats["interested"], stats["registered"]) == (2, 3, 5)


def test_watch_from_a_compacted_revision_is_410(server_factory: ServerFactory) -> None:
    server = server_factory(keep_events=3)
    c = server.client()
    c.register_host("h1", "198.18.0.1")
    for i in range(6):
        c.create_network(f"net{i}", "gre")
    for rev in (0, 1, 2):
        with pytest.raises(urllib.error.HTTPError) as exc:
            req = urllib.request.Request(f"{server.url}/v1/hosts/h1/watch?from={rev}")
            req.add_header("Authorization", f"Bearer {TOKEN}")
            urllib.request.urlopen(req, timeout=5)
        assert exc.value.code == 410
        assert b"was compacted away" in exc.value.read()

    async def watch(rev: int) -> list[Event]:
        async with AsyncClient(server.url, TOKEN) as ac:
            out = []
            async for e in ac.watch("h1", rev):
                out.append(e)
                if e.kind == "heartbeat":
                    return out
        return out

    with pytest.raises(Compacted, match="compacted away"):
        asyncio.run(watch(1))
    with pytest.raises(Compacted, match="ahead of the server's revision 7"):
        asyncio.run(watch(99))
    assert [e.revision for e in asyncio.run(watch(4))] == [7]  # 4 is still complete


def test_resuming_from_an_old_revision_loses_nothing(server: LiveServer) -> None:
    """An agent that saw the view at R0, then was away while its networks changed under it,
    gets exactly what it needs to reach the current view."""
    c = server.client()
    net1 = c.create_network("net1", "vxlan", cidr="198.19.1.0/24")
    net2 = c.create_network("net2", "gre", cidr="198.19.2.0/24")
    a = c.create_port(net1.id, "h1", "fa:16:3e:00:00:01", ["198.19.1.1"])
    c.create_port(net1.id, "h2", "fa:16:3e:00:00:02", ["198.19.1.2"])
    c.register_host("h2", "198.18.0.2")
    start = c.view("h1")
    # while h1 is away: it leaves net1, net1 changes, it re-joins net1, joins net2, ...
    c.delete_port(a.id)
    c.create_port(net1.id, "h3", "fa:16:3e:00:00:03", ["198.19.1.3"])
    c.create_port(net1.id, "h1", "fa:16:3e:00:00:11", ["198.19.1.11"])
    c.create_port(net2.id, "h2", "fa:16:3e:00:00:22", ["198.19.2.2"])
    c.create_port(net2.id, "h1", "fa:16:3e:00:00:21", ["198.19.2.1"])
    c.register_host("h2", "198.18.0.22")
    c.register_host("h3", "198.18.0.3")
    head = c.view("h1")

    async def catch_up() -> list[Event]:
        async with AsyncClient(server.url, TOKEN) as ac:
            out: list[Event] = []
            async for e in ac.watch("h1", start.revision):
                if e.kind == "heartbeat" and e.revision >= head.revision:
                    return out
                out.append(e)
        return out

    replay = Replay(start)
    replay.apply(asyncio.run(catch_up()))
    assert replay.as_view(head.revision) == normal(head)
    assert {p.tunnel_ip for p in head.ports if p.host == "h2"} == {"198.18.0.22"}
    assert {n.id for n in head.networks} == {net1.id, net2.id}
    assert all(isinstance(n, Network) for n in head.networks)


def test_gone_watchers_are_dropped_and_counted(server_factory: ServerFactory) -> None:
    server = server_factory(heartbeat_s=0.1)
    server.client().register_host("h1", "198.18.0.1")

    async def one_message() -> None:
        async with AsyncClient(server.url, TOKEN) as ac:
            async for _ in ac.watch("h1", 0):
                return

    asyncio.run(one_message())
    c = server.client()
    deadline = time.monotonic() + 3
    while c.stats()["watchers"] and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = c.stats()
    assert stats["watchers"] == 0 and stats["watch_connections"] == 1
    assert stats["messages_by_kind"]["heartbeat"] >= 1


def test_an_unreachable_server_is_server_unavailable() -> None:
    async def go() -> None:
        async with AsyncClient("http://127.0.0.1:9", timeout=2) as ac:
            await ac.view("h1")

    with pytest.raises(
        ServerUnavailable, match=r"cannot reach the server at http://127\.0\.0\.1:9"
    ):
        asyncio.run(go())
