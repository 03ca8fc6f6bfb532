"""Twin switch slots with security groups on: open connections across a hot upgrade and
a crash failover, with the real agent, on real OVS.

One lab (2 hosts, 1 VM each on one network, `--standby --vif-handover steer --firewall
openvswitch`); both VMs in one group: egress any, ingress tcp 5001. Each slot keeps its
own conntrack (the userspace datapath's), so after a cut the new slot meets connections
it never saw the start of. Asserted per test, for a counted TCP stream each way (h1's VM
sending to h2's, and h2's sending to h1's): no reset, every byte arrived, in order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkeeper.lab import ovsproc, slotupgrade
from flowkeeper.lab.run import run
from tests.integration import fw_support as fw
from tests.integration.twin_support import Twin, failovers, settled, twin_lab

pytestmark = pytest.mark.lab

PORT = 5001
STREAM_S = 10.0


@pytest.fixture(scope="module")
def twin(request: pytest.FixtureRequest) -> Iterator[Twin]:
    with twin_lab(
        request.session, "fktf", "steer", firewall="openvswitch", vms_per_host=1, networks=1
    ) as t:
        client = t.lab.client(t.state)
        group = fw.make_group(client, "srv", [fw.rule("egress"), fw.rule("ingress", "tcp", PORT)])
        for vm in t.state.vms:
            fw.set_port(client, vm.iface_id, security_groups=[group])
        reachable(t)
        yield t


def reachable(t: Twin) -> None:
    """Each VM reaches the other's tcp 5001 (allowed, nobody listens: the RST comes back;
    the group lets no ping in)."""
    a, b = t.vms("h1")[0], t.vms("h2")[0]
    fw.becomes(a, b, PORT, "refused")
    fw.becomes(b, a, PORT, "refused")


def half_open_entry(entry: str, ip: str) -> bool:
    """A userspace conntrack entry made from a SYN whose answer this slot never saw (an
    entry picked up mid-stream is BE_LIBERAL, and harmless)."""
    return f"={ip}," in entry and "state_orig=SYN_SENT" in entry and "BE_LIBERAL" not in entry


def streams(t: Twin, name: str) -> list[fw.Stream]:
    a, b = t.vms("h1")[0], t.vms("h2")[0]
    return [
        fw.stream(t.state, a, b, PORT, STREAM_S, name=f"{name}-out"),
        fw.stream(t.state, b, a, PORT, STREAM_S, name=f"{name}-in"),
    ]


def test_streams_through_the_firewall_survive_a_hot_upgrade(twin: Twin) -> None:
    """Streams opened before the upgrade (the new slot starts with none of them) and
    streams opened once the new slot runs, before the cut (it saw their SYNs, not the
    answers: half-open entries that the cut's conntrack hand-over must clear)."""
    t = twin
    settled(t)
    before = streams(t, "upgrade-old")
    opened: list[fw.Stream] = []
    vm = t.vms("h1")[0]
    half_open: list[str] = []  # the new slot's, of the VM, right after its cut

    def progress(msg: str) -> None:
        if " prepared " in msg and not opened:
            opened.extend(streams(t, "upgrade-new"))
            time.sleep(2.0)
        if " moved to slot " in msg:
            slot = t.h1().slot(msg.split(" moved to slot ")[1][0])
            entries = ovsproc.conntrack(slot)
            half_open.extend(e for e in entries if half_open_entry(e, vm.ip))

    time.sleep(2.0)
    report = slotupgrade.upgrade_ovs(t.lab, "h1", settle=0.3, progress=progress)
    assert len(report.moves) == 1
    assert report.moves[0].ct_flush_ms is not None
    assert len(opened) == 2
    assert half_open == []
    for s in [*before, *opened]:
        client_side, server_side = s.results()
        fw.ok(client_side, server_side)
        assert int(client_side["sent"]) > 0
    reachable(t)


def test_streams_through_the_firewall_survive_a_crash_failover(twin: Twin) -> None:
    t = twin
    settled(t)
    h1 = t.h1()
    slotupgrade.sync_slots(t.state, h1)
    dead = t.vms("h1")[0].slot
    count = len(failovers(h1))
    pid = int(Path(h1.slot(dead).path("ovs-vswitchd.pid")).read_text())
    both = streams(t, "failover")
    time.sleep(2.0)
    run(["kill", "-9", str(pid)])
    for s in both:
        client_side, server_side = s.results()
        fw.ok(client_side, server_side)
        assert int(client_side["sent"]) > 0
    assert len(failovers(h1)) == count + 1
    settled(t)
    reachable(t)


def test_a_planned_restart_of_the_empty_slot_keeps_the_live_slots_conntrack(
    twin: Twin,
) -> None:
    """An upgrade restarts the slot no VM uses, twice. The agent sees that slot's death as
    any other, but the steer watch knows every NIC was on the live slot already: its
    conntrack keeps the VM's connections (flushed, a connection being opened then would
    lose its SYN's entry, and a reply its rules do not allow as new would be dropped)."""
    t = twin
    settled(t)
    h1 = t.h1()
    slotupgrade.sync_slots(t.state, h1)
    vm = t.vms("h1")[0]
    live = vm.slot
    count = len(failovers(h1))
    both = streams(t, "restart-empty")
    time.sleep(2.0)

    def whole(entry: str) -> bool:  # made from a SYN this slot saw, not picked up
        return f"={vm.ip}," in entry and f"={PORT}," in entry and "BE_LIBERAL" not in entry

    held = [e for e in ovsproc.conntrack(h1.slot(live)) if whole(e)]
    assert len(held) >= 2  # both streams' entries, each from its own SYN
    slotupgrade.restart_slot(t.state, h1, slotupgrade.other(live), timeout=120)
    records = failovers(h1)
    assert len(records) == count + 1  # the agent saw the death ...
    assert records[-1]["already_there"] == records[-1]["vifs"] == 1  # ... and moved nothing
    kept = [e for e in ovsproc.conntrack(h1.slot(live)) if whole(e)]
    assert {e.split("protoinfo")[0] for e in held} <= {e.split("protoinfo")[0] for e in kept}
    for s in both:
        client_side, server_side = s.results()
        fw.ok(client_side, server_side)
    reachable(t)
