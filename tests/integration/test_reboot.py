"""Host reboot on real OVS: flows come back from the snapshot, without the server."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from flowkeeper.agent.ovsside import GENERATION_KEY
from flowkeeper.lab import services
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.state import LabState
from flowkeeper.naming import BR_INT, BR_TUN
from flowkeeper.ovs.ovsdb import Ovsdb
from flowkeeper.pipeline.tables import LEARNED_COOKIE
from tests.conftest import LabFactory, wait_for

pytestmark = pytest.mark.lab


def all_flows(lab: Lab, state: LabState, host: str) -> list[str]:
    h = state.host(host)
    return [
        f.render()
        for bridge in (BR_INT, BR_TUN)
        for f in lab.bridge(h, bridge).dump_flows()
        if f.cookie != LEARNED_COOKIE
    ]


def without_cookie(line: str) -> str:
    return line.split(",", 1)[1]


def settled_flows(lab: Lab, state: LabState, host: str) -> set[str]:
    """The host's flows (cookies aside) once they stop changing."""
    last: set[str] = set()
    for _ in range(50):
        now = {without_cookie(f) for f in all_flows(lab, state, host)}
        if now == last:
            return now
        last = now
        time.sleep(0.5)
    pytest.fail("flows never settled")


def cold_resync_flows(lab: Lab, state: LabState, host: str) -> set[str]:
    """Flush the host, forget its snapshot, let a fresh agent rebuild from the server."""
    h = state.host(host)
    log = Path(h.dir) / "agent.log"
    services.stop_agent(h)
    shutil.rmtree(Path(h.path("agent")) / "snapshot")
    for bridge in (BR_INT, BR_TUN):
        lab.bridge(h, bridge).delete_all()
    synced = log.read_text().count("in sync at revision")
    services.start_agent(state, h)
    # Settled means settled after the fresh agent synced (it takes a second or two to start).
    wait_for(
        lambda: log.read_text().count("in sync at revision") > synced,
        timeout=60,
        what="the fresh agent to sync",
    )
    return settled_flows(lab, state, host)


def generation(state: LabState, host: str) -> int:
    with Ovsdb(f"unix:{state.host(host).db_sock}") as db:
        ids = db.api.db_get("Bridge", BR_INT, "external_ids").execute(check_error=True)
    return int(dict(ids)[GENERATION_KEY])


def ofports(state: LabState, host: str) -> dict[str, int | None]:
    with Ovsdb(f"unix:{state.host(host).db_sock}") as db:
        return {i.name: i.ofport for i in db.interfaces() if i.name.startswith("tap")}


def test_reboot_restores_forwarding_with_the_server_down_then_syncs_the_delta(
    lab_factory: LabFactory,
) -> None:
    lab, state = lab_factory(hosts=3, vms_per_host=2, networks=1)
    h1_vms = [v for v in state.vms if v.host == "h1"]
    h2_vm = next(v for v in state.vms if v.host == "h2")
    h3_vm = next(v for v in state.vms if v.host == "h3")
    for vm in h1_vms:
        assert lab.ping(vm.name, h2_vm.name, count=5, interval=0.02).lost <= 1
    before = ofports(state, "h1")

    lab.power_off("h1")
    assert lab.ping(h2_vm.name, h3_vm.name, count=3, interval=0.02).lost == 0
    # While h1 is down: a port goes away on h3, a new VM arrives on h2.
    gone = h3_vm
    lab.delete_vm(gone.name)
    state = lab.state()
    new = lab.add_vm("late", "h2", state.networks["1"], "198.19.1.99", "fa:16:3e:55:00:01")

    lab.stop_server()
    lab.boot("h1")
    state = lab.state()
    # Ofports were renumbered by the re-plug, yet named flows still fit.
    assert ofports(state, "h1") != before
    # Forwarding is back before the agent could talk to any server: there is none.
    for vm in h1_vms:
        wait_for(
            lambda vm=vm: lab.ping(vm.name, h2_vm.name, count=3, interval=0.02).lost == 0,  # type: ignore[misc]
            timeout=15,
            what=f"{vm.name} -> {h2_vm.name} after reboot",
        )

    # The server comes back: the agent syncs only the delta from its snapshot's revision.
    lab.start_server()
    wait_for(
        lambda: any(new.mac in f for f in all_flows(lab, state, "h1")),
        what="the port added while h1 was down",
    )
    wait_for(
        lambda: not any(gone.mac in f for f in all_flows(lab, state, "h1")),
        what="the port deleted while h1 was down to leave h1",
    )
    assert lab.ping(h1_vms[0].name, new.name, count=10, interval=0.02).lost <= 1
    # No stale flow survives: h1 holds exactly what a cold resync from the server gives.
    state = lab.state()
    synced = settled_flows(lab, state, "h1")
    assert generation(state, "h1") >= 2
    assert synced == cold_resync_flows(lab, state, "h1")
    log = (lab.dir / "hosts" / "h1" / "agent.log").read_text()
    assert "restored" in log and "watching from there" in log


def test_damaged_snapshot_is_not_installed_and_the_agent_cold_syncs(
    lab_factory: LabFactory,
) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=1, networks=1)
    a, b = state.vms
    snapdir = lab.dir / "hosts" / "h1" / "agent" / "snapshot"
    wait_for((snapdir / "MANIFEST").exists, what="a snapshot")
    lab.power_off("h1")
    part = next(p for p in snapdir.iterdir() if p.name.startswith("part-br-tun"))
    raw = bytearray(part.read_bytes())
    raw[-3] ^= 0x01
    part.write_bytes(bytes(raw))
    lab.boot("h1")
    wait_for(
        lambda: lab.ping(a.name, b.name, count=3, interval=0.02).lost == 0,
        what="cold resync after a damaged snapshot",
    )
    log = (lab.dir / "hosts" / "h1" / "agent.log").read_text()
    assert "checksum" in log and "cold sync" in log
    assert "restored" not in log.split("cold sync")[-1]
