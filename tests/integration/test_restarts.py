"""Restarts on real OVS: the agent's (no packet lost, no flow rewritten) and ovs-vswitchd's
(flows back with no operator action)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from flowkeeper.lab import services
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.probe import ProbeResult
from flowkeeper.lab.run import in_ns
from flowkeeper.lab.state import LabState
from flowkeeper.naming import BR_INT, BR_TUN
from flowkeeper.ovs.ovsdb import Ovsdb
from tests.conftest import LabFactory, wait_for

pytestmark = pytest.mark.lab
_DURATION = re.compile(r"duration=([0-9.]+)s")


def ages(lab: Lab, state: LabState, host: str) -> dict[str, float]:
    """Each agent flow (cookie aside) with its age in seconds, from a dump with stats."""
    h = state.host(host)
    out: dict[str, float] = {}
    for bridge in (BR_INT, BR_TUN):
        dump = subprocess.run(
            [
                "ovs-ofctl",
                "-O",
                "OpenFlow15",
                "--names",
                "dump-flows",
                f"unix:{h.mgmt(bridge)}",
                "cookie=0xf10c000000000000/0xffff800000000000",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in dump.splitlines():
            m = _DURATION.search(line)
            if m:
                key = re.sub(
                    r"(cookie|duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*, ?", "", line
                ).strip()
                out[f"{bridge} {key}"] = float(m.group(1))
    return out


def probe(lab: Lab, state: LabState, src: str, dst: str, seconds: float) -> subprocess.Popen[str]:
    a, b = state.vm(src), state.vm(dst)
    argv = in_ns(a.ns, lab.probe_argv(a, b.ip, int(seconds / 0.01), 0.01))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen[str]) -> ProbeResult:
    import json

    out, _ = proc.communicate(timeout=120)
    return ProbeResult(**json.loads(out))


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "kill-9"])
def test_agent_restart_loses_no_packet_and_rewrites_no_flow(
    lab_factory: LabFactory, hard: bool
) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=2, networks=2)
    pairs = [
        (v.name, w.name)
        for v in state.vms
        for w in state.vms
        if v.host == "h1" and w.host == "h2" and v.network == w.network
    ]
    for a, b in pairs:
        assert lab.ping(a, b, count=5, interval=0.02).lost <= 1  # warm the tunnel neighbour
    before = ages(lab, state, "h1")
    started = time.monotonic()
    procs = [probe(lab, state, a, b, 6.0) for a, b in pairs]
    time.sleep(1.0)
    lab.restart_agent("h1", hard=hard)
    log = lab.dir / "hosts" / "h1" / "agent.log"
    wait_for(lambda: log.read_text().count("caught up with the server") >= 1, what="sync")
    results = [result(p) for p in procs]
    assert [r.lost for r in results] == [0] * len(results), [r.max_gap_ms for r in results]
    after = ages(lab, state, "h1")
    elapsed = time.monotonic() - started
    assert set(after) == set(before)
    # Not one flow was deleted and re-added: each is older than the restart.
    young = [k for k, age in after.items() if age < before[k] + elapsed - 2.0]
    assert young == []


def test_kill_9_of_ovs_vswitchd_is_healed_without_operator(lab_factory: LabFactory) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=1, networks=1)
    a, b = state.vms
    assert lab.ping(a.name, b.name, count=5, interval=0.02).lost <= 1
    proc = probe(lab, state, a.name, b.name, 8.0)
    time.sleep(1.0)
    lab.restart_ovs("h1", hard=True, flow_restore_wait=False)
    res = result(proc)
    # Traffic came back on its own, and stayed.
    assert res.timeline[-1][1] is not None and res.timeline[-50][1] is not None
    log = (lab.dir / "hosts" / "h1" / "agent.log").read_text()
    assert "ovs-vswitchd restarted or lost its flows" in log


def test_server_outage_keeps_forwarding_and_changes_arrive_after(
    lab_factory: LabFactory,
) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=1, networks=1)
    a, b = state.vms
    lab.stop_server()
    time.sleep(1.0)
    assert lab.ping(a.name, b.name, count=20, interval=0.02).lost == 0
    lab.start_server()
    state = lab.state()
    new = lab.add_vm("late", "h2", state.networks["1"], "198.19.1.77", "fa:16:3e:44:00:01")
    wait_for(
        lambda: lab.ping(a.name, new.name, count=3, interval=0.05).lost <= 1,
        what="the VM created after the outage to be reachable from h1",
    )
    hosts = {h.name: h for h in lab.client(state).list_hosts()}
    assert hosts["h1"].state == "in-sync" and hosts["h1"].revision > 0


def vlan_tags(state: LabState, host: str) -> dict[str, str]:
    """Each VIF's local VLAN as the agent recorded it (Neutron's Port other_config tag)."""
    with Ovsdb(f"unix:{state.host(host).db_sock}") as db:
        return {
            vm.tap: db.port_other_config(vm.tap).get("tag", "")
            for vm in state.vms
            if vm.host == host
        }


def test_an_agent_restarted_without_its_snapshot_keeps_its_local_vlans(
    lab_factory: LabFactory,
) -> None:
    """With no snapshot the VLANs come back from OVSDB: nothing is renumbered, even when
    the agent runs a while before it can list (the server is down)."""
    lab, state = lab_factory(hosts=2, vms_per_host=2, networks=2)
    h1 = state.host("h1")
    tags = vlan_tags(state, "h1")
    on_h1 = sorted((v for v in state.vms if v.host == "h1"), key=lambda v: int(tags[v.tap]))
    gone, kept = on_h1  # one VM per network; `gone` holds the lower VLAN
    peer = next(v for v in state.vms if v.host == "h2" and v.network == kept.network)
    lab.delete_vm(gone.name)
    wait_for(lambda: gone.mac not in str(ages(lab, state, "h1")), what="gone's flows removed")
    # A fresh allocation would now give kept's network the lowest VLAN instead.
    assert int(tags[kept.tap]) > 1
    state = lab.state()
    assert lab.ping(kept.name, peer.name, count=5, interval=0.02).lost <= 1
    before = ages(lab, state, "h1")
    log = Path(h1.dir) / "agent.log"
    offset = len(log.read_text())
    services.stop_agent(h1, hard=True)
    shutil.rmtree(Path(h1.path("agent")) / "snapshot")
    started = time.monotonic()
    lab.stop_server()
    services.start_agent(state, h1)
    wait_for(lambda: "server unavailable" in log.read_text()[offset:], what="agent up")
    time.sleep(1.0)  # it reconciles what it has: OVS's flows and OVSDB's VLANs
    lab.start_server()
    wait_for(lambda: "in sync at revision" in log.read_text()[offset:], what="sync")
    assert "no usable snapshot" in log.read_text()[offset:]
    assert vlan_tags(lab.state(), "h1")[kept.tap] == tags[kept.tap]
    assert lab.ping(kept.name, peer.name, count=5, interval=0.02).lost == 0
    # Same flows, none rewritten: a renumbered VLAN would have modified them.
    after = ages(lab, state, "h1")
    assert set(after) == set(before)
    elapsed = time.monotonic() - started
    assert [k for k, age in after.items() if age < before[k] + elapsed - 2.0] == []
