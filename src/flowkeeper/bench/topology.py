"""A large topology for benchmarks: a measured real host whose view holds thousands of
remote ports (on virtual hosts) and tens of thousands of flows, plus real probe VMs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flowkeeper.errors import FlowkeeperError
from flowkeeper.lab import services
from flowkeeper.lab.lab import Lab, UpOptions
from flowkeeper.lab.simhosts import virtual_host_name
from flowkeeper.lab.state import LabState
from flowkeeper.pipeline.tables import COOKIE_TAG

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TopologySpec:
    ports: int = 4000  # ports in the measured host's view
    networks: int = 10
    ips_per_port: int = 3  # each IP is one ARP-responder flow: ~5 flows per remote port
    virtual_hosts: int = 100
    real_hosts: int = 2  # h1 is measured; h2.. hold the probe peers
    standby: bool = False  # twin switch slots on every real host (lab up --standby)
    vif_handover: str = "netns"  # with standby: netns (devices move) or steer (lab up)


def build(lab_dir: Path, spec: TopologySpec, progress: Progress, name: str) -> tuple[Lab, LabState]:
    """Bring up the lab and fill the control plane; every port ends ACTIVE.

    Network n (no CIDR, so remote ports may carry many addresses) has one probe VM on h1
    (198.19.(100+n).10) and one on h2 (.11); its remote ports sit on its virtual hosts.
    """
    if spec.ports > spec.networks * spec.real_hosts and spec.virtual_hosts < spec.networks:
        raise FlowkeeperError(
            "benchmark: remote ports need a virtual host per network at least "
            f"({spec.virtual_hosts} virtual hosts for {spec.networks} networks)"
        )
    lab = Lab(lab_dir, progress=progress)
    lab.down()
    opts = UpOptions(
        hosts=spec.real_hosts,
        vms_per_host=0,
        networks=1,
        name=name,
        standby=spec.standby,
        vif_handover=spec.vif_handover if spec.standby else "netns",
    )
    state = lab.up(opts)
    client = lab.client(state)
    feed = Path(state.dir) / "simhosts.ndjson"
    services.start_simhosts(state, spec.virtual_hosts, feed, max_seconds=3000)
    wait(
        lambda: len(client.list_hosts()) >= spec.real_hosts + spec.virtual_hosts,
        120,
        "virtual hosts to register",
    )
    nets = []
    for n in range(spec.networks):
        net = client.create_network(f"bench{n}", "vxlan", segmentation_id=6000 + n)
        nets.append(net.id)
        for h in range(spec.real_hosts):
            lab.add_vm(
                f"p{n}h{h + 1}",
                f"h{h + 1}",
                net.id,
                f"198.19.{100 + n}.{10 + h}",
                f"fa:16:3e:{100 + n:02x}:00:{h + 1:02x}",
                wait=False,
            )
    remote = spec.ports - spec.networks * spec.real_hosts
    per_net = math.ceil(remote / spec.networks)
    vh_per_net = max(1, spec.virtual_hosts // spec.networks)
    created = 0
    started = time.monotonic()
    for n, net_id in enumerate(nets):
        for k in range(min(per_net, remote - created)):
            vhost = virtual_host_name(n * vh_per_net + k % vh_per_net)
            ips = [_ip(k * spec.ips_per_port + j) for j in range(spec.ips_per_port)]
            client.create_port(
                net_id, vhost, _mac(n, k), ips, name=f"r{n}-{k}", port_security_enabled=False
            )
            created += 1
            if created % 500 == 0:
                progress(
                    f"  {created}/{remote} remote ports created "
                    f"({created / (time.monotonic() - started):.0f}/s)"
                )
    wait(
        lambda: all(p.status == "ACTIVE" for p in client.list_ports()),
        300,
        "every port to be bound",
    )
    return lab, lab.state()


def _mac(n: int, k: int) -> str:
    return f"fa:16:3d:{n & 255:02x}:{(k >> 8) & 255:02x}:{k & 255:02x}"


def _ip(index: int) -> str:
    """Remote ports' addresses: only ever ARP targets in flows, unique within a network."""
    return f"198.19.{150 + index // 250}.{index % 250 + 2}"


def wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise FlowkeeperError(f"benchmark: timed out waiting for {what}")
        time.sleep(0.25)


def flow_count(lab: Lab, state: LabState, host: str) -> int:
    """The agent's own flows on the host (MAC-learned flows, which come and go, excluded)."""
    h = state.host(host)
    mask = f"cookie={COOKIE_TAG:#x}/{(0xFFFF << 48) | (1 << 47):#x}"
    return sum(lab.bridge(h, b).flow_count(mask) for b in ("br-int", "br-tun"))
