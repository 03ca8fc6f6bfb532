"""The second switch slot of a host: its OVS, what it holds, its health, its status file.

Slot a is the agent's `ovs` (the host's usual ovsdb-server and ovs-vswitchd); slot b is a
second OVS instance (`--standby-ovsdb`). Both hold the same flows (see twinplan and
docs/hot-upgrade.md). This module keeps slot b's side and the state both slots share.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flowkeeper.agent.ovsside import HostOvs
from flowkeeper.agent.steerwatch import SteerWatch
from flowkeeper.agent.tcbatch import TcBatch
from flowkeeper.agent.twinplan import TwinPlan, VifRow, other, plan
from flowkeeper.errors import FlowkeeperError
from flowkeeper.flows.flowset import FlowSet
from flowkeeper.fsutil import atomic_write

log = logging.getLogger("flowkeeper.agent")
STATUS_FILE = "slots.json"


@dataclass
class SlotInfo:
    """What the agent knows of one slot's health (written to the status file)."""

    netns: str
    alive: bool | None = None  # None: not known yet
    prepared: bool = False  # alive, every desired flow in, every VIF row pinned
    vifs: list[str] = field(default_factory=list)  # VIF devices whose rows have an ofport
    deaths: int = 0
    last_death: float | None = None  # unix time
    last_failover: dict[str, float] = field(default_factory=dict)


@dataclass
class Failover:
    """One failover's budget, in ms from the moment the death was seen."""

    dead: str
    to: str
    vifs: int  # moved (steered: steered to the surviving slot, wherever they were)
    detect_to_move_ms: float
    # the `ip -batch` move (steered: the `tc -batch` run that made the new path of every
    # VIF not on the surviving slot; with none, the run that steered them all again)
    move_ms: float
    seen_unix: float = 0.0  # when the death was seen (wall clock, for the bench)
    how: str = "netns"  # netns: devices moved; steer: NICs steered
    already_there: int = 0  # steered VIFs the hypervisor had on the surviving slot already
    # steered: the run after move_ms that steered every VIF in full (the dead slot's frames
    # dropped; a no-op for what was done already), off the VMs' path
    rest_ms: float = 0.0


class Twin:
    """Slot b's OVS and installed set, and the status of both slots."""

    def __init__(
        self, ovs: HostOvs, netns_a: str, netns_b: str, state_dir: Path, steer_netns: str = ""
    ) -> None:
        self.ovs = ovs
        # The steer handover: where tc steers each VM NIC to one slot ("": devices move).
        self.steer_netns = steer_netns
        # The steer handover's tc, kept running for the failovers (agent/tcbatch.py).
        self.steer_batch = TcBatch(steer_netns) if steer_netns else None
        # ... and which slot each VM NIC uses, followed as it changes (agent/steerwatch.py).
        self.steer_watch = SteerWatch(steer_netns) if steer_netns else None
        self.installed = FlowSet()
        self.step: tuple[FlowSet, int] | None = None  # as the agent's own, for slot b
        self.info = {"a": SlotInfo(netns_a), "b": SlotInfo(netns_b)}
        self.plan = TwinPlan()
        self.path = state_dir / STATUS_FILE
        self.failovers: list[Failover] = []
        self._written = b""
        self.rows: dict[str, set[str]] = {"a": set(), "b": set()}  # VIF row names per slot

    def sync_rows(self, ovs_a: HostOvs) -> TwinPlan:
        """Copy and pin every VIF's row in both slots; returns the plan that was carried
        out (its `pinned` also goes to both slots' HostOvs for flows)."""
        slots = {"a": ovs_a, "b": self.ovs}
        rows: dict[str, list[VifRow]] = {}
        taken: dict[str, dict[str, int]] = {}
        for name, ovs in slots.items():
            rows[name] = ovs.vif_rows()
            taken[name] = ovs.taken_numbers()
        result = plan(rows, taken)
        for name, ovs in slots.items():
            ovs.write_twin(
                [c for c in result.copies if c.slot == name],
                [(n, number) for s, n, number in result.requests if s == name],
                [n for s, n in result.deletes if s == name],
            )
        for problem in result.problems:
            if problem not in self.plan.problems:
                log.warning("twin slots: %s", problem)
        if result.writes:
            log.info(
                "twin slots: %d VIF rows copied, %d pinned, %d copies removed",
                len(result.copies),
                len(result.requests),
                len(result.deletes),
            )
        for name, ovs in slots.items():
            ovs.pinned = dict(result.pinned)
            self.info[name].vifs = sorted(n for n, r in _present(rows[name]).items() if r)
            self.rows[name] = {r.name for r in rows[name]}
        self.plan = result
        return result

    def forget_installed(self) -> None:
        """Slot b lost its flows (its vswitchd restarted): reinstall everything."""
        self.installed = FlowSet()
        self.step = None
        self.info["b"].prepared = False

    def write_status(self) -> None:
        """STATE_DIR/slots.json (0600), rewritten atomically when it changes."""
        data = {
            "time": round(time.time(), 3),
            "slots": {name: asdict(info) for name, info in self.info.items()},
            "failovers": [asdict(f) for f in self.failovers[-20:]],
        }
        body = json.dumps(data, indent=2, sort_keys=True)
        key = json.dumps({k: v for k, v in data.items() if k != "time"}, sort_keys=True).encode()
        if key == self._written:
            return
        try:
            atomic_write(self.path, body.encode() + b"\n", sync_dir=False)
            self._written = key
        except OSError as exc:
            log.warning("cannot write %s: %s", self.path, exc)

    def other(self, slot: str) -> str:
        return other(slot)


def _present(rows: list[VifRow]) -> dict[str, bool]:
    return {r.name: r.ofport is not None for r in rows}


def connect(remote: str, rundir: Path, datapath_type: str) -> HostOvs:
    try:
        return HostOvs(remote, rundir, datapath_type)
    except FlowkeeperError as exc:
        raise FlowkeeperError(f"standby slot: {exc}") from None
