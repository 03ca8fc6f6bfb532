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

Each phase runs on one control-plane configuration: a store (the lab's SQLite file or a
3-member etcd cluster) and N servers on it. The virtual hosts are spread over the servers
(one simulated-agent process per server), the real hosts' agents start at servers 1 and
2, and the timed port creates go to the servers in turn, so a port's path crosses servers.
After the latency run, in the same lab:
  - throughput: `clients` concurrent API clients (spread over the servers) create
    `throughput_ports` ports on the virtual hosts; ports acknowledged per second;
  - memory: each server's RSS before that burst and after its ports are all ACTIVE; the
    mean of the servers' deltas divided by the ports created;
  - the physical limit: the store's own raw transaction rate on this machine (see
    flowkeeper.bench.rawtxn), against the same etcd cluster or on the same filesystem.
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

from flowkeeper.bench import rawtxn, throughput
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
# The ports of this bench go without port security (no default group, no member
# messages): it measures the L2 control plane, as its earlier runs in docs/ did; the
# firewall has `bench firewall`.
PORT_SECURITY = False


@dataclass(frozen=True)
class Config:
    """One control-plane configuration of a phase."""

    store: str = "sqlite"
    servers: int = 1
    clients: int = 32
    throughput_ports: int = 2000
    raw_seconds: float = 5.0

    @property
    def label(self) -> str:
        return f"{self.store} x{self.servers}"


@dataclass
class Phase:
    hosts: int
    ports: int
    hosts_per_network: int
    config: Config = field(default_factory=Config)
    latencies_ms: list[float] = field(default_factory=list)
    burst: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
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
        rate = self.burst.get("ports_per_s")
        raw_rate = self.raw.get("txn_per_s")
        return {
            "store": self.config.store,
            "servers": self.config.servers,
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
            "throughput": self.burst,
            "memory": self.memory,
            "raw_store": self.raw,
            "throughput_to_raw": round(rate / raw_rate, 3) if rate and raw_rate else None,
        }


def _pct(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    idx = min(len(values) - 1, max(0, math.ceil(pct / 100 * len(values)) - 1))
    return round(values[idx], 2)


def run(
    sizes: list[int],
    ports: int,
    per_network: int,
    lab_dir: Path,
    progress: Progress,
    *,
    configs: list[Config] | None = None,
) -> dict[str, Any]:
    phases = []
    for config in configs or [Config()]:
        for size in sizes:
            phase = Phase(size, ports, per_network, config)
            _run_phase(phase, lab_dir, progress)
            phases.append(phase.summary())
            progress(
                f"{config.label}, {size} hosts: p99 {phases[-1]['latency_ms']['p99']} ms, "
                f"{phases[-1]['hosts_reached_per_port_event']} hosts per port event "
                f"(fan-out to all: {phases[-1]['fanout_to_all_per_port_event']}), "
                f"{phase.burst.get('ports_per_s')} creates/s, "
                f"raw {phase.raw.get('txn_per_s')} txn/s"
            )
    return {"benchmark": "controlplane", "phases": phases}


def _run_phase(phase: Phase, lab_dir: Path, progress: Progress) -> None:
    lab = Lab(lab_dir, progress=progress)
    lab.down()
    config = phase.config
    opts = UpOptions(
        hosts=REAL_HOSTS,
        vms_per_host=1,
        networks=1,
        name="fkbc",
        store=config.store,
        servers=config.servers,
        virtual_hosts=phase.hosts - REAL_HOSTS,  # spread over the servers
    )
    state = lab.up(opts)
    try:
        client = lab.client(state)
        virtual = phase.hosts - REAL_HOSTS
        feed = Path(state.dir) / "simhosts.ndjson"
        members = _make_networks(client, state, phase, virtual)
        progress(f"{phase.hosts} hosts registered, {len(members)} networks; seeding ports")
        wait(lambda: all(p.status == "ACTIVE" for p in client.list_ports()), 120, "seed ports")
        phase.stats_before = _stats(state)
        _measure(
            lab, state, client=client, phase=phase, members=members, feed=feed, progress=progress
        )
        phase.stats_after = _stats(state)
        _throughput(lab, state, phase, members, progress)
        phase.raw = _raw(lab, state, config, progress)
    finally:
        services.stop_simhosts(state)
        lab.down()


def _stats(state: LabState) -> dict[str, Any]:
    """/v1/stats of the control plane: every server sees every event (the event counts and
    the fan-out-to-all figure are server 1's), and each delivers to its own watchers (the
    hosts reached and messages sent are the servers' sum)."""
    token = services.ensure_token(state).read_text().strip()
    each = [Client(url, token, ca=state.ca or None).stats() for url in state.servers]
    out = dict(each[0])
    out["port_events"] = dict(each[0]["port_events"])
    out["port_events"]["hosts_delivered_total"] = sum(
        s["port_events"]["hosts_delivered_total"] for s in each
    )
    out["messages_sent"] = sum(s["messages_sent"] for s in each)
    return out


def _throughput(
    lab: Lab, state: LabState, phase: Phase, members: dict[str, list[str]], progress: Progress
) -> None:
    config = phase.config
    client = lab.client(state)
    placement = [(n, h) for n, hosts in members.items() for h in hosts if h.startswith("v")]
    pids = {i: state.pids[services.server_key(i)] for i in range(1, config.servers + 1)}
    before = {i: throughput.rss_kib(pid) for i, pid in pids.items()}
    progress(
        f"throughput: {config.clients} clients, {config.throughput_ports} port creates "
        f"over {config.servers} server(s)"
    )
    token = services.ensure_token(state).read_text().strip()
    burst = throughput.create_burst(
        state.servers,
        token,
        placement,
        config.throughput_ports,
        clients=config.clients,
        ca=state.ca or None,
    )
    phase.burst = burst.summary()
    acked = set(burst.acked)
    wait(
        lambda: acked <= {p.id for p in client.list_ports() if p.status == "ACTIVE"},
        180,
        "the throughput ports to be ACTIVE",
    )
    after = {i: throughput.rss_kib(pid) for i, pid in pids.items()}
    deltas = [after[i] - before[i] for i in pids]
    phase.memory = {
        "rss_before_kib": before,
        "rss_after_kib": after,
        "ports": len(acked),
        "kib_per_port": round(sum(deltas) / len(deltas) / len(acked), 2) if acked else None,
    }


def _raw(lab: Lab, state: LabState, config: Config, progress: Progress) -> dict[str, Any]:
    """The store's own transaction rate on this machine, in the same lab."""
    if config.store == "etcd":
        progress(f"raw etcd: {config.clients} concurrent transaction loops")
        rate = rawtxn.etcd_txn_rate(lab.etcd().endpoints, config.clients, config.raw_seconds)
    else:
        progress("raw sqlite: commits in a tight loop")
        rate = rawtxn.sqlite_commit_rate(Path(state.dir) / "server", config.raw_seconds)
    return rate.summary()


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
                client.create_port(
                    net_id,
                    host,
                    _mac(n, i, 0),
                    name=f"seed-{host}",
                    port_security_enabled=PORT_SECURITY,
                )
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
    writers = [client] + [
        Client(url, client.token, ca=state.ca or None) for url in state.servers[1:]
    ]
    for k in range(phase.ports):
        net_id = nets[k % len(nets)]
        hosts = members[net_id]
        vhosts = [h for h in hosts if h.startswith("v")]
        owner = vhosts[(k // len(nets)) % len(vhosts)]
        others = [h for h in hosts if h != owner]
        mac = _mac(200 + k // 256, k % 256, 1)
        start = time.time()
        port = writers[k % len(writers)].create_port(
            net_id, owner, mac, name=f"bench-{k}", port_security_enabled=PORT_SECURITY
        )
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
