"""kill -9 of the agent, and power loss, in the middle of port churn: the next start still
restores a consistent state and converges to the server's."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from flowkeeper.lab import services
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.state import LabState
from flowkeeper.naming import BR_TUN
from flowkeeper.pipeline.tables import UCAST_TO_TUN
from flowkeeper.snapshot.store import SnapshotStore
from tests.conftest import LabFactory, wait_for

pytestmark = pytest.mark.lab


def unicast_macs(lab: Lab, state: LabState, host: str) -> set[str]:
    flows = lab.bridge(state.host(host), BR_TUN).dump_flows()
    return {dict(f.match)["dl_dst"] for f in flows if f.table == UCAST_TO_TUN and f.priority == 2}


def server_macs(lab: Lab, state: LabState, network_id: str, not_on: str) -> set[str]:
    ports = lab.client(state).list_ports(network_id=network_id)
    return {p.mac for p in ports if p.status == "ACTIVE" and p.host != not_on}


class Churn(threading.Thread):
    """Creates and deletes ports on virtual hosts until stopped (bounded in count)."""

    def __init__(self, lab: Lab, state: LabState, network_id: str, limit: int = 400) -> None:
        super().__init__(daemon=True)
        self.client = lab.client(state)
        self.network_id = network_id
        self.limit = limit
        self.halt = threading.Event()
        self.rng = random.Random(7)

    def run(self) -> None:
        live: list[str] = []
        for i in range(self.limit):
            if self.halt.is_set():
                return
            if live and self.rng.random() < 0.4:
                self.client.delete_port(live.pop(self.rng.randrange(len(live))))
            else:
                mac = f"fa:16:3e:c0:{i >> 8:02x}:{i & 255:02x}"
                host = f"v000{self.rng.randrange(3)}"
                live.append(self.client.create_port(self.network_id, host, mac).id)
            time.sleep(0.01)


def test_kill_9_and_power_loss_during_churn_converge(lab_factory: LabFactory) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=1, networks=1)
    services.start_simhosts(state, 3, Path(state.dir) / "sim.ndjson", max_seconds=300)
    net = state.networks["1"]
    churn = Churn(lab, state, net)
    churn.start()
    try:
        for _ in range(3):
            time.sleep(random.uniform(0.3, 1.2))
            lab.restart_agent("h1", hard=True)
        time.sleep(random.uniform(0.3, 1.0))
        lab.power_off("h1")
        time.sleep(0.5)
        lab.boot("h1")
        time.sleep(random.uniform(0.3, 1.0))
        lab.restart_agent("h1", hard=True)
    finally:
        churn.halt.set()
        churn.join(timeout=60)
    state = lab.state()
    wait_for(
        lambda: unicast_macs(lab, state, "h1") == server_macs(lab, state, net, "h1"),
        timeout=30,
        what="h1 to converge to the server's ports",
    )
    snap = SnapshotStore(Path(state.host("h1").path("agent")) / "snapshot").load()
    assert snap.data is not None
    a, b = state.vms
    assert lab.ping(a.name, b.name, count=10, interval=0.02).lost <= 1
    services.stop_simhosts(state)
