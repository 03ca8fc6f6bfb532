"""The agent's side of list+watch: list the view, follow the watch stream from the
mirror's revision (if the server's store is the one the mirror came from), register,
heartbeat and report its ports' status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from flowkeeper.agent.catchup import same_history
from flowkeeper.agent.mirror import Mirror
from flowkeeper.agent.persist import Persistence
from flowkeeper.client import AsyncClient, Compacted, ServerUnavailable
from flowkeeper.errors import FlowkeeperError
from flowkeeper.model import PortStatus

if TYPE_CHECKING:
    from flowkeeper.agent.daemon import AgentConfig, AgentStatus

log = logging.getLogger("flowkeeper.agent")

HEARTBEAT_S = 5.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.2, 5.0


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
    backoff: float

    async def _control_plane(self, need_list: bool) -> None:
        self.backoff = BACKOFF_MIN_S
        while not self.stop.is_set():
            try:
                if need_list:
                    await self._register("syncing")
                    view = await self.client.view(self.cfg.host, self.cfg.standby_for)
                    self.mirror.load(view.revision, view.networks, view.ports)
                    self.cluster_id = self.client.cluster_id or ""
                    self.persist.note_list()
                    log.info(
                        "listed revision %d: %d networks, %d ports",
                        view.revision,
                        len(view.networks),
                        len(view.ports),
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
                log.warning(
                    "server unavailable (%s); dataplane kept; retry in %.1fs", exc, self.backoff
                )
                await asyncio.sleep(self.backoff)
                self.backoff = min(self.backoff * 2, BACKOFF_MAX_S)
            except FlowkeeperError as exc:  # e.g. the server refused our registration
                log.error("control plane: %s; retry in %.1fs", exc, self.backoff)
                await asyncio.sleep(self.backoff)
                self.backoff = min(self.backoff * 2, BACKOFF_MAX_S)

    async def _follow(self) -> bool:
        """Watch from the mirror's revision until the stream ends. True: list again (the
        server's store is not the one the mirror came from)."""
        stream = self.client.watch(
            self.cfg.host, self.mirror.revision, standby_for=self.cfg.standby_for
        )
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
                            self.mirror.revision,
                        )
                        return True
                self.backoff = BACKOFF_MIN_S
                if event.kind == "heartbeat":
                    # Everything up to this revision has been sent: caught up.
                    self.mirror.revision = max(self.mirror.revision, event.revision)
                    if not self.in_sync:
                        log.info("caught up with the server at revision %d", event.revision)
                        self.in_sync = True
                        self.wake.set()
                    continue
                self.mirror.apply(event.revision, event.kind, event.op, event.object)
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
