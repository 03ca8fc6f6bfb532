"""Twin switch slots with the real agent: hot upgrade and crash failover on real OVS.

One lab (2 hosts, 3 VMs each on 2 networks, `--standby`: every host has two OVS
instances, the agent drives both). Asserted: flows and loss counts, never timings.
- every VM of h1 moves to the other slot and back; no flow of h2 changes during any cut,
  and every moved VM forwards after its cut;
- kill -9 of the slot holding the VMs: every VM forwards again with no operator action,
  the agent's status file records the failover, and the restarted slot is prepared again;
- an agent restart (kill -9) in the middle of an upgrade leaves every VM forwarding;
- an upgrade with the server stopped completes and every VM forwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowkeeper.bench.probes import start_probes
from flowkeeper.lab import services, slotupgrade
from flowkeeper.lab.run import run
from tests.conftest import wait_for
from tests.integration.twin_support import (
    Twin,
    all_forward,
    pairs,
    remote_flows,
    settled,
    status,
    twin_lab,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def twin(request: pytest.FixtureRequest) -> Iterator[Twin]:
    with twin_lab(request.session, "fktw", "netns") as t:
        yield t


def test_upgrade_moves_every_vm_and_no_remote_flow_changes(
    twin: Twin, report_line: Callable[[str], None]
) -> None:
    t = twin
    settled(t)
    all_forward(t)
    h2 = t.state.host("h2")
    before = remote_flows(h2)
    changed: list[str] = []

    def after_each_cut(msg: str) -> None:
        if "moved to slot" in msg and remote_flows(h2) != before:
            changed.append(msg)

    probes = start_probes(t.lab, t.state, pairs(t), seconds=20.0)
    time.sleep(1.0)
    report = slotupgrade.upgrade_ovs(t.lab, "h1", settle=0.3, progress=after_each_cut)
    results = [p.result() for p in probes]
    assert changed == [], f"a peer's flows changed during a cut: {changed}"
    assert remote_flows(h2) == before
    assert len(report.moves) == len(t.vms("h1")) == 3
    assert {vm.slot for vm in t.vms("h1")} == {report.first}
    all_forward(t)
    settled(t)
    lost = [r.lost for r in results]
    gaps = [round(r.max_gap_ms) for r in results]
    report_line(
        f"hot upgrade of 3 VMs: lost {lost} of {results[0].sent} probes each, gaps {gaps} ms"
    )
    # A VM is cut only while its own device moves: never longer than the whole upgrade
    # took, and the probes kept answering around it.
    assert all(r.received > r.sent // 2 for r in results), lost


def test_kill9_of_the_active_switch_fails_over_and_a_new_standby_is_prepared(
    twin: Twin, report_line: Callable[[str], None]
) -> None:
    t = twin
    settled(t)
    h1 = t.h1()
    slotupgrade.sync_slots(t.state, h1)
    busy = {vm.slot for vm in t.vms("h1")}
    assert len(busy) == 1
    dead = busy.pop()
    slot = h1.slot(dead)
    failovers = len(status(h1)["failovers"])  # type: ignore[arg-type]
    pid = int(Path(slot.path("ovs-vswitchd.pid")).read_text())
    probes = start_probes(t.lab, t.state, pairs(t), seconds=6.0)
    time.sleep(1.0)
    run(["kill", "-9", str(pid)])
    results = [p.result() for p in probes]
    all_forward(t)
    records = status(h1)["failovers"]
    assert isinstance(records, list) and len(records) == failovers + 1
    assert records[-1]["dead"] == dead and records[-1]["vifs"] == 3
    settled(t)  # the supervisor restarted it; the agent prepared it again
    assert int(Path(slot.path("ovs-vswitchd.pid")).read_text()) != pid
    lost = [r.lost for r in results]
    report_line(
        f"failover after kill -9: lost {lost} of {results[0].sent} probes each, gaps "
        f"{[round(r.max_gap_ms) for r in results]} ms; move {records[-1]['move_ms']} ms"
    )
    assert all(r.received > 0 for r in results)


def test_agent_restart_during_an_upgrade_leaves_every_vm_forwarding(twin: Twin) -> None:
    t = twin
    settled(t)
    state = t.state
    h1 = state.host("h1")
    slotupgrade.sync_slots(state, h1)
    src = t.vms("h1")[0].slot
    dst = slotupgrade.other(src)
    slotupgrade.restart_slot(state, h1, dst)
    vms = [vm for vm in state.vms if vm.host == "h1"]
    slotupgrade.move_vm(state, h1, vms[0], dst)
    services.stop_agent(h1, hard=True)
    slotupgrade.move_vm(state, h1, vms[1], dst)  # while no agent runs
    services.start_agent(state, h1)
    slotupgrade.move_vm(state, h1, vms[2], dst)
    all_forward(t)
    settled(t)


def test_upgrade_with_the_server_stopped(twin: Twin) -> None:
    t = twin
    settled(t)
    assert t.lab.stop_server()
    try:
        report = slotupgrade.upgrade_ovs(t.lab, "h1", settle=0.2)
        assert len(report.moves) == 3
        all_forward(t)
        settled(t)
    finally:
        t.lab.start_server()
    all_forward(t)


def test_a_hung_switch_is_taken_for_dead_and_its_vms_move(twin: Twin) -> None:
    """SIGSTOP of the slot holding the VMs: its socket stays open but answers no echo, so
    the agent takes it for dead (echo every 0.5 s, 1.5 s to answer) and moves the VMs."""
    t = twin
    settled(t)
    h1 = t.h1()
    slotupgrade.sync_slots(t.state, h1)
    busy = {vm.slot for vm in t.vms("h1")}
    assert len(busy) == 1
    hung = busy.pop()
    failovers = len(status(h1)["failovers"])  # type: ignore[arg-type]
    pid = int(Path(h1.slot(hung).path("ovs-vswitchd.pid")).read_text())
    run(["kill", "-STOP", str(pid)])
    try:
        wait_for(
            lambda: len(status(h1)["failovers"]) > failovers,  # type: ignore[arg-type]
            20,
            "the agent to take the hung switch for dead",
        )
        all_forward(t)
    finally:
        run(["kill", "-CONT", str(pid)])
    record = status(h1)["failovers"][-1]  # type: ignore[index]
    assert record["dead"] == hung and record["vifs"] == 3
    settled(t)  # the switch answers again: alive, and prepared as the standby
