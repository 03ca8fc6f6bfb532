"""The agent's side of the snapshot: journal every applied delta, compact, load at start."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowkeeper.agent.mirror import Mirror
from flowkeeper.flows.flowset import FlowDelta, FlowSet
from flowkeeper.model import Network, Port, WatchEvent
from flowkeeper.snapshot.content import JournalDelta, SnapshotData, flow_line
from flowkeeper.snapshot.partition import PartitionIndex
from flowkeeper.snapshot.store import LoadReport, SnapshotStore

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
    installed: FlowSet
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

    def load(self) -> LoadReport:
        report = self.store.load()
        for problem in report.problems:
            if problem != "no snapshot":
                log.warning("snapshot: %s", problem)
        return report

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
            or not self.store.exists()
            or self.store.journal_size() > COMPACT_JOURNAL_BYTES
        )

    def take_pending(self) -> list[dict[str, Any]]:
        events, self.pending = self.pending, []
        return events

    def record(self, now: Inputs, delta: FlowDelta, events: list[dict[str, Any]]) -> None:
        """Journal one applied delta (fsynced), or compact when due.

        `now` must not change while this runs (it runs in a worker thread): pass copies.
        """
        if self.compaction_due():
            self.compact(now)
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

    def compact(self, now: Inputs) -> None:
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
        )
        for flow in now.installed:
            key, line = flow_line(flow)
            data.flows.setdefault(flow.bridge, {})[key] = line
        segs = {n.segmentation_id: n.id for n in mirror.networks.values()}
        index = PartitionIndex(
            by_vlan={v: n for n, v in now.vlans.items()},
            by_segment=segs,
            by_device=dict(now.devices),
        )
        self.store.write(data, index)
        self._compacted_epoch = max(self._compacted_epoch, now.epoch)
        log.info("snapshot written: revision %d, %d flows", now.revision, data.flow_count())


def mirror_from(data: SnapshotData) -> Mirror:
    """The control-plane state a snapshot reflects, as the agent's mirror."""
    mirror = Mirror()
    mirror.load(
        data.revision,
        [Network.from_dict(n) for n in data.networks.values()],
        [Port.from_dict(p) for p in data.ports.values()],
    )
    return mirror
