"""The agent's journal and compaction: a compaction racing a full list keeps its flows."""

from __future__ import annotations

from pathlib import Path

from flowkeeper.agent.mirror import Mirror
from flowkeeper.agent.persist import Inputs, Persistence
from flowkeeper.flows.flowset import FlowDelta, FlowSet
from flowkeeper.flows.record import Flow, parse_flow
from flowkeeper.model import Network

NET = Network("11111111-1111-1111-1111-111111111111", "a", "vxlan", 101)


def flow(n: int) -> Flow:
    return parse_flow(
        f"cookie=0x1,table=20,priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:{n:02x},actions=drop",
        "br-tun",
    )


def inputs(mirror: Mirror, installed: FlowSet | None, epoch: int) -> Inputs:
    return Inputs(
        revision=mirror.revision,
        generation=1,
        vlans={NET.id: 1},
        tunnels=set(),
        mirror=mirror,
        installed=installed,
        devices={},
        epoch=epoch,
    )


def test_a_list_during_a_reconcile_never_compacts_without_the_flows(tmp_path: Path) -> None:
    persist = Persistence(tmp_path)
    mirror = Mirror()
    mirror.load(5, [NET], [])
    persist.note_list()
    installed = FlowSet([flow(1)])
    persist.record(inputs(mirror.copy(), installed.copy(), persist.list_epoch), FlowDelta(), [])
    # The next reconcile copies the mirror; no compaction is due, so, as the daemon does,
    # it copies no installed set. (Before, it passed an empty FlowSet, and the compaction
    # that the list below made due wrote a snapshot with no flows at all.)
    epoch, copy = persist.list_epoch, mirror.copy()
    installed.add(flow(2))
    arg = persist.snapshot_input(installed)
    assert arg is None
    persist.note_list()  # a full list lands while that reconcile awaits OVS
    persist.record(inputs(copy, arg, epoch), FlowDelta(add=[flow(2)]), [])
    report = persist.store.load()
    assert report.data is not None
    assert report.data.flow_count() == 2, report.data.flows
    assert report.journal_records == 1  # journalled, not compacted
    # The next reconcile, on the new list's mirror, compacts: with its flows.
    assert persist.compaction_due()
    newer = Mirror()
    newer.load(9, [NET], [])
    arg = persist.snapshot_input(installed)
    assert arg is not None and len(arg) == 2
    persist.record(inputs(newer, arg, persist.list_epoch), FlowDelta(), [])
    report = persist.store.load()
    assert report.data is not None and report.data.revision == 9
    assert report.data.flow_count() == 2 and report.journal_records == 0
    assert not persist.compaction_due()


def test_an_unusable_snapshot_is_replaced_before_anything_is_journalled(tmp_path: Path) -> None:
    persist = Persistence(tmp_path)
    mirror = Mirror()
    mirror.load(5, [NET], [])
    persist.record(inputs(mirror, FlowSet([flow(1)]), 0), FlowDelta(), [])
    manifest = tmp_path / "snapshot" / "MANIFEST"
    manifest.write_bytes(manifest.read_bytes()[:-3])
    again = Persistence(tmp_path)
    report = again.load()
    assert report.data is None
    assert again.compaction_due()
    assert again.snapshot_input(FlowSet([flow(1)])) is not None
