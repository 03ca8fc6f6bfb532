"""A fake control plane for the agent's unit tests: the AsyncClient calls the agent makes,
answered from memory (one host's view and its watch stream)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

from flowkeeper.client import Compacted, ServerUnavailable
from flowkeeper.model import Host, Network, Port, PortStatus, View, WatchEvent


class FakeServer:
    """Networks and ports at `revision`, the events that led there, and the agent's calls."""

    def __init__(self, cluster_id: str = "cluster-a") -> None:
        self.serves = cluster_id  # the id this server's store has
        self.cluster_id: str | None = None  # as AsyncClient: the id of the last response
        self.revision = 0
        self.compact_revision = 0
        self.networks: dict[str, Network] = {}
        self.ports: dict[str, Port] = {}
        self.events: list[WatchEvent] = []
        self.up = True
        self.views = 0
        self.watched_from: list[int] = []
        self.registered: list[tuple[str, int]] = []  # (state, revision) per registration
        self.statuses: dict[str, PortStatus] = {}
        self._live = asyncio.Event()
        self._closed = asyncio.Event()
        self._streams = 0  # bumped to break the open watch streams
        self.base_url = "http://fake.invalid:9696"  # as AsyncClient: the server in use
        self.failures: list[str] = []  # as AsyncClient.failed: what broke

    def failed(self, url: str, reason: object) -> None:
        self.failures.append(f"{url}: {reason}")

    # --- the test's hands -------------------------------------------------------
    def put_network(self, net: Network) -> Network:
        self.revision += 1
        net = replace(net, revision=self.revision)
        self.networks[net.id] = net
        self._emit(WatchEvent(self.revision, "network", "put", net))
        return net

    def put_port(self, port: Port) -> Port:
        self.revision += 1
        port = replace(port, revision=self.revision)
        self.ports[port.id] = port
        self._emit(WatchEvent(self.revision, "port", "put", port))
        return port

    def delete_port(self, port_id: str) -> None:
        self.revision += 1
        port = self.ports.pop(port_id)
        self._emit(WatchEvent(self.revision, "port", "delete", port))

    def _emit(self, event: WatchEvent) -> None:
        self.events.append(event)
        self._live.set()

    def replace_store(self, cluster_id: str, drop: str = "") -> None:
        """The DB is replaced by another store: the same objects but `drop`, and a history
        of its own, further on than this one's (an agent watching from its old revision
        would never hear that `drop` is gone). Open streams break."""
        networks, ports = list(self.networks.values()), list(self.ports.values())
        start = self.revision + 3
        self.serves = cluster_id
        self.networks, self.ports, self.events = {}, {}, []
        self.revision = start
        for net in networks:
            self.put_network(net)
        for p in ports:
            if p.id != drop:
                self.put_port(p)
        self.break_streams()

    def break_streams(self) -> None:
        """Open watch streams break (a proxy restarts); the server stays up."""
        self._streams += 1
        self._live.set()

    def end_streams(self) -> None:
        """The server goes away: open watch streams break."""
        self.up = False
        self._closed.set()

    # --- AsyncClient ----------------------------------------------------------------
    def _answer(self) -> None:
        if not self.up:
            raise ServerUnavailable("cannot reach the server (fake: down)")
        self.cluster_id = self.serves

    async def register_host(
        self,
        name: str,
        tunnel_ip: str,
        *,
        l2pop: bool = True,
        virtual: bool = False,
        state: str = "unknown",
        revision: int = 0,
    ) -> Host:
        self._answer()
        self.registered.append((state, revision))
        return Host(name, tunnel_ip, l2pop, virtual, state, revision)

    async def view(self, host: str) -> View:
        self._answer()
        self.views += 1
        return View(self.revision, list(self.networks.values()), list(self.ports.values()))

    async def set_port_status(
        self, port_id: str, status: PortStatus, host: str | None = None
    ) -> Port:
        self._answer()
        self.statuses[port_id] = status
        port = replace(self.ports[port_id], status=status)
        self.ports[port_id] = port
        return port

    async def watch(
        self, host: str, from_revision: int, idle_timeout: float = 30.0
    ) -> AsyncIterator[WatchEvent]:
        self._answer()
        self.watched_from.append(from_revision)
        if from_revision < self.compact_revision or from_revision > self.revision:
            raise Compacted(f"revision {from_revision} is gone or ahead: list again")
        sent = from_revision
        first = True
        stream = self._streams
        while self.up and stream == self._streams:
            new = [e for e in self.events if e.revision > sent]
            for event in new:
                yield event
            sent = max([sent, *(e.revision for e in new)])
            if first or new:
                yield WatchEvent(self.revision, "heartbeat", "")
            first = False
            self._live.clear()
            live = asyncio.ensure_future(self._live.wait())
            closed = asyncio.ensure_future(self._closed.wait())
            await asyncio.wait([live, closed], return_when=asyncio.FIRST_COMPLETED)
            live.cancel()
            closed.cancel()
        raise ServerUnavailable("the server ended the watch stream (fake)")

    async def close(self) -> None:
        pass
