"""The agent's side of the snapshot: journal every applied delta, compact, load at start."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowkeeper.agent.mirror import Mirror
from flowkeeper.flows.flowset import FlowDelta, FlowSet
from flowkeeper.model import GroupMember, Network, Port, SecurityGroup, WatchEvent
from flowkeeper.snapshot.content import JournalDelta, SnapshotData, flow_line, member_key
from flowkeeper.snapshot.partition import PartitionIndex
from flowkeeper.snapshot.store import NO_SNAPSHOT, LoadReport, SnapshotStore, log_problems

log = logging.getLogger(__name__)

COMPACT_JOURNAL_BYTES = 8 << 20


@dataclass(frozen=True)
class Inputs:
    """What the agent had when it applied a delta: the snapshot's content."""

    revision: int
    generation: int
    vlans: Mapping[str, int]
    tunnels: set[tuple[str, str]]
    mirror: Mirror
    # The installed flows, copied with the mirror: given only when a compaction is due
    # (see Persistence.snapshot_input); without them the delta is journalled instead.
    installed: FlowSet | None
    devices: Mapping[str, str]  # OVS device -> network id
    epoch: int = 0  # the list epoch the mirror copy belongs to
    cluster_id: str = ""  # the server store the mirror copy came from


class Persistence:
    """Journal of what the agent installed, and the inputs that led to it."""

    def __init__(self, state_dir: Path) -> None:
        self.store = SnapshotStore(state_dir / "snapshot")
        self.pending: list[dict[str, Any]] = []  # watch events since the last record
        # Each full list starts a new epoch; a compaction counts only if its inputs were
        # taken after the latest list (a reconcile may have copied the mirror before it).
        self.list_epoch = 0
        self._compacted_epoch = 0
        self._unusable = False  # the snapshot on disk did not load: write a new one first

    def load(self) -> LoadReport:
        """The agent's load: a damaged journal tail is cut back (logged), never appended to."""
        report = self.store.load(repair=True)
        log_problems(report, log)
        self.adopt(report)
        return report

    def adopt(self, report: LoadReport) -> None:
        """Go on from a load done elsewhere (the quick boot) without reading again."""
        self.store.resume(report)
        self._unusable = report.data is None and report.problems != [NO_SNAPSHOT]

    def note_event(self, event: WatchEvent) -> None:
        if event.object is not None:
            obj = event.object.to_dict()
            self.pending.append({"kind": event.kind, "op": event.op, "object": obj})

    def note_list(self) -> None:
        """A full list replaced the mirror: the next record must be a full snapshot."""
        self.pending.clear()
        self.list_epoch += 1

    def compaction_due(self) -> bool:
        return (
            self._compacted_epoch < self.list_epoch
            or self._unusable
            or not self.store.exists()
            or self.store.journal_size() > COMPACT_JOURNAL_BYTES
        )

    def take_pending(self) -> list[dict[str, Any]]:
        events, self.pending = self.pending, []
        return events

    def snapshot_input(self, installed: FlowSet) -> FlowSet | None:
        """Inputs.installed for a reconcile: a copy taken with its mirror copy if a
        compaction is due now, else None. record() compacts exactly when it gets one, so a
        full list that lands after this decision can never make it write a snapshot whose
        flows are missing: the delta is journalled, and the next reconcile compacts."""
        return installed.copy() if self.compaction_due() else None

    def record(self, now: Inputs, delta: FlowDelta, events: list[dict[str, Any]]) -> None:
        """Compact if `now` carries the installed flows, else journal the delta (fsynced).

        `now` must not change while this runs (it runs in a worker thread): pass copies.
        """
        if now.installed is not None:
            self.compact(now, now.installed)
            return
        add: dict[str, list[str]] = {}
        for flow in [*delta.add, *delta.modify]:
            add.setdefault(flow.bridge, []).append(flow.render())
        delete: dict[str, list[str]] = {}
        for flow in delta.delete:
            delete.setdefault(flow.bridge, []).append(flow.render_key())
        self.store.append(
            JournalDelta(
                revision=now.revision,
                generation=now.generation,
                add=add,
                delete=delete,
                events=events,
                vlans=dict(now.vlans),
                tunnels=sorted(now.tunnels),
            )
        )

    def compact(self, now: Inputs, installed: FlowSet) -> None:
        """Write the whole state as a new snapshot (partitions, manifest, empty journal)."""
        mirror = now.mirror
        data = SnapshotData(
            revision=now.revision,
            generation=now.generation,
            networks={n.id: n.to_dict() for n in mirror.networks.values()},
            ports={p.id: p.to_dict() for p in mirror.ports.values()},
            vlans=dict(now.vlans),
            tunnels=sorted(now.tunnels),
            cluster_id=now.cluster_id,
            groups={g.id: g.to_dict() for g in mirror.groups.values()},
            members={member_key(m.to_dict()): m.to_dict() for m in mirror.members.values()},
        )
        for flow in installed:
            key, line = flow_line(flow)
            data.flows.setdefault(flow.bridge, {})[key] = line
        segs = {n.segmentation_id: n.id for n in mirror.networks.values()}
        index = PartitionIndex(
            by_vlan={v: n for n, v in now.vlans.items()},
            by_segment=segs,
            by_device=dict(now.devices),
        )
        self.store.write(data, index)
        self._unusable = False
        self._compacted_epoch = max(self._compacted_epoch, now.epoch)
        log.info("snapshot written: revision %d, %d flows", now.revision, data.flow_count())


def mirror_from(data: SnapshotData) -> Mirror:
    """The control-plane state a snapshot reflects, as the agent's mirror."""
    mirror = Mirror()
    mirror.load(
        data.revision,
        [Network.from_dict(n) for n in data.networks.values()],
        [Port.from_dict(p) for p in data.ports.values()],
        [SecurityGroup.from_dict(g) for g in data.groups.values()],
        [GroupMember.from_dict(m) for m in data.members.values()],
    )
    return mirror
