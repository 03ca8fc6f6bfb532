"""Snapshot restore alone vs `ovs-ofctl replace-flows --bundle` of the same flows (P2, P3).

Both load the same flows into the same empty OVS: the snapshot restore reads its files
from disk (checksums, partitions, journal) and installs them; the ovs-save way replaces
each bridge's flows from a flow file, one bridge after the other.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowkeeper.agent.ovsside import HostOvs
from flowkeeper.agent.restore import restore
from flowkeeper.errors import FlowkeeperError
from flowkeeper.flows.flowset import FlowSet
from flowkeeper.lab.lab import Lab, UpOptions
from flowkeeper.lab.state import HostState
from flowkeeper.naming import BR_INT, BR_TUN
from flowkeeper.ovs.ofctl import OfctlBridge
from flowkeeper.pipeline.build import build_flows
from flowkeeper.pipeline.tables import cookie_for
from flowkeeper.pipeline.view import HostView, NetworkView, RemotePort, tunnel_peers
from flowkeeper.snapshot.content import SnapshotData, flow_line
from flowkeeper.snapshot.partition import PartitionIndex
from flowkeeper.snapshot.store import SnapshotStore

Progress = Callable[[str], None]
NETWORKS = 10
PEERS = 100
IPS_PER_PORT = 3


def synthetic_view(flows_wanted: int) -> HostView:
    """About `flows_wanted` flows: remote ports (5 flows each) on NETWORKS networks."""
    nets = tuple(NetworkView(f"net{n}", "vxlan", 7000 + n, n + 1) for n in range(NETWORKS))
    ports = []
    for k in range(flows_wanted // (2 + IPS_PER_PORT)):
        n = k % NETWORKS
        ips = tuple(_ip(k, j) for j in range(IPS_PER_PORT))
        ports.append(
            RemotePort(
                f"r{k}", f"net{n}", _mac(k), f"198.18.{100 + k % PEERS // 250}.{k % PEERS + 1}", ips
            )
        )
    return HostView("198.18.0.2", True, True, cookie_for(1), nets, (), tuple(ports))


def _mac(k: int) -> str:
    return f"fa:16:3c:{(k >> 16) & 255:02x}:{(k >> 8) & 255:02x}:{k & 255:02x}"


def _ip(k: int, j: int) -> str:
    index = k * IPS_PER_PORT + j
    return f"198.{18 + (index >> 16) % 2}.{(index >> 8) & 255}.{index & 255}"


def _snapshot(view: HostView, flows: FlowSet, directory: Path) -> SnapshotData:
    data = SnapshotData(
        revision=1,
        generation=1,
        tunnels=sorted(tunnel_peers(view)),
        vlans={n.id: n.vlan for n in view.networks},
    )
    for flow in flows:
        key, line = flow_line(flow)
        data.flows.setdefault(flow.bridge, {})[key] = line
    index = PartitionIndex(
        by_vlan={n.vlan: n.id for n in view.networks},
        by_segment={n.segmentation_id: n.id for n in view.networks},
    )
    SnapshotStore(directory).write(data, index)
    return data


def _empty(host: HostState) -> None:
    for bridge in (BR_INT, BR_TUN):
        subprocess.run(
            ["ovs-ofctl", "-O", "OpenFlow15", "del-flows", f"unix:{host.mgmt(bridge)}"],
            check=True,
            capture_output=True,
            timeout=120,
        )


def ovs_save_replace(host: HostState, lines: dict[str, list[str]]) -> float:
    """What ovs-save does on restart: replace-flows --bundle, one bridge after the other."""
    start = time.monotonic()
    for bridge in (BR_INT, BR_TUN):
        OfctlBridge(bridge, host.mgmt(bridge), timeout=600).replace_lines(lines.get(bridge, []))
    return time.monotonic() - start


def _restore(ovs: HostOvs, directory: Path) -> int:
    report = SnapshotStore(directory).load()
    if report.data is None:
        raise FlowkeeperError(f"benchmark snapshot unreadable: {report.problems}")
    return restore(ovs, report.data, "198.18.0.2").restored


def run(sizes: list[int], repeats: int, lab_dir: Path, progress: Progress) -> dict[str, Any]:
    lab = Lab(lab_dir, progress=progress)
    lab.down()
    state = lab.up(UpOptions(hosts=1, vms_per_host=0, name="fkrst", agents=False))
    host = state.hosts[0]
    results = []
    try:
        ovs = HostOvs(f"unix:{host.db_sock}", Path(host.db_sock).parent)
        for size in sizes:
            view = synthetic_view(size)
            flows = build_flows(view)
            ovs.ensure_tunnels(tunnel_peers(view), view.tunnel_ip)
            with tempfile.TemporaryDirectory(dir=lab_dir) as tmp:
                _snapshot(view, flows, Path(tmp))
                times: dict[str, list[float]] = {"snapshot-restore": [], "ofctl-replace": []}
                for rep in range(repeats):
                    for method, runs in times.items():
                        _empty(host)
                        start = time.perf_counter()
                        if method == "snapshot-restore":
                            _restore(ovs, Path(tmp))
                        else:
                            ovs_save_replace(
                                host,
                                {
                                    b: [f.render() for f in flows.for_bridge(b)]
                                    for b in (BR_INT, BR_TUN)
                                },
                            )
                        runs.append(time.perf_counter() - start)
                        got = sum(lab.bridge(host, b).flow_count() for b in (BR_INT, BR_TUN))
                        if got != len(flows):
                            raise FlowkeeperError(f"{method}: {got} flows, not {len(flows)}")
                        progress(
                            f"{method:16} {len(flows):>7} flows run {rep + 1}: {runs[-1]:.3f}s"
                        )
            med = {m: statistics.median(v) for m, v in times.items()}
            results.append(
                {
                    "flows": len(flows),
                    "tunnels": len(tunnel_peers(view)),
                    "snapshot_restore_s": round(med["snapshot-restore"], 4),
                    "ofctl_replace_s": round(med["ofctl-replace"], 4),
                    "ratio_restore_to_ofctl": round(
                        med["snapshot-restore"] / med["ofctl-replace"], 3
                    ),
                    "runs": {m: [round(x, 4) for x in v] for m, v in times.items()},
                }
            )
        ovs.close()
    finally:
        lab.down()
    return {"benchmark": "restore", "repeats": repeats, "results": results}
