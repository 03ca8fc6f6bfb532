"""The agent daemon: follow the server (list+watch) and OVSDB, keep OVS's flows as desired.

Every path is the same three steps: take the installed flows, compute the desired ones
from a HostView, apply the diff in one atomic bundle per bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flowkeeper.agent import conntrack
from flowkeeper.agent.bridges import DEFAULT_DATAPATH_TYPE
from flowkeeper.agent.catchup import gate_deletes, must_record
from flowkeeper.agent.follow import ServerFollower
from flowkeeper.agent.guard import OvsGuard
from flowkeeper.agent.mirror import (
    LocalMemo,
    LocalVif,
    Mirror,
    RemoteMemo,
    assemble,
    bound_ports,
    vlan_records,
)
from flowkeeper.agent.ovsside import BRIDGES, HostOvs, Vif
from flowkeeper.agent.persist import Inputs, Persistence, mirror_from
from flowkeeper.agent.phases import Phases
from flowkeeper.agent.restore import (
    RestoreResult,
    as_flowset,
    counts_match,
    lost_bridges,
    restore,
    snapshot_flows,
)
from flowkeeper.agent.twin import STATUS_FILE
from flowkeeper.agent.twinops import TwinOps
from flowkeeper.agent.watchlog import WatchLog
from flowkeeper.client import AsyncClient
from flowkeeper.errors import FlowkeeperError
from flowkeeper.failover import parse_servers, start_index
from flowkeeper.flows.flowset import FlowDelta, FlowSet, diff
from flowkeeper.flows.ports import renumbered, stale_by_number
from flowkeeper.flows.record import Flow
from flowkeeper.ovs.errors import OpenFlowError
from flowkeeper.ovs.ovsdb import InterfaceInfo
from flowkeeper.pipeline.incremental import IncrementalBuild, diff_keys
from flowkeeper.pipeline.tables import cookie_for
from flowkeeper.pipeline.view import HostView, tunnel_peers
from flowkeeper.pipeline.vlans import allocate
from flowkeeper.snapshot.store import LoadReport

log = logging.getLogger("flowkeeper.agent")

Step = tuple[FlowSet, int]

DEBOUNCE_S = 0.005
RETRY_MIN_S, RETRY_MAX_S = 0.05, 2.0  # flows waiting for a port the switch lacks
RECONCILE_RETRY_MIN_S, RECONCILE_RETRY_MAX_S = 0.5, 10.0  # a reconcile that failed


@dataclass
class AgentConfig:
    host: str
    tunnel_ip: str
    server: str
    ovsdb: str
    rundir: Path
    state_dir: Path
    token: str | None = None
    ca: Path | None = None  # the CA of an https server
    l2pop: bool = True
    arp_responder: bool = True
    datapath_type: str = DEFAULT_DATAPATH_TYPE  # of the bridges the agent creates
    watch_log: Path | None = None  # one JSON line per watch message (diagnostics)
    firewall: str = "openvswitch"  # security groups in br-int's flows, or "noop": none
    # ovs-vswitchd's unixctl socket, for conntrack flushes ("": ovs-vswitchd's own, found
    # through its pid file in rundir, as `ovs-appctl -t ovs-vswitchd` finds it)
    vswitchd_ctl: str = ""
    # Twin switch slots (docs/hot-upgrade.md): slot b's OVSDB ("": one slot), its run
    # directory (its bridges' .mgmt sockets), its vswitchd's unixctl socket, and the
    # network namespaces the VIF devices of slot a and of slot b live in.
    standby_ovsdb: str = ""
    standby_rundir: Path | None = None
    standby_vswitchd_ctl: str = ""
    vif_netns: str = ""
    standby_vif_netns: str = ""
    # The steer VIF handover: every VIF device is in both slots, and tc in this namespace
    # steers each VM NIC to one slot ("": a failover moves the devices instead).
    vif_steer_netns: str = ""

    @property
    def firewall_on(self) -> bool:
        return self.firewall == "openvswitch"


@dataclass
class AgentStatus:
    state: str = "starting"  # starting -> syncing -> in-sync (-> disconnected)
    applied_revision: int = 0
    reported: dict[str, str] = field(default_factory=dict)  # port id -> status told


@dataclass(frozen=True)
class Moment:
    """What one reconcile works from, taken together: the mirror copy, whether the agent
    was in sync, the list epoch and the store the copy came from."""

    mirror: Mirror
    in_sync: bool
    epoch: int
    cluster_id: str


class Agent(OvsGuard, ServerFollower, TwinOps):
    def __init__(
        self, cfg: AgentConfig, early: tuple[LoadReport, RestoreResult | None] | None = None
    ) -> None:
        self.cfg = cfg
        self.tunnel_ip = cfg.tunnel_ip
        self.early = early  # the snapshot as read, and the quick restore if one was done
        self.mirror = Mirror()
        self.status = AgentStatus()
        self.wake = asyncio.Event()
        self.stop = asyncio.Event()
        self.in_sync = False
        self.installed = FlowSet()
        self.vlans: dict[str, int] = {}
        self.cookie = 0
        self.ovs: HostOvs | None = None
        servers = parse_servers(cfg.server)
        start = start_index(cfg.host, len(servers))
        self.client = AsyncClient(servers, cfg.token, ca=cfg.ca, start=start)
        self.persist = Persistence(cfg.state_dir)
        self.generation = 0
        self.devices: dict[str, str] = {}  # device -> network id, for snapshot partitions
        self.tunnels: set[tuple[str, str]] = set()
        self.ovs_lock = asyncio.Lock()  # one writer of OVS flows at a time
        self.verify_installed = False  # installed came from the snapshot: check it later
        self.pipeline = IncrementalBuild()
        self.remote_memo: RemoteMemo = {}
        self.local_memo: LocalMemo = {}
        self.step: Step | None = None  # (installed, its version) when it equalled desired
        self.retry_s = 0.0  # the current wait before retrying deferred flows
        # Port name -> the OpenFlow number the installed flows naming it resolved to.
        self.flow_numbers: dict[str, int] = {}
        self.cluster_id = ""  # the server store the mirror comes from ("": not known)
        self.failures = 0  # consecutive tries that reached no server
        self.watch_log = WatchLog(cfg.watch_log) if cfg.watch_log else None
        self.watched = ""  # the server the last watch went to
        self.reconcile_backoff = RECONCILE_RETRY_MIN_S  # before a failed reconcile's retry
        # (port, zone, address) whose connections the firewall tracks, as last flushed
        self.ct_held: frozenset[conntrack.Held] = frozenset()
        self.port_devices: dict[str, str] = {}  # port id -> its VIF device, as last bound
        # Each slot's ovs-vswitchd unixctl target and rundir, for conntrack flushes ("":
        # none given for slot b, which then is not flushed).
        self.slot_ctls = {
            "a": (cfg.vswitchd_ctl or "ovs-vswitchd", str(cfg.rundir)),
            "b": (cfg.standby_vswitchd_ctl, str(cfg.standby_rundir or cfg.rundir)),
        }
        self.twin = None
        self.watches = []
        self.failover_lock = asyncio.Lock()
        self.changed: object = None  # the pipeline's last changed keys

    # --- start-up -----------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        t0 = time.monotonic()
        if self.cfg.standby_ovsdb:  # a previous agent's word on the slots is void now
            (self.cfg.state_dir / STATUS_FILE).unlink(missing_ok=True)
        # Reading the snapshot and connecting to OVSDB overlap: both are on the boot path.
        if self.early is not None:
            ovs = await asyncio.to_thread(self._connect_ovs)
            report = self.early[0]
            self.persist.adopt(report)  # loaded (and repaired) by the quick boot
        else:
            ovs, report = await asyncio.gather(
                asyncio.to_thread(self._connect_ovs),
                asyncio.to_thread(self.persist.load),
            )
        self.ovs = ovs
        await asyncio.to_thread(ovs.ensure_bridges)
        log.info(
            "boot: OVSDB connected, snapshot read, bridges checked in %.0f ms",
            (time.monotonic() - t0) * 1000,
        )
        need_list = await self._boot(ovs, report)
        cfg = self.cfg
        if cfg.standby_ovsdb and cfg.standby_rundir is not None:
            await self._start_twin(
                cfg.standby_ovsdb,
                cfg.standby_rundir,
                cfg.datapath_type,
                (cfg.vif_netns, cfg.standby_vif_netns),
                cfg.state_dir,
                steer_netns=cfg.vif_steer_netns,
            )
            self._start_deathwatches(
                {
                    "a": str(cfg.rundir / "br-int.mgmt"),
                    "b": str(cfg.standby_rundir / "br-int.mgmt"),
                }
            )
        self.wake.set()  # reconcile at once: VIFs may have been plugged while we were away

        def on_iface(event: str, info: InterfaceInfo) -> None:
            if event == "delete":
                ovs.forget(info.name)  # a re-plugged VIF is a new Port row: record it again
            if info.iface_id or info.name.startswith(("vxlan-", "gre-")):
                loop.call_soon_threadsafe(self.wake.set)

        ovs.watch(on_iface)
        tasks = [
            asyncio.create_task(self._control_plane(need_list), name="control-plane"),
            asyncio.create_task(self._reconciler(), name="reconciler"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._watch_ovs(ovs), name="ovs-watch"),
            asyncio.create_task(self._verify_installed(ovs), name="verify-installed"),
        ]
        if self.twin is not None:
            tasks.append(asyncio.create_task(self._watch_twin(), name="slot-b-watch"))
            self.twin.ovs.watch(on_iface)
        await self.stop.wait()
        self._stop_twin()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.close()
        if self.watch_log is not None:
            self.watch_log.close()
        await asyncio.to_thread(ovs.close)
        if self.twin is not None:
            await asyncio.to_thread(self.twin.ovs.close)
        log.info("agent stopped; flows left in place")

    def _connect_ovs(self) -> HostOvs:
        return HostOvs(self.cfg.ovsdb, self.cfg.rundir, self.cfg.datapath_type)

    async def _boot(self, ovs: HostOvs, report: LoadReport) -> bool:
        """Installed flows and inputs from OVS and the snapshot; restore if OVS lost its flows.

        Returns True when the agent must list its view (no usable snapshot).
        """
        self.generation = await asyncio.to_thread(ovs.next_generation)
        self.cookie = cookie_for(self.generation)
        try:
            await self._take_installed(ovs, report)
        except OpenFlowError as exc:
            # ovs-ofctl missing, hung or refused: nothing is known of what OVS holds, so
            # nothing of the snapshot can be put back either. Sync from the server; the
            # installed set is checked against a real dump once OVS answers again.
            self.installed = FlowSet()
            self.verify_installed = True
            report = LoadReport(None, problems=[f"cannot read or restore OVS's flows: {exc}"])
        data = report.data
        if data is None:
            self.vlans = await asyncio.to_thread(ovs.local_vlans)
            log.info(
                "generation %d; %d flows installed; no usable snapshot (%s): cold sync",
                self.generation,
                len(self.installed),
                "; ".join(report.problems),
            )
            await asyncio.to_thread(ovs.clear_flow_restore_wait)
            return True
        await asyncio.to_thread(ovs.clear_flow_restore_wait)
        self.mirror = mirror_from(data)
        self.cluster_id = data.cluster_id
        self.vlans = dict(data.vlans)
        self.tunnels = set(data.tunnels)
        self.ct_held = self._held_before(self.mirror)
        log.info(
            "generation %d; %d flows installed; snapshot at revision %d "
            "(%d partitions, %d journal records); watching from there",
            self.generation,
            len(self.installed),
            data.revision,
            report.partitions,
            report.journal_records,
        )
        return False

    async def _take_installed(self, ovs: HostOvs, report: LoadReport) -> None:
        """What OVS holds, from the quick boot, the snapshot or a dump; the snapshot goes
        back into every bridge that lost our flows. OpenFlowError if OVS cannot be read."""
        quick = self.early[1] if self.early else None
        if quick is not None:  # restored before the agent loaded: OVS holds exactly these
            others = [b for b in BRIDGES if b not in quick.lines]
            self.installed = await asyncio.to_thread(ovs.installed_flows, others)
            for flow in await asyncio.to_thread(as_flowset, quick.lines):
                self.installed.add(flow)
            self.flow_numbers = dict(quick.numbers)
        elif report.data is not None and await asyncio.to_thread(counts_match, ovs, report.data):
            # OVS kept its flows and holds as many of ours as the snapshot: take the
            # snapshot's records instead of dumping and parsing every flow (the slow part of
            # a restart), and check against a real dump once we are running.
            self.installed = await asyncio.to_thread(snapshot_flows, report.data)
            self.verify_installed = True
        else:
            self.installed = await asyncio.to_thread(ovs.installed_flows)
        lost = lost_bridges(self.installed, BRIDGES)
        if report.data is not None and lost:
            result = await asyncio.to_thread(restore, ovs, report.data, self.cfg.tunnel_ip, lost)
            self.flow_numbers = dict(result.numbers)
            for flow in await asyncio.to_thread(as_flowset, result.lines):
                self.installed.add(flow)

    # --- reconcile: desired vs installed, one bundle per bridge --------------
    async def _reconciler(self) -> None:
        while True:
            await self.wake.wait()
            await asyncio.sleep(DEBOUNCE_S)
            self.wake.clear()
            try:
                async with self.ovs_lock:
                    await self._reconcile()
            except Exception as exc:  # the loop must outlive any one failure
                log.error(
                    "reconcile failed: %s; re-reading installed flows",
                    exc,
                    exc_info=not isinstance(exc, FlowkeeperError),
                )
                assert self.ovs is not None
                try:
                    self.installed = await asyncio.to_thread(self.ovs.installed_flows)
                    self.reconcile_backoff = RECONCILE_RETRY_MIN_S
                except OpenFlowError as again:  # OVS unreadable too: try later, wait longer
                    log.error("cannot read the installed flows either: %s", again)
                    self.reconcile_backoff = min(2 * self.reconcile_backoff, RECONCILE_RETRY_MAX_S)
                await asyncio.sleep(self.reconcile_backoff)
                self.wake.set()

    async def _reconcile(self) -> None:
        events = self.persist.take_pending()  # the events the mirror copy below includes
        try:
            await self._reconcile_with(events)
        except BaseException:
            self.persist.pending[:0] = events  # not journalled: keep them for the next try
            raise

    async def _reconcile_with(self, events: list[dict[str, Any]]) -> None:
        ovs = self.ovs
        assert ovs is not None
        phases = Phases()
        step, self.step = self.step, None  # valid again only if this reconcile is exact
        # One consistent copy: watch events keep arriving while we await OVS below.
        now = self._moment()
        mirror, in_sync, revision = now.mirror, now.in_sync, now.mirror.revision
        twin = self.twin
        vifs, numbers, a_down = await self._read_switches(ovs)
        renumbered_deletes = [] if a_down else self._forget_renumbered(numbers)
        bound = bound_ports(mirror, self.cfg.host, [LocalVif(v.device, v.iface_id) for v in vifs])
        # A VIF whose device is gone (after a reboot, before Nova re-plugs it) keeps its
        # network and VLAN, but its flows wait until OVS has the port again.
        missing = {v.device for v in vifs if v.ofport is None}
        self.vlans = self._vlans(mirror, bound, in_sync)
        view = self._view(mirror, {p: d for p, d in bound.items() if d not in missing})
        if twin is not None:
            view = replace(view, slot_link=self._slot_link(numbers))
        peers = tunnel_peers(view)
        if not in_sync:
            peers |= self.tunnels  # keep restored tunnels until we know better
        phases.mark("view")
        if not a_down:
            await asyncio.to_thread(ovs.ensure_tunnels, peers, self.cfg.tunnel_ip)
        phases.mark("tunnels")
        delta = gate_deletes(self._delta(view, step), in_sync, renumbered_deletes)
        exact = in_sync  # installed will equal desired, stale flows gone
        complete_a = not a_down
        phases.mark("build+diff")
        if delta and not a_down:
            delta, complete_a = await self._apply(ovs, delta, phases, revision)
            exact = exact and complete_a
        if twin is not None:
            await self._twin_apply(
                view, self.changed, peers, phases, exact_a=complete_a, in_sync=in_sync
            )
        if a_down:
            log.warning("slot a's switch is down: slot a not reconciled; retry in 0.5 s")
            asyncio.get_running_loop().call_later(0.5, self.wake.set)
            await self._record(now, FlowDelta(), events)
            return
        await self._conntrack(view, in_sync)
        # Neutron's record of each VIF's network and VLAN: after the flows, off their path.
        records = vlan_records(view, bound, mirror)
        if twin is not None:  # a VIF row that slot a does not have (yet) is left alone
            records = [r for r in records if r[0] in twin.rows["a"]]
        await asyncio.to_thread(ovs.record_vlans, records)
        self.flow_numbers = numbers
        if exact:
            self.step = (self.installed, self.installed.version)
        self.tunnels = peers
        self.devices = {dev: mirror.ports[p].network_id for p, dev in bound.items()}
        self.port_devices = dict(bound)
        await self._record(now, delta, events)
        if in_sync:
            await self._in_sync(ovs, mirror, bound, peers, revision)

    async def _read_switches(self, ovs: HostOvs) -> tuple[list[Vif], dict[str, int], bool]:
        """VIFs, port numbers and whether slot a's switch is down (only with twin slots:
        then slot b is reconciled anyway, and VIFs count if plugged in either slot)."""
        twin = self.twin
        if twin is not None:
            await asyncio.to_thread(twin.sync_rows, ovs)
            await self._follow_steering()
        vifs = await self._twin_vifs(await asyncio.to_thread(ovs.vifs))
        try:
            numbers = await asyncio.to_thread(ovs.port_numbers)
        except FlowkeeperError:
            if twin is None:
                raise
            return vifs, {**twin.plan.pinned, **self.flow_numbers}, True
        if twin is not None:
            numbers = {**twin.plan.pinned, **numbers}
        return vifs, numbers, False

    async def _in_sync(
        self,
        ovs: HostOvs,
        mirror: Mirror,
        bound: dict[str, str],
        peers: set[tuple[str, str]],
        revision: int,
    ) -> None:
        """What waits for the server's state: unused tunnels go, port statuses, in-sync."""
        gone = await asyncio.to_thread(ovs.remove_unused_tunnels, peers)
        if self.twin is not None:
            try:
                gone += await asyncio.to_thread(self.twin.ovs.remove_unused_tunnels, peers)
            except FlowkeeperError as exc:  # slot b's switch is down: next time
                log.warning("slot b: cannot remove unused tunnels: %s", exc)
        if gone:
            log.info("removed unused tunnels %s", ", ".join(gone))
        await self._report_ports(mirror, bound)
        self.status.applied_revision = revision
        if self.status.state != "in-sync":
            log.info("in sync at revision %d: %d flows", revision, len(self.installed))
            with contextlib.suppress(FlowkeeperError):
                await self._register("in-sync")

    async def _conntrack(self, view: HostView, in_sync: bool) -> None:
        """Flush the entries of addresses no port holds any more, once their flows are
        gone (in sync: the deletes went in). Before that, remember them for later."""
        now = conntrack.held(view)
        if not in_sync:
            self.ct_held |= now
            return
        what = conntrack.to_flush(self.ct_held, now)
        self.ct_held = now
        if what:
            log.info("conntrack: flushing %s", conntrack.describe(what))
            await self._slot_flush("a", what)
            if self.twin is not None:
                await self._slot_flush("b", what)

    def _held_before(self, mirror: Mirror) -> frozenset[conntrack.Held]:
        """What the agent before this one tracked, from its snapshot: every port of this
        host in it (a port deleted while no agent ran is flushed at the first sync)."""
        ours = {p.id: "" for p in mirror.ports.values() if p.host == self.cfg.host}
        return conntrack.held(self._view(mirror, ours))

    def _moment(self) -> Moment:
        """One consistent copy: watch events keep arriving while the reconcile awaits OVS."""
        return Moment(self.mirror.copy(), self.in_sync, self.persist.list_epoch, self.cluster_id)

    async def _record(self, now: Moment, delta: FlowDelta, events: list[dict[str, Any]]) -> None:
        if not must_record(bool(delta), bool(events), self.persist.compaction_due()):
            return
        inputs = Inputs(
            revision=now.mirror.revision,
            generation=self.generation,
            vlans=dict(self.vlans),
            tunnels=set(self.tunnels),
            mirror=now.mirror,
            installed=self.persist.snapshot_input(self.installed),
            devices=dict(self.devices),
            epoch=now.epoch,
            cluster_id=now.cluster_id,
        )
        await asyncio.to_thread(self.persist.record, inputs, delta, events)

    async def _apply(
        self, ovs: HostOvs, delta: FlowDelta, phases: Phases, revision: int
    ) -> tuple[FlowDelta, bool]:
        """Apply a delta and record it in `installed`: (what was applied, all of it?)."""
        result = await asyncio.to_thread(ovs.apply, delta)
        phases.mark("bundles")
        applied = result.applied
        for flow in applied.delete:
            self.installed.discard(flow.key)
        for flow in [*applied.add, *applied.modify]:
            self.installed.add(flow)
        log.info(
            "applied +%d ~%d -%d flows in %.0f ms (revision %d; %s ms)",
            len(applied.add),
            len(applied.modify),
            len(applied.delete),
            phases.total_ms(),
            revision,
            phases.summary(),
        )
        if not result.deferred:
            self.retry_s = 0.0
            return applied, True
        # The port's arrival usually wakes us (an OVSDB event), but not always: after a
        # reboot OVSDB can show a VIF's old ofport before the switch has the port, and
        # nothing changes in OVSDB when it gets it back. So try again, backing off.
        self.retry_s = min(self.retry_s * 2, RETRY_MAX_S) if self.retry_s else RETRY_MIN_S
        asyncio.get_running_loop().call_later(self.retry_s, self.wake.set)
        log.info(
            "%d flows wait for ports the switch does not have now: %s; retry in %.2f s",
            len(result.deferred),
            ", ".join(sorted(result.missing)),
            self.retry_s,
        )
        return applied, False

    def _forget_renumbered(self, numbers: dict[str, int]) -> list[Flow]:
        """Ports re-created with another number (a VIF re-plugged, a switch restarted):
        forget the installed flows naming them, so that the diff puts them back by name,
        and return deletes by the old number for their in_port flows."""
        moved = renumbered(self.flow_numbers, numbers)
        if not moved:
            return []
        forget, deletes = stale_by_number(self.installed, moved)
        for flow in forget:
            self.installed.discard(flow.key)
        (log.info if forget else log.debug)(
            "ports re-created with new numbers (%s): re-installing %d flows",
            ", ".join(f"{name} {old}->{numbers[name]}" for name, old in sorted(moved.items())),
            len(forget),
        )
        return deletes

    def _vlans(self, mirror: Mirror, bound: dict[str, str], in_sync: bool) -> dict[str, int]:
        """Local VLANs: the networks of bound VIFs; before the first sync also every
        network that had one."""
        needed = {mirror.ports[p].network_id for p in bound}
        return allocate(self.vlans, needed | (set() if in_sync else set(self.vlans)))

    def _view(self, mirror: Mirror, present: dict[str, str]) -> HostView:
        """The pipeline's input; `present`: bound VIFs whose device OVS has."""
        view = assemble(
            mirror,
            host=self.cfg.host,
            tunnel_ip=self.cfg.tunnel_ip,
            l2pop=self.cfg.l2pop,
            arp_responder=self.cfg.arp_responder,
            cookie=self.cookie,
            bound=present,
            vlans=self.vlans,
            memo=self.remote_memo,
            local_memo=self.local_memo,
        )
        return replace(view, firewall=self.cfg.firewall_on)

    def _delta(self, view: HostView, step: Step | None) -> FlowDelta:
        """Desired minus installed. When the last reconcile left installed equal to what
        it desired and nothing has touched installed since (`step`), only the flows the
        pipeline changed are compared; otherwise every flow is."""
        changed = self.pipeline.update(view)
        self.changed = changed
        desired = self.pipeline.desired
        if step is not None and step[0] is self.installed and step[1] == self.installed.version:
            return diff_keys(desired, self.installed, changed)
        return diff(desired, self.installed, ignore_cookie=True)
