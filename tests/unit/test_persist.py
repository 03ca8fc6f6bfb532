"""The agent's journal and compaction: a compaction racing a full list keeps its flows."""

from __future__ import annotations

from pathlib import Path

import pytest

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
        installed=installed,  # type: ignore[arg-type]
        devices={},
        epoch=epoch,
    )


@pytest.mark.xfail(strict=True, reason="a list between the copy and the record compacts 0 flows")
def test_a_list_during_a_reconcile_never_compacts_without_the_flows(tmp_path: Path) -> None:
    persist = Persistence(tmp_path)
    mirror = Mirror()
    mirror.load(5, [NET], [])
    persist.note_list()
    installed = FlowSet([flow(1)])
    persist.record(inputs(mirror.copy(), installed.copy(), persist.list_epoch), FlowDelta(), [])
    # The next reconcile copies the mirror; no compaction is due, so, as the daemon does,
    # it copies no installed set.
    epoch, copy = persist.list_epoch, mirror.copy()
    installed.add(flow(2))
    arg = installed.copy() if persist.compaction_due() else FlowSet()
    persist.note_list()  # a full list lands while that reconcile awaits OVS
    persist.record(inputs(copy, arg, epoch), FlowDelta(add=[flow(2)]), [])
    report = persist.store.load()
    assert report.data is not None
    assert report.data.flow_count() == 2, report.data.flows
