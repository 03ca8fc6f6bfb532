"""The agent's guard over OVS itself: restarts of ovs-vswitchd, flushed tables, and a
snapshot-taken installed set checked against a real dump."""

from __future__ import annotations

import asyncio
import logging

from flowkeeper.agent.ovsside import HostOvs
from flowkeeper.agent.restore import as_flowset, restore
from flowkeeper.agent.watchdog import WATCH_INTERVAL_S, OvsWatch
from flowkeeper.errors import FlowkeeperError
from flowkeeper.flows.flowset import FlowSet, diff
from flowkeeper.ovs.errors import OpenFlowError
from flowkeeper.snapshot.content import SnapshotData, flow_line

log = logging.getLogger("flowkeeper.agent")
VERIFY_AFTER_S = 2.0  # the real dump waits until the agent is up and running
VERIFY_RETRY_MAX_S = 30.0


class OvsGuard:
    """Mixin of the Agent: the attributes below are the Agent's."""

    installed: FlowSet
    tunnels: set[tuple[str, str]]
    ovs_lock: asyncio.Lock
    wake: asyncio.Event
    verify_installed: bool
    tunnel_ip: str
    flow_numbers: dict[str, int]

    async def _verify_installed(self, ovs: HostOvs) -> None:
        """If installed was taken from the snapshot, compare it with a real dump once."""
        if not self.verify_installed:
            return
        wait = VERIFY_AFTER_S
        while True:
            await asyncio.sleep(wait)
            async with self.ovs_lock:
                try:
                    dumped = await asyncio.to_thread(ovs.installed_flows)
                except OpenFlowError as exc:  # ovs-ofctl hung or missing: try again later
                    wait = min(2 * wait, VERIFY_RETRY_MAX_S)
                    log.warning("cannot check the installed flows yet (%s)", exc)
                    continue
                if not diff(dumped, self.installed, ignore_cookie=True):
                    log.info("installed flows checked against OVS: they match what was assumed")
                    return
                log.warning("OVS differs from the flows assumed installed: using a dump instead")
                self.installed = dumped
            self.wake.set()
            return

    async def _watch_ovs(self, ovs: HostOvs) -> None:
        watch = OvsWatch(ovs)
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                lost = await asyncio.to_thread(watch.check)
                if lost:
                    async with self.ovs_lock:
                        await self._restore_from_memory(ovs, lost)
                    self.wake.set()
            except Exception as exc:  # the watch must outlive any one failure
                log.error("OVS watch: %s", exc, exc_info=not isinstance(exc, FlowkeeperError))
                await asyncio.sleep(0.5)

    async def _restore_from_memory(self, ovs: HostOvs, lost: set[str]) -> None:
        """ovs-vswitchd restarted (or someone flushed it): the installed flows, which the
        snapshot also holds, go straight back, one bundle per bridge."""
        data = SnapshotData(tunnels=sorted(self.tunnels))
        for flow in self.installed:
            if flow.bridge in lost:
                key, line = flow_line(flow)
                data.flows.setdefault(flow.bridge, {})[key] = line
        result = await asyncio.to_thread(restore, ovs, data, self.tunnel_ip, lost)
        self.flow_numbers.update(result.numbers)
        kept = await asyncio.to_thread(as_flowset, result.lines)
        for bridge in lost:  # what OVS holds now; deferred flows go in at the next reconcile
            for flow in list(self.installed.for_bridge(bridge)):
                self.installed.discard(flow.key)
        for flow in kept:
            self.installed.add(flow)
        await asyncio.to_thread(ovs.clear_flow_restore_wait)
        log.warning(
            "ovs-vswitchd restarted or lost its flows (%s): restored %d flows in %.0f ms",
            ", ".join(sorted(lost)),
            result.restored,
            result.seconds * 1000,
        )
