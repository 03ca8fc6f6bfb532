"""Twin switch slots with the steer VIF handover, with the real agent, on real OVS.

One lab (2 hosts, 3 VMs each on 2 networks, `--standby --vif-handover steer`): every VM
NIC is in both slots of its host (a tap in each, with the same ofport), and tc in the
host's hypervisor namespace steers it to one slot. Asserted: flows, steering state and
loss counts, never timings.
- the tap is in both slots with one ofport; each VM gets every frame once (the copy the
  inactive slot delivers is dropped); in a cut's overlap (new path made, old one not yet
  broken) it gets each frame twice, and once again after;
- every VM of h1 is steered to the other slot and back; no flow of h2, nor of either slot
  of h1, changes during any cut, and every VM forwards after its cut;
- kill -9 of the active slot: the agent steers every VIF to the other slot, records the
  failover, and the restarted slot is prepared again; every VM forwards;
- an agent restart (kill -9) in the middle of an upgrade; an upgrade with the server
  stopped; a hung switch; a power loss and boot of h1: every VM forwards.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowkeeper.agent import vifsteer
from flowkeeper.bench.probes import start_probes
from flowkeeper.lab import hypervisor, services, slotupgrade
from flowkeeper.lab.run import list_netns, run
from flowkeeper.lab.state import HostState
from flowkeeper.ovs.ovsdb import Ovsdb
from tests.conftest import wait_for
from tests.integration.twin_support import (
    Twin,
    all_forward,
    failovers,
    pairs,
    remote_flows,
    settled,
    slot_flows,
    twin_lab,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def twin(request: pytest.FixtureRequest) -> Iterator[Twin]:
    with twin_lab(request.session, "fkst", "steer") as t:
        yield t


def ofports(slot: HostState) -> dict[str, int | None]:
    with Ovsdb(f"unix:{slot.db_sock}") as db:
        return {i.name: i.ofport for i in db.interfaces()}


def steered(t: Twin) -> dict[str, str]:
    """VM of h1 -> the slot tc steers its NIC to."""
    return hypervisor.active(t.h1(), t.vms("h1"))


def one_slot(t: Twin) -> str:
    """The one slot every VM of h1 is steered to (after sync_slots, as lab.json says)."""
    slotupgrade.sync_slots(t.state, t.h1())
    where = steered(t)
    assert where == {vm.name: vm.slot for vm in t.vms("h1")}
    assert len(set(where.values())) == 1, where
    return next(iter(where.values()))


def both_slots_flows(h1: HostState) -> list[list[str]]:
    return [slot_flows(h1.slot(s)) for s in ("a", "b")]


def test_every_tap_is_in_both_slots_with_one_ofport_and_frames_arrive_once(twin: Twin) -> None:
    t = twin
    settled(t)
    h1 = t.h1()
    assert t.state.vif_handover == "steer"
    assert h1.hv_ns == f"{t.name}-h1-hv" and h1.hv_ns in t.state.namespaces
    assert h1.hv_ns in list_netns()
    a, b = ofports(h1.slot("a")), ofports(h1.slot("b"))
    for vm in t.vms("h1"):
        # The agent's copy of Nova's row in slot b opened the device slot b has.
        assert a[vm.tap] is not None and a[vm.tap] == b[vm.tap], vm.tap
        for slot in h1.slots().values():
            run(["ip", "link", "show", "dev", vm.tap], ns=slot.ns)
    assert set(steered(t).values()) == {"a"}
    all_forward(t)
    arrive_once(t)


def arrive_once(t: Twin) -> None:
    """Both slots deliver to every tap; tc lets one copy through: 20 pings, 20 replies,
    no duplicate, from the peer and between two VMs of h1."""
    h1_vms = t.vms("h1")
    local = next((x, y) for x in h1_vms for y in h1_vms if x != y and x.network == y.network)
    remote = [(t.state.vm(s), t.state.vm(d)) for s, d in pairs(t)]
    for src, dst in [*remote, local]:
        assert ping_counts(t, src.name, dst.name) == (20, 0), (src.name, dst.name)


def test_upgrade_steers_every_vm_and_no_flow_changes(
    twin: Twin, report_line: Callable[[str], None]
) -> None:
    t = twin
    settled(t)
    all_forward(t)
    src = one_slot(t)
    h2 = t.state.host("h2")
    before = remote_flows(h2)
    changed: list[str] = []
    h1_flows: list[list[list[str]]] = []

    def after_each_cut(msg: str) -> None:
        if "moved to slot" in msg:
            h1_flows.append(both_slots_flows(t.h1()))
            if remote_flows(h2) != before:
                changed.append(msg)

    probes = start_probes(t.lab, t.state, pairs(t), seconds=20.0)
    time.sleep(1.0)
    report = slotupgrade.upgrade_ovs(t.lab, "h1", settle=0.3, progress=after_each_cut)
    results = [p.result() for p in probes]
    assert changed == [], f"a peer's flows changed during a cut: {changed}"
    assert remote_flows(h2) == before
    assert len(h1_flows) == 3 and all(f == h1_flows[0] for f in h1_flows), "h1's flows changed"
    assert h1_flows[0][0] == h1_flows[0][1], "h1's two slots hold different flows"
    assert len(report.moves) == len(t.vms("h1")) == 3
    assert report.first == slotupgrade.other(src)
    assert all(m.ofport == m.old_ofport for m in report.moves)
    assert one_slot(t) == report.first
    all_forward(t)
    settled(t)
    lost = [r.lost for r in results]
    gaps = [round(r.max_gap_ms) for r in results]
    steer_ms = [round(m.move_ms, 1) for m in report.moves]
    report_line(
        f"steered upgrade of 3 VMs: lost {lost} of {results[0].sent} probes each, gaps "
        f"{gaps} ms; tc steer {steer_ms} ms"
    )
    assert all(r.received > r.sent // 2 for r in results), lost


def ping_counts(t: Twin, src: str, dst: str, count: int = 20) -> tuple[int, int]:
    """(replies, duplicate replies) of `count` pings from VM `src` to VM `dst`."""
    out = run(
        ["ping", "-c", str(count), "-i", "0.02", "-W", "1", t.state.vm(dst).ip],
        ns=t.state.vm(src).ns,
        check=False,
    ).stdout
    got = re.search(r"(\d+) received(?:, \+(\d+) duplicates)?", out)
    assert got, out
    return int(got.group(1)), int(got.group(2) or 0)


def test_make_before_break_both_slots_reach_the_vm_until_the_old_path_is_broken(
    twin: Twin,
) -> None:
    """The overlap of a steered cut, held open: the VM's frames go to the new slot, and the
    frames both slots deliver to it both get through (each request twice); once the old
    path is broken, once. Nothing is lost in either state."""
    t = twin
    settled(t)
    h1 = t.h1()
    src = one_slot(t)
    dst = slotupgrade.other(src)
    peer, vm_name = pairs(t)[0]
    vif = vifsteer.vif_id(t.state.vm(vm_name).tap)
    vifsteer.make_path(h1.hv_ns, [vif], dst)
    try:
        assert steered(t)[vm_name] == dst
        replies, twice = ping_counts(t, peer, vm_name)
        # every request arrived twice; ping ends at the 20th reply, before that one's twin
        assert replies == 20 and twice >= 19, (replies, twice)
        vifsteer.break_path(h1.hv_ns, [vif], dst)
        assert ping_counts(t, peer, vm_name) == (20, 0)
    finally:
        vifsteer.steer(h1.hv_ns, [vif], src, overlap=0.05)  # back, as the lab's state says
    assert steered(t)[vm_name] == src
    assert ping_counts(t, peer, vm_name) == (20, 0)
    arrive_once(t)


def test_kill9_of_the_active_switch_steers_every_vif_and_a_new_standby_is_prepared(
    twin: Twin, report_line: Callable[[str], None]
) -> None:
    t = twin
    settled(t)
    h1 = t.h1()
    dead = one_slot(t)
    slot = h1.slot(dead)
    count = len(failovers(h1))
    pid = int(Path(slot.path("ovs-vswitchd.pid")).read_text())
    probes = start_probes(t.lab, t.state, pairs(t), seconds=6.0)
    time.sleep(1.0)
    run(["kill", "-9", str(pid)])
    results = [p.result() for p in probes]
    all_forward(t)
    records = failovers(h1)
    assert len(records) == count + 1
    record = records[-1]
    assert record["dead"] == dead and record["vifs"] == 3 and record["how"] == "steer"
    assert set(steered(t).values()) == {slotupgrade.other(dead)}
    settled(t)  # the supervisor restarted it; the agent prepared it again
    assert int(Path(slot.path("ovs-vswitchd.pid")).read_text()) != pid
    assert one_slot(t) == slotupgrade.other(dead)
    arrive_once(t)  # the restarted slot's copies are dropped (steered after the failover)
    lost = [r.lost for r in results]
    report_line(
        f"steered failover after kill -9: lost {lost} of {results[0].sent} probes each, "
        f"gaps {[round(r.max_gap_ms) for r in results]} ms; tc steer {record['move_ms']} ms"
    )
    assert all(r.received > 0 for r in results)


def test_agent_restart_during_an_upgrade_leaves_every_vm_forwarding(twin: Twin) -> None:
    t = twin
    settled(t)
    state = t.state
    h1 = state.host("h1")
    src = one_slot(t)
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
    assert one_slot(t) == dst


def test_upgrade_with_the_server_stopped(twin: Twin) -> None:
    t = twin
    settled(t)
    assert t.lab.stop_server()
    try:
        report = slotupgrade.upgrade_ovs(t.lab, "h1", settle=0.2)
        assert len(report.moves) == 3
        all_forward(t)
        settled(t)
        assert one_slot(t) == report.first
    finally:
        t.lab.start_server()
    all_forward(t)


def test_a_hung_switch_is_taken_for_dead_and_its_vms_are_steered_away(twin: Twin) -> None:
    t = twin
    settled(t)
    h1 = t.h1()
    hung = one_slot(t)
    count = len(failovers(h1))
    pid = int(Path(h1.slot(hung).path("ovs-vswitchd.pid")).read_text())
    run(["kill", "-STOP", str(pid)])
    try:
        wait_for(
            lambda: len(failovers(h1)) > count, 20, "the agent to take the hung switch for dead"
        )
        all_forward(t)
    finally:
        run(["kill", "-CONT", str(pid)])
    record = failovers(h1)[-1]
    assert record["dead"] == hung and record["vifs"] == 3
    settled(t)
    assert one_slot(t) == slotupgrade.other(hung)


def test_power_loss_and_boot_bring_every_nic_back_in_both_slots(twin: Twin) -> None:
    t = twin
    settled(t)
    t.lab.reboot("h1")
    h1 = t.h1()
    assert {vm.slot for vm in t.vms("h1")} == {"a"}
    settled(t)
    taps = [vm.tap for vm in t.vms("h1")]

    def pinned_in_both() -> bool:
        a, b = ofports(h1.slot("a")), ofports(h1.slot("b"))
        return all(a.get(tap) is not None and a.get(tap) == b.get(tap) for tap in taps)

    wait_for(pinned_in_both, 30, "every tap of h1 at one ofport in both slots after the boot")
    for vm in t.vms("h1"):
        for side in (vifsteer.VM_SIDE, *vifsteer.SLOTS):
            wire = vifsteer.device(side, vifsteer.vif_id(vm.tap))
            run(["ip", "link", "show", "dev", wire], ns=h1.hv_ns)
    assert set(steered(t).values()) == {"a"}
    all_forward(t)
    # And the twin slots still do their job after the boot: an upgrade.
    report = slotupgrade.upgrade_ovs(t.lab, "h1", settle=0.2)
    assert report.first == "b" and one_slot(t) == "b"
    all_forward(t)
