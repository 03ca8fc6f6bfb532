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
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from flowkeeper.bench import topology
from flowkeeper.bench.recovery import PROBE_INTERVAL, _timeline, start_probes
from flowkeeper.bench.topology import TopologySpec
from flowkeeper.lab import services, upgrade
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.probe import ProbeResult
from flowkeeper.naming import BR_INT, BR_TUN

Progress = Callable[[str], None]
SCENARIOS = (
    "agent-graceful",
    "agent-kill9",
    "flush-and-rebuild",
    "ovs-kill9",
    "ovs-restart-frw",
    "ovs-hot-upgrade",
)
# The hot upgrade moves h1's VMs to a new host slot (h1b) for good: it always runs last.
LAST = "ovs-hot-upgrade"
HOT_UPGRADE_SETTLE_S = 1.5


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
    lab: Lab, scenario: str, pairs: list[tuple[str, str]], progress: Progress
) -> dict[str, Any]:
    if scenario == LAST:
        return _measure_hot_upgrade(lab, pairs, progress)
    state = lab.state()
    probes = start_probes(lab, state, pairs, seconds=15.0)
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


def _measure_hot_upgrade(
    lab: Lab, pairs: list[tuple[str, str]], progress: Progress
) -> dict[str, Any]:
    """The new slot is started and synced first; probes run over the VM-by-VM cut-over."""
    report = upgrade.prepare(lab, "h1", progress=progress)
    # Agents at 20,000 flows need a while per event on this 2-core machine: VMs move
    # HOT_UPGRADE_SETTLE_S apart so each cut-over is measured on its own, not behind a
    # backlog of the previous ones (DiDi's upgrades also take seconds per host).
    seconds = 2.0 + len(pairs) * (HOT_UPGRADE_SETTLE_S + 0.2) + 5.0
    probes = start_probes(lab, lab.state(), pairs, seconds=seconds)
    time.sleep(2.0)
    began = time.time()
    upgrade.cut_over(lab, report, settle=HOT_UPGRADE_SETTLE_S, progress=progress)
    out = _summary(LAST, pairs, [p.result() for p in probes], began)
    out["in_sync_after_s"] = None  # the new slot was in sync before the first VM moved
    out["new_slot_ready_s"] = round(report.ready_s, 3)
    out["cut_over_total_s"] = round(report.total_s, 3)
    out["moves"] = [asdict(m) for m in report.moves]
    progress(
        f"{LAST}: lost {out['lost']}/{out['sent']}, longest gap {out['max_gap_ms']:.0f} ms "
        f"(median {out['median_gap_ms']:.0f} ms); new slot ready in {report.ready_s:.2f} s, "
        f"{len(report.moves)} VMs moved in {report.total_s:.2f} s"
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
        ordered = [x for x in scenarios if x != LAST] + [x for x in scenarios if x == LAST]
        for scenario in ordered:
            runs.append(measure(lab, scenario, pairs, progress))
            if scenario == LAST:
                break
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
