"""Control-plane benchmark: port create -> flows on every relevant host (P6), and how many
hosts each port event reaches, targeted vs fan-out to all (P7).

Topology per phase: 2 real lab hosts (real agents, real OVS) plus virtual hosts (simulated
agents, see flowkeeper.lab.simhosts) up to N hosts in all; networks of K hosts each, every
host a member of one network (the real hosts share network 1). Then ports are created one
at a time on virtual hosts, and for each we time, from just before the API call:
  - on every other virtual member: the arrival of the port as ACTIVE in its watch stream
    (a virtual host has no dataplane: receiving the FDB entry is its "flows present");
  - on every real member: the moment its br-tun holds the unicast flow for the MAC
    (polled with ovs-ofctl every 5 ms).
The port's latency is the slowest relevant host. Message counts come from /v1/stats.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowkeeper.bench.topology import wait
from flowkeeper.client import Client
from flowkeeper.lab import services
from flowkeeper.lab.lab import Lab, UpOptions
from flowkeeper.lab.simhosts import virtual_host_name
from flowkeeper.lab.state import LabState
from flowkeeper.naming import BR_TUN

Progress = Callable[[str], None]
REAL_HOSTS = 2
PORT_TIMEOUT_S = 10.0


@dataclass
class Phase:
    hosts: int
    ports: int
    hosts_per_network: int
    latencies_ms: list[float] = field(default_factory=list)
    timeouts: int = 0
    stats_before: dict[str, Any] = field(default_factory=dict)
    stats_after: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        before = self.stats_before["port_events"]
        after = self.stats_after["port_events"]
        events = after["count"] - before["count"]
        delivered = after["hosts_delivered_total"] - before["hosts_delivered_total"]
        registered = after["hosts_registered_total"] - before["hosts_registered_total"]
        messages = self.stats_after["messages_sent"] - self.stats_before["messages_sent"]
        return {
            "hosts": self.hosts,
            "real_hosts": REAL_HOSTS,
            "hosts_per_network": self.hosts_per_network,
            "ports_created": self.ports,
            "timeouts": self.timeouts,
            "latency_ms": {
                "p50": _pct(lat, 50),
                "p90": _pct(lat, 90),
                "p99": _pct(lat, 99),
                "max": lat[-1] if lat else None,
            },
            "port_events": events,
            "hosts_reached_per_port_event": round(delivered / events, 2) if events else None,
            "fanout_to_all_per_port_event": round(registered / events, 2) if events else None,
            "reduction_vs_fanout_to_all": round(registered / delivered, 1) if delivered else None,
            "watch_messages_sent": messages,
        }


def _pct(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    idx = min(len(values) - 1, max(0, math.ceil(pct / 100 * len(values)) - 1))
    return round(values[idx], 2)


def run(
    sizes: list[int], ports: int, per_network: int, lab_dir: Path, progress: Progress
) -> dict[str, Any]:
    phases = []
    for size in sizes:
        phase = Phase(size, ports, per_network)
        _run_phase(phase, lab_dir, progress)
        phases.append(phase.summary())
        progress(
            f"{size} hosts: p99 {phases[-1]['latency_ms']['p99']} ms, "
            f"{phases[-1]['hosts_reached_per_port_event']} hosts per port event "
            f"(fan-out to all: {phases[-1]['fanout_to_all_per_port_event']})"
        )
    return {"benchmark": "controlplane", "phases": phases}


def _run_phase(phase: Phase, lab_dir: Path, progress: Progress) -> None:
    lab = Lab(lab_dir, progress=progress)
    lab.down()
    state = lab.up(UpOptions(hosts=REAL_HOSTS, vms_per_host=1, networks=1, name="fkbc"))
    try:
        client = lab.client(state)
        virtual = phase.hosts - REAL_HOSTS
        feed = Path(state.dir) / "simhosts.ndjson"
        services.start_simhosts(state, virtual, feed)
        wait(lambda: len(client.list_hosts()) >= phase.hosts, 120, "virtual hosts")
        members = _make_networks(client, state, phase, virtual)
        progress(f"{phase.hosts} hosts registered, {len(members)} networks; seeding ports")
        wait(lambda: all(p.status == "ACTIVE" for p in client.list_ports()), 120, "seed ports")
        phase.stats_before = client.stats()
        _measure(
            lab, state, client=client, phase=phase, members=members, feed=feed, progress=progress
        )
        phase.stats_after = client.stats()
    finally:
        services.stop_simhosts(state)
        lab.down()


def _make_networks(
    client: Client, state: LabState, phase: Phase, virtual: int
) -> dict[str, list[str]]:
    """network id -> member hosts; every virtual host gets one seed port on its network."""
    names = [h.name for h in state.hosts] + [virtual_host_name(i) for i in range(virtual)]
    members: dict[str, list[str]] = {}
    for n in range(math.ceil(len(names) / phase.hosts_per_network)):
        hosts = names[n * phase.hosts_per_network : (n + 1) * phase.hosts_per_network]
        if n == 0:
            net_id = state.networks["1"]
        else:
            net_id = client.create_network(f"bench{n}", "vxlan", segmentation_id=5000 + n).id
        members[net_id] = hosts
        for i, host in enumerate(hosts):
            if host.startswith("v"):
                client.create_port(net_id, host, _mac(n, i, 0), name=f"seed-{host}")
    return members


def _mac(n: int, i: int, k: int) -> str:
    return f"fa:16:3f:{n & 255:02x}:{i & 255:02x}:{k & 255:02x}"


def _measure(
    lab: Lab,
    state: LabState,
    *,
    client: Client,
    phase: Phase,
    members: dict[str, list[str]],
    feed: Path,
    progress: Progress,
) -> None:
    nets = list(members)
    offset = feed.stat().st_size
    for k in range(phase.ports):
        net_id = nets[k % len(nets)]
        hosts = members[net_id]
        vhosts = [h for h in hosts if h.startswith("v")]
        owner = vhosts[(k // len(nets)) % len(vhosts)]
        others = [h for h in hosts if h != owner]
        mac = _mac(200 + k // 256, k % 256, 1)
        start = time.time()
        port = client.create_port(net_id, owner, mac, name=f"bench-{k}")
        done: dict[str, float] = {}
        deadline = time.monotonic() + PORT_TIMEOUT_S
        while len(done) < len(others) and time.monotonic() < deadline:
            offset = _read_feed(feed, offset, port.id, done)
            for host in others:
                if (
                    host not in done
                    and not host.startswith("v")
                    and _has_flow(lab, state, host, mac)
                ):
                    done[host] = time.time()
            time.sleep(0.005)
        if len(done) < len(others):
            phase.timeouts += 1
        elif others:
            phase.latencies_ms.append((max(done.values()) - start) * 1000)
        if (k + 1) % 50 == 0:
            progress(f"  {k + 1}/{phase.ports} ports measured")


def _read_feed(feed: Path, offset: int, port_id: str, done: dict[str, float]) -> int:
    with open(feed, encoding="utf-8") as f:
        f.seek(offset)
        chunk = f.read()
    complete = chunk[: chunk.rfind("\n") + 1]
    for line in complete.splitlines():
        rec = json.loads(line)
        if rec["id"] == port_id and rec["status"] == "ACTIVE" and rec["host"] not in done:
            done[rec["host"]] = rec["t"]
    return offset + len(complete.encode())


def _has_flow(lab: Lab, state: LabState, host: str, mac: str) -> bool:
    h = state.host(host)
    out = subprocess.run(
        [
            "ovs-ofctl",
            "-O",
            "OpenFlow15",
            "--no-stats",
            "dump-flows",
            f"unix:{h.mgmt(BR_TUN)}",
            f"table=20,dl_dst={mac}",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout
    return mac in out
