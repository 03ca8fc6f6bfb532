"""`bench restart`: agent restarts and OVS restarts under traffic, side by side with the
old way (flush the tables, rebuild from the control plane).

Probes run every 10 ms from each network's VM on h2 to its VM on h1 (the restarted host),
while the host holds the benchmark topology's flows. For each scenario: packets lost, the
longest gap per VM pair (the per-VM interruption), and the time until the agent is in sync
again.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from flowkeeper.bench import topology
from flowkeeper.bench.probes import PROBE_INTERVAL, start_probes
from flowkeeper.bench.recovery import _timeline
from flowkeeper.bench.topology import TopologySpec
from flowkeeper.lab import services
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.probe import ProbeResult
from flowkeeper.naming import BR_INT, BR_TUN

Progress = Callable[[str], None]
# "ovs-hot-upgrade" (the new switch as a host of its own) is gone: twin-slot scenarios replace it.
SCENARIOS = (
    "agent-graceful",
    "agent-kill9",
    "flush-and-rebuild",
    "ovs-kill9",
    "ovs-restart-frw",
)


def _log_time(line: str) -> float:
    stamp = line[:23]
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _synced_after(log: Path, after: float, timeout: float = 120.0) -> float | None:
    """Unix time of the first 'in sync' / 'lost its flows' (OVS restored) line after `after`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            marker = "in sync at revision" in line or "lost its flows" in line
            if marker and _log_time(line) >= after:
                return _log_time(line)
        time.sleep(0.2)
    return None


def _act(lab: Lab, scenario: str) -> float:
    """Do the restart; returns the unix time it began."""
    state = lab.state()
    h1 = state.host("h1")
    began = time.time()
    if scenario == "agent-graceful":
        lab.restart_agent("h1")
    elif scenario == "agent-kill9":
        lab.restart_agent("h1", hard=True)
    elif scenario == "flush-and-rebuild":
        services.stop_agent(h1)
        for bridge in (BR_INT, BR_TUN):
            lab.bridge(h1, bridge).delete_all()
        shutil.rmtree(Path(h1.path("agent")) / "snapshot", ignore_errors=True)
        services.start_agent(state, h1)
        state.save()
    elif scenario == "ovs-kill9":
        lab.restart_ovs("h1", hard=True, flow_restore_wait=False)
    elif scenario == "ovs-restart-frw":
        lab.restart_ovs("h1", hard=False, flow_restore_wait=True)
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    return began


def measure(
    lab: Lab,
    scenario: str,
    pairs: list[tuple[str, str]],
    progress: Progress,
    *,
    interval: float = PROBE_INTERVAL,
) -> dict[str, Any]:
    """One scenario under probes, every `interval` s per pair, from 2 s before it."""
    state = lab.state()
    probes = start_probes(lab, state, pairs, seconds=15.0, interval=interval)
    time.sleep(2.0)
    began = _act(lab, scenario)
    log = Path(lab.state().host("h1").dir) / "agent.log"
    synced = _synced_after(log, began)
    out = _summary(scenario, pairs, [p.result() for p in probes], began)
    out["in_sync_after_s"] = None if synced is None else round(synced - began, 3)
    progress(
        f"{scenario}: lost {out['lost']}/{out['sent']}, longest gap {out['max_gap_ms']:.0f} ms, "
        f"in sync after {out['in_sync_after_s']} s"
    )
    return out


def plot_window(runs: list[dict[str, Any]]) -> float:
    """Seconds of timeline to plot: 10, or up to 30 to show a whole VM-by-VM cut-over."""
    ends = [float(t) for run in runs for t, _share in run["timeline"]]
    return min(30.0, max([10.0, *ends]))


def _summary(
    scenario: str, pairs: list[tuple[str, str]], results: list[ProbeResult], began: float
) -> dict[str, Any]:
    gaps = sorted(r.max_gap_ms for r in results)
    return {
        "scenario": scenario,
        "pairs": len(pairs),
        "lost": sum(r.lost for r in results),
        "sent": sum(r.sent for r in results),
        "max_gap_ms": gaps[-1],
        "median_gap_ms": gaps[len(gaps) // 2],
        "per_vm_gap_ms": [round(r.max_gap_ms, 1) for r in results],
        "max_outage_ms": max((r.max_outage_ms for r in results), default=0.0),
        "per_vm_outage_ms": [round(r.max_outage_ms, 1) for r in results],
        "timeline": _timeline(results, began),
    }


def run(
    spec: TopologySpec, scenarios: list[str], lab_dir: Path, progress: Progress
) -> dict[str, Any]:
    lab, state = topology.build(lab_dir, spec, progress, name="fkrst")
    try:
        flows = topology.flow_count(lab, state, "h1")
        pairs = [(f"p{n}h2", f"p{n}h1") for n in range(spec.networks)]
        for a, b in pairs:  # warm the underlay neighbour caches
            lab.ping(a, b, count=3, interval=0.05)
        runs = []
        for scenario in scenarios:
            runs.append(measure(lab, scenario, pairs, progress))
            topology.wait(
                lambda: topology.flow_count(lab, lab.state(), "h1") >= flows,
                180,
                "h1 back in steady state",
            )
            time.sleep(2)
        return {
            "benchmark": "restart",
            "flows_on_h1": flows,
            "ports": spec.ports,
            "probe_interval_s": PROBE_INTERVAL,
            "runs": runs,
        }
    finally:
        services.stop_simhosts(lab.state())
        lab.down()
