"""The agent's side of twin switch slots: start, keep slot b's flows, fail over.

A mixin of the Agent (the attributes below are the Agent's). Slot a is `self.ovs`; slot b
is `self.twin.ovs`. Both get the same desired flows; each keeps its own installed set.
When one slot's ovs-vswitchd dies, every VIF device in it moves to the other slot at once
(one `ip -batch`): the flows there already hold them by the same numbers. With the steer
handover (`--vif-steer-netns`) every VIF's device is in both slots already, and every VM
NIC is steered to the surviving slot instead (one `tc -batch`; agent/vifsteer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path

from flowkeeper.agent import conntrack, vifmove, vifsteer
from flowkeeper.agent.catchup import gate_deletes
from flowkeeper.agent.deathwatch import DeathWatch
from flowkeeper.agent.ovsside import HostOvs, Vif
from flowkeeper.agent.phases import Phases
from flowkeeper.agent.tcbatch import TcBatch
from flowkeeper.agent.twin import Failover, Twin, connect
from flowkeeper.agent.watchdog import WATCH_INTERVAL_S, OvsWatch
from flowkeeper.errors import FlowkeeperError
from flowkeeper.flows.flowset import FlowDelta, FlowSet, diff
from flowkeeper.naming import SLOT_LINK
from flowkeeper.pipeline.incremental import IncrementalBuild, diff_keys
from flowkeeper.pipeline.view import HostView

log = logging.getLogger("flowkeeper.agent")
RETRY_S = 0.5  # a slot that could not be reconciled (its switch is down) is retried


class TwinOps:
    """Mixin of the Agent."""

    twin: Twin | None
    ovs: HostOvs | None
    pipeline: IncrementalBuild
    wake: asyncio.Event
    ovs_lock: asyncio.Lock
    cookie: int
    watches: list[DeathWatch]
    failover_lock: asyncio.Lock
    ct_held: frozenset[conntrack.Held]
    port_devices: dict[str, str]
    slot_ctls: dict[str, tuple[str, str]]

    # --- start-up ----------------------------------------------------------------
    async def _start_twin(self, cfg_ovsdb: str, rundir: Path, datapath: str, ns: tuple[str, str],
                          state_dir: Path, *, steer_netns: str = "") -> None:  # fmt: skip
        ovs = await asyncio.to_thread(connect, cfg_ovsdb, rundir, datapath)
        await asyncio.to_thread(ovs.ensure_bridges)
        twin = Twin(ovs, ns[0], ns[1], state_dir, steer_netns)
        try:
            twin.installed = await asyncio.to_thread(ovs.installed_flows)
        except FlowkeeperError as exc:
            log.warning("standby slot: its flows cannot be read yet (%s)", exc)
        if twin.steer_batch is not None:
            try:
                await asyncio.to_thread(twin.steer_batch.start)
            except OSError as exc:  # a failover then starts a tc of its own
                log.warning("failover: cannot keep a tc running in %s: %s", steer_netns, exc)
        if twin.steer_watch is not None:
            try:
                await asyncio.to_thread(twin.steer_watch.start)
            except OSError as exc:  # then a failover takes every VIF over
                log.warning("steer watch: cannot run tc monitor in %s: %s", steer_netns, exc)
                twin.steer_watch = None
        self.twin = twin
        log.info("twin slots: standby slot b at %s (%d flows)", cfg_ovsdb, len(twin.installed))

    def _start_deathwatches(self, mgmt: dict[str, str]) -> None:
        loop = asyncio.get_running_loop()

        def seen(slot: str, alive: bool, when: float) -> None:
            loop.call_soon_threadsafe(self._slot_changed, slot, alive, when)

        self.watches = [DeathWatch(slot, path, seen) for slot, path in mgmt.items()]
        for watch in self.watches:
            watch.start()

    def _stop_twin(self) -> None:
        """At the agent's stop: the death watches, the kept tc and the steer watch."""
        for watch in getattr(self, "watches", []):
            watch.stop()
        if self.twin is not None and self.twin.steer_batch is not None:
            self.twin.steer_batch.close()
        if self.twin is not None and self.twin.steer_watch is not None:
            self.twin.steer_watch.close()

    # --- health ------------------------------------------------------------------
    def _slot_changed(self, slot: str, alive: bool, when: float) -> None:
        twin = self.twin
        if twin is None:
            return
        info = twin.info[slot]
        was = info.alive
        info.alive = alive
        if not alive:
            info.prepared = False
            if was:  # it was up and went away: fail over (not at start-up)
                info.deaths += 1
                info.last_death = time.time()
                asyncio.get_running_loop().create_task(self._failover(slot, when))
        else:
            log.info("slot %s: ovs-vswitchd is up", slot)
            self.wake.set()
        twin.write_status()

    async def _failover(self, dead: str, seen_at: float) -> None:
        twin = self.twin
        assert twin is not None
        to = twin.other(dead)
        src, dst = twin.info[dead].netns, twin.info[to].netns
        if not twin.info[to].alive:
            log.error("slot %s died and slot %s is down too: no VIF can move", dead, to)
            return
        async with self.failover_lock:  # one failover at a time
            if twin.steer_netns:
                devices = _steerable(twin.plan.pinned)
            else:
                # The VIFs OVSDB last showed plugged in the dead slot (its rows keep their
                # ofport while its vswitchd is down); a device that is not there is skipped.
                devices = sorted(set(twin.info[dead].vifs) & set(twin.plan.pinned))
            if not devices:
                log.info("slot %s's ovs-vswitchd stopped; no VIF was in it", dead)
                return
            started = time.monotonic()
            missing: set[str] = set()
            # where the hypervisor had each NIC when the death was seen (before our steer)
            before = twin.steer_watch.snapshot() if twin.steer_watch is not None else {}
            # a NIC whose slot is not known counts as taken over (as before it could be known)
            critical = [d for d in devices if not before or before.get(vifsteer.vif_id(d)) != to]
            rest = 0.0
            if twin.steer_netns:
                took, rest, missing = await asyncio.to_thread(
                    _steer, twin.steer_netns, devices, to, twin.steer_batch, set(critical)
                )
                took = took if critical else rest
            else:
                try:
                    took, missing = await asyncio.to_thread(vifmove.move, devices, src, dst)
                except (vifmove.MoveError, OSError) as exc:
                    log.error("failover from slot %s to %s: %s", dead, to, exc)
                    took = time.monotonic() - started
                twin.info[dead].vifs = []
            devices = [d for d in devices if d not in missing]  # those were elsewhere
        taken = [d for d in critical if d not in missing]
        seen_unix = time.time() - (time.monotonic() - seen_at)
        record = Failover(
            dead,
            to,
            len(devices),
            (started - seen_at) * 1000,
            round(took * 1000, 2),
            round(seen_unix, 4),
            "steer" if twin.steer_netns else "netns",
            len(devices) - len(taken),
            round(rest * 1000, 2) if critical else 0.0,
        )
        twin.failovers.append(record)
        twin.info[dead].last_failover = {"vifs": len(devices), "move_ms": record.move_ms}
        if devices and not taken:  # e.g. a planned restart of the empty slot
            log.info("slot %s's ovs-vswitchd stopped; its %d VIFs were all on slot %s already "
                     "(steered there again in %.1f ms)", dead, len(devices), to,
                     record.move_ms)  # fmt: skip
        else:
            log.warning(
                "failover: slot %s's ovs-vswitchd died; %d VIFs %s to slot %s in %.1f ms "
                "(%.1f ms after the death was seen)%s",
                dead,
                len(taken),
                "steered" if twin.steer_netns else "moved",
                to,
                record.move_ms,
                record.detect_to_move_ms + record.move_ms,
                f"; {record.already_there} more were there already" if record.already_there else "",
            )
        twin.write_status()
        self.wake.set()
        if twin.info[to].alive and taken:
            await self._take_over_conntrack(to, taken)

    async def _watch_twin(self) -> None:
        """Slot b's switch restarted or lost its flows: reinstall them all."""
        twin = self.twin
        assert twin is not None
        watch = OvsWatch(twin.ovs)
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                lost = await asyncio.to_thread(watch.check)
            except Exception as exc:  # the watch must outlive any one failure
                log.error("slot b watch: %s", exc, exc_info=not isinstance(exc, FlowkeeperError))
                await asyncio.sleep(0.5)
                continue
            if lost:
                async with self.ovs_lock:
                    twin.forget_installed()
                log.warning("slot b: ovs-vswitchd restarted or lost its flows: reinstalling")
                self.wake.set()

    # --- reconcile ---------------------------------------------------------------
    async def _follow_steering(self) -> None:
        """Read once where the hypervisor has each pinned VIF the steer watch has seen no
        change of (those steered before the agent started, or while its monitor was
        restarting)."""
        twin = self.twin
        watch = twin.steer_watch if twin is not None else None
        if twin is None or watch is None:
            return
        ids = []
        for name in twin.plan.pinned:
            with contextlib.suppress(vifsteer.SteerError):
                ids.append(vifsteer.vif_id(name))
        if not watch.unknown(ids):
            return
        try:
            await asyncio.to_thread(watch.learn, ids)
        except vifsteer.SteerError as exc:
            log.warning("steer watch: cannot read the steering in %s: %s", watch.ns, exc)

    async def _twin_vifs(self, vifs: list[Vif]) -> list[Vif]:
        """Slot a's VIFs merged with slot b's: a VIF counts as plugged if its device is in
        either slot (it has an ofport there)."""
        twin = self.twin
        if twin is None:
            return vifs
        try:
            theirs = await asyncio.to_thread(twin.ovs.vifs)
        except FlowkeeperError as exc:
            log.warning("slot b: cannot read its VIFs (%s)", exc)
            return vifs
        merged = {v.device: v for v in vifs}
        for vif in theirs:
            mine = merged.get(vif.device)
            if mine is None or (mine.ofport is None and vif.ofport is not None):
                merged[vif.device] = vif
        return sorted(merged.values(), key=lambda v: v.device)

    def _slot_link(self, numbers: dict[str, int]) -> bool:
        """Slot-link flows only where the link is there (the lab or host config makes it)."""
        return self.twin is not None and SLOT_LINK in numbers

    async def _twin_apply(self, view: HostView, changed: object, peers: set[tuple[str, str]],
                          phases: Phases, *, exact_a: bool, in_sync: bool) -> None:  # fmt: skip
        """Slot b gets the desired flows too. A slot b that is down is retried later."""
        twin = self.twin
        assert twin is not None
        desired: FlowSet = self.pipeline.desired
        info = twin.info["b"]
        try:
            await asyncio.to_thread(twin.ovs.ensure_tunnels, peers, view.tunnel_ip)
            step, twin.step = twin.step, None
            if step is not None and step[0] is twin.installed and step[1] == twin.installed.version:
                delta = diff_keys(desired, twin.installed, changed)  # type: ignore[arg-type]
            else:
                delta = diff(desired, twin.installed, ignore_cookie=True)
            # As in slot a: until in sync the view may be old or partial, so nothing the
            # agent does not desire is deleted yet (catchup.gate_deletes).
            delta = gate_deletes(delta, in_sync, [])
            complete = True
            if delta:
                result = await asyncio.to_thread(twin.ovs.apply, delta)
                _record(twin.installed, result.applied)
                complete = not result.deferred
                log.info(
                    "slot b: applied +%d ~%d -%d flows%s",
                    len(result.applied.add),
                    len(result.applied.modify),
                    len(result.applied.delete),
                    f" ({len(result.deferred)} wait for ports)" if result.deferred else "",
                )
            if complete and in_sync:
                twin.step = (twin.installed, twin.installed.version)
            info.prepared = bool(info.alive) and complete and twin.plan.writes == 0
        except FlowkeeperError as exc:
            info.prepared = False
            log.warning("slot b: not reconciled (%s); retry in %.1f s", exc, RETRY_S)
            asyncio.get_running_loop().call_later(RETRY_S, self.wake.set)
        phases.mark("slot b")
        twin.info["a"].prepared = bool(twin.info["a"].alive) and exact_a and twin.plan.writes == 0
        twin.write_status()

    async def _slot_flush(self, slot: str, what: conntrack.Flush) -> float:
        """Flush `what` in one slot's conntrack; the seconds it took (0: nothing to run)."""
        target, rundir = self.slot_ctls[slot]
        if not what or not target:
            return 0.0
        t0 = time.monotonic()
        await asyncio.to_thread(conntrack.flush, what, target, rundir)
        return time.monotonic() - t0

    async def _take_over_conntrack(self, to: str, devices: list[str]) -> None:
        """After a failover: the surviving slot forgets the half connections it saw of
        the VMs it took over (conntrack.taken_over), so that it picks them up whole."""
        moved = set(devices)
        ports = [p for p, dev in self.port_devices.items() if dev in moved]
        what = conntrack.taken_over(self.ct_held, ports)
        if not what:
            return
        if not self.slot_ctls[to][0]:
            log.warning("failover: slot %s's unixctl socket is not known: its conntrack "
                        "keeps the half connections of the VMs it took over", to)  # fmt: skip
            return
        took = await self._slot_flush(to, what)
        log.info("failover: slot %s's conntrack: flushed %s in %.1f ms",
                 to, conntrack.describe(what), took * 1000)  # fmt: skip


def _steerable(pinned: dict[str, int]) -> list[str]:
    """The pinned VIFs (tap names) a failover steers; a name without a tap's form cannot
    be steered (the hypervisor namespace names each VIF's wires by the tap's ID)."""
    devices = []
    for name in sorted(pinned):
        try:
            vifsteer.vif_id(name)
        except vifsteer.SteerError:
            log.warning("failover: %s is not a tap name: not steered", name)
            continue
        devices.append(name)
    return devices


def _steer(
    ns: str,
    devices: list[str],
    to: str,
    batch: TcBatch | None = None,
    first: Collection[str] = (),
) -> tuple[float, float, set[str]]:
    """Steer every listed VIF to slot `to`: (seconds until the new path of every VIF in
    `first` was made, seconds of the run after it, devices whose wires were not there).

    The VIFs in `first` (those the hypervisor did not have on `to`) get their new path in
    a run of their own, two lines each: that run is the VMs' outage. Then one run steers
    every listed VIF in full (a no-op where it is done already), which also drops the dead
    slot's frames, off the VMs' path. A failure is logged; the other VIFs are steered
    regardless."""
    ids = {vifsteer.vif_id(d): d for d in devices}
    firsts = [vif for vif, d in ids.items() if d in first]
    made, gone = _tc(vifsteer.make_path, ns, firsts, to, batch) if firsts else (0.0, set())
    rest, gone_too = _tc(vifsteer.steer, ns, list(ids), to, batch)
    return made, rest, {ids[vif] for vif in ids if any(m[1:] == vif for m in gone | gone_too)}


def _tc(
    fn: Callable[[str, list[str], str, TcBatch | None], float],
    ns: str,
    ids: list[str],
    to: str,
    batch: TcBatch | None,
) -> tuple[float, set[str]]:
    """(seconds, the devices tc did not find) of one steer run; its failure logged."""
    try:
        return fn(ns, ids, to, batch), set()
    except vifsteer.SteerError as exc:
        if not exc.only_missing:
            log.error("failover: steering to slot %s: %s", to, exc)
            return exc.took, set()
        return exc.took, exc.missing
    except OSError as exc:
        log.error("failover: steering to slot %s: %s", to, exc)
        return 0.0, set()


def _record(installed: FlowSet, applied: FlowDelta) -> None:
    for flow in applied.delete:
        installed.discard(flow.key)
    for flow in [*applied.add, *applied.modify]:
        installed.add(flow)
