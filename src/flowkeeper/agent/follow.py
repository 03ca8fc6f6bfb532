"""The agent's side of list+watch: list the view, follow the watch stream from the
mirror's revision (if the server's store is the one the mirror came from), register,
heartbeat and report its ports' status. With several servers, a watch that breaks goes
on from the mirror's revision on the next one (the client has moved to it), after a
jittered backoff that grows while no server answers (capped; for ever)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING

from flowkeeper.agent.catchup import same_history
from flowkeeper.agent.mirror import Mirror
from flowkeeper.agent.persist import Persistence
from flowkeeper.agent.watchlog import WatchLog
from flowkeeper.client import AsyncClient, Compacted, ServerUnavailable
from flowkeeper.errors import FlowkeeperError
from flowkeeper.failover import AGENT_BACKOFF
from flowkeeper.model import PortStatus

if TYPE_CHECKING:
    from flowkeeper.agent.daemon import AgentConfig, AgentStatus

log = logging.getLogger("flowkeeper.agent")

HEARTBEAT_S = 5.0
BACKOFF = AGENT_BACKOFF  # between tries to reach a server (a module global: tests shorten it)


class ServerFollower:
    """Mixin of the Agent: the attributes below are the Agent's."""

    cfg: AgentConfig
    client: AsyncClient
    mirror: Mirror
    persist: Persistence
    status: AgentStatus
    in_sync: bool
    wake: asyncio.Event
    stop: asyncio.Event
    cluster_id: str
    failures: int  # consecutive tries that reached no server
    watch_log: WatchLog | None
    watched: str  # the server the last watch went to ("": none yet)

    def _retry_in(self) -> float:
        """The next wait before trying again: full jitter, growing to a cap."""
        self.failures += 1
        return BACKOFF.delay(self.failures, random.random)

    async def _control_plane(self, need_list: bool) -> None:
        self.failures = 0
        while not self.stop.is_set():
            try:
                if need_list:
                    await self._register("syncing")
                    view = await self.client.view(self.cfg.host)
                    self.mirror.load(
                        view.revision,
                        view.networks,
                        view.ports,
                        view.security_groups,
                        view.members,
                    )
                    self.cluster_id = self.client.cluster_id or ""
                    self.persist.note_list()
                    if self.watch_log is not None:
                        self.watch_log.listed(view.revision, self.client.base_url)
                    log.info(
                        "listed revision %d from %s: %d networks, %d ports, "
                        "%d security groups, %d group members",
                        view.revision,
                        self.client.base_url,
                        len(view.networks),
                        len(view.ports),
                        len(view.security_groups),
                        len(view.members),
                    )
                    self.in_sync = True
                    need_list = False
                    self.wake.set()
                need_list = await self._follow()
            except Compacted:
                log.warning("revision %d was compacted away: listing again", self.mirror.revision)
                need_list = True
            except ServerUnavailable as exc:
                self.status.state = "disconnected"
                wait = self._retry_in()
                log.warning(
                    "server unavailable (%s); dataplane kept; next try %s in %.2fs",
                    exc,
                    self.client.base_url,
                    wait,
                )
                await asyncio.sleep(wait)
            except FlowkeeperError as exc:  # e.g. the server refused our registration
                wait = self._retry_in()
                log.error("control plane: %s; retry in %.2fs", exc, wait)
                await asyncio.sleep(wait)

    async def _follow(self) -> bool:
        """Watch from the mirror's revision until the stream ends. True: list again (the
        server's store is not the one the mirror came from)."""
        start = self.mirror.resume_from()
        server = self.client.base_url
        if self.watched and server != self.watched:
            log.info("resuming the watch on %s from revision %d", server, start)
        self.watched = server
        stream = self.client.watch(self.cfg.host, start)
        checked = False
        try:
            async for event in stream:
                if not checked:  # the response's headers are in: whose history is this?
                    checked = True
                    if not same_history(self.cluster_id, self.client.cluster_id):
                        log.warning(
                            "the server's store is cluster %s, our state comes from %s: "
                            "listing again instead of watching from revision %d",
                            self.client.cluster_id,
                            self.cluster_id or "an unknown one",
                            start,
                        )
                        return True
                self.failures = 0
                if event.kind == "heartbeat":
                    # Everything up to this revision has been sent: caught up.
                    self.mirror.complete(event.revision)
                    if self.watch_log is not None:
                        self.watch_log.event(event, server)
                    if not self.in_sync:
                        log.info("caught up with the server at revision %d", event.revision)
                        self.in_sync = True
                        self.wake.set()
                    continue
                applied = self.mirror.apply(event.revision, event.kind, event.op, event.object)
                if self.watch_log is not None:
                    self.watch_log.event(event, server, dup=not applied)
                if applied:
                    self.persist.note_event(event)
                    self.wake.set()
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        return False

    async def _register(self, state: str) -> None:
        self.status.state = state
        await self.client.register_host(
            self.cfg.host,
            self.cfg.tunnel_ip,
            l2pop=self.cfg.l2pop,
            state=state,
            revision=self.status.applied_revision,
        )

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(FlowkeeperError):
                await self._register(self.status.state)

    async def _report_ports(self, mirror: Mirror, bound: dict[str, str]) -> None:
        want: dict[str, PortStatus] = {p: "ACTIVE" for p in bound}
        for port_id, port in mirror.ports.items():
            if port.host == self.cfg.host and port_id not in bound:
                want[port_id] = "DOWN"
        for port_id, status in want.items():
            current = mirror.ports.get(port_id)
            if current is None or self.status.reported.get(port_id) == status:
                continue
            if current.status == status:
                self.status.reported[port_id] = status
                continue
            with contextlib.suppress(FlowkeeperError):
                await self.client.set_port_status(port_id, status, self.cfg.host)
                self.status.reported[port_id] = status
