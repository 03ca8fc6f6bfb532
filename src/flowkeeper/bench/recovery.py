"""`bench recovery`: a host reboot at 4,000 ports / 20,000+ flows, each recovery method side
by side in one run (P1, P2), then snapshot restore at 200,000 flows (P3).

For every method the measured host h1 loses power (kill -9 of OVS and agent, VM NICs gone)
and boots again while probes run every 10 ms from each network's VM on h2 to its VM on h1.
Recovery = from ovs-vswitchd's start to the first reply of the LAST probe pair.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowkeeper.bench import topology
from flowkeeper.bench.probes import PROBE_INTERVAL, start_probes
from flowkeeper.bench.restore import ovs_save_replace
from flowkeeper.bench.topology import TopologySpec
from flowkeeper.lab import services
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.probe import ProbeResult
from flowkeeper.lab.state import LabState
from flowkeeper.naming import BR_INT, BR_TUN

Progress = Callable[[str], None]
METHODS = ("snapshot", "cold-resync", "ofctl-replace", "port-by-port")
_MAC = re.compile(r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}")


def recovered_at(res: ProbeResult, after: float) -> float | None:
    """Unix time of the first probe sent after `after` that got its reply."""
    for offset, rtt in res.timeline:
        sent = res.start_unix + offset
        if sent >= after and rtt is not None:
            return sent
    return None


def reference_flows(lab: Lab, state: LabState) -> dict[str, list[str]]:
    """h1's flows in steady state, as ovs-save would save them (names, not ofports)."""
    h1 = state.host("h1")
    return {b: [f.render() for f in lab.bridge(h1, b).dump_flows()] for b in (BR_INT, BR_TUN)}


def _port_by_port(
    lab: Lab, state: LabState, flows: dict[str, list[str]], limit_s: float
) -> dict[str, Any]:
    """Neutron-style cold rebuild: per port, ask the server for its details, then install
    that port's flows with their own ovs-ofctl call. Stops at `limit_s` (bounded)."""
    h1 = state.host("h1")
    client = lab.client(state)
    ports = client.list_ports()
    per_port: dict[str, list[tuple[str, str]]] = {p.id: [] for p in ports}
    by_mac = {p.mac: p.id for p in ports}
    shared: list[tuple[str, str]] = []
    for bridge, lines in flows.items():
        for line in lines:
            owners = [by_mac[m] for m in _MAC.findall(line) if m in by_mac]
            (per_port[owners[0]] if owners else shared).append((bridge, line))
    order = list(per_port.items())
    random.Random(1).shuffle(order)  # noqa: S311 - the agent meets ports in no useful order
    start = time.monotonic()
    done = 0
    for bridge in (BR_INT, BR_TUN):
        _ofctl_add(h1.mgmt(bridge), [ln for b, ln in shared if b == bridge])
    for pid, items in order:
        if time.monotonic() - start > limit_s:
            break
        client.get_port(pid)
        for bridge in (BR_INT, BR_TUN):
            lines = [ln for b, ln in items if b == bridge]
            if lines:
                _ofctl_add(h1.mgmt(bridge), lines)
        done += 1
    elapsed = time.monotonic() - start
    return {
        "ports_done": done,
        "ports": len(per_port),
        "seconds": round(elapsed, 3),
        "extrapolated_s": round(elapsed * len(per_port) / max(done, 1), 1),
    }


def _ofctl_add(mgmt: str, lines: list[str]) -> None:
    if lines:
        subprocess.run(
            ["ovs-ofctl", "-O", "OpenFlow15", "--bundle", "add-flows", f"unix:{mgmt}", "-"],
            input="\n".join(lines) + "\n",
            text=True,
            check=True,
            capture_output=True,
            timeout=120,
        )


def measure(
    lab: Lab,
    method: str,
    *,
    flows: dict[str, list[str]],
    pairs: list[tuple[str, str]],
    progress: Progress,
    limit_s: float,
) -> dict[str, Any]:
    """One power loss and boot of h1, recovered by `method`; probes throughout."""
    state = lab.state()
    seconds = 30.0 if method != "port-by-port" else limit_s + 30
    probes = start_probes(lab, state, pairs, seconds)
    time.sleep(1.0)
    lab.power_off("h1")
    time.sleep(0.5)
    detail: dict[str, Any] = {}
    state = lab.state()
    if method == "cold-resync":
        shutil.rmtree(Path(state.host("h1").path("agent")) / "snapshot", ignore_errors=True)
    agent = method in ("snapshot", "cold-resync")
    times = lab.boot("h1", agent=agent)
    state = lab.state()
    if method == "ofctl-replace":
        detail["replace_flows_s"] = round(ovs_save_replace(state.host("h1"), flows), 4)
    elif method == "port-by-port":
        detail.update(_port_by_port(lab, state, flows, limit_s))
    results = [p.result() for p in probes]
    ups = [recovered_at(r, times.ovs_started) for r in results]
    recovery = None if None in ups else max(u for u in ups if u is not None) - times.ovs_started
    if not agent:
        services.start_agent(state, state.host("h1"))
        state.save()
    progress(f"{method}: recovered in {'never' if recovery is None else f'{recovery:.3f} s'}")
    return {
        "method": method,
        "recovery_s": None if recovery is None else round(recovery, 4),
        "vifs_plugged_after_s": round(times.vifs_plugged - times.ovs_started, 4),
        "pairs": len(pairs),
        "pairs_never_recovered": sum(u is None for u in ups),
        "probe_loss": sum(r.lost for r in results),
        "timeline": _timeline(results, times.ovs_started),
        **detail,
    }


def _timeline(results: list[ProbeResult], zero: float) -> list[tuple[float, float]]:
    """(seconds since OVS start, share of probe pairs answered) per 10 ms slot."""
    slots: dict[int, list[int]] = {}
    for res in results:
        for offset, rtt in res.timeline:
            slot = int((res.start_unix + offset - zero) / PROBE_INTERVAL)
            slots.setdefault(slot, []).append(rtt is not None)
    return [
        (round(s * PROBE_INTERVAL, 3), round(sum(v) / len(v), 3)) for s, v in sorted(slots.items())
    ]


def run(
    spec: TopologySpec,
    methods: list[str],
    lab_dir: Path,
    progress: Progress,
    port_by_port_limit: float = 120.0,
) -> dict[str, Any]:
    lab, state = topology.build(lab_dir, spec, progress, name="fkrec")
    try:
        h1 = "h1"
        nflows = _settle(lab, state, h1)
        progress(f"h1 holds {nflows} flows for {len(lab.client(state).list_ports())} ports")
        flows = reference_flows(lab, state)
        pairs = [(f"p{n}h2", f"p{n}h1") for n in range(spec.networks)]
        runs = []
        for method in methods:
            runs.append(
                measure(
                    lab,
                    method,
                    flows=flows,
                    pairs=pairs,
                    progress=progress,
                    limit_s=port_by_port_limit,
                )
            )
            topology.wait(
                lambda: topology.flow_count(lab, lab.state(), h1) >= nflows,
                120,
                "h1 back in steady state",
            )
            time.sleep(2)
        return {
            "benchmark": "recovery",
            "ports": spec.ports,
            "flows_on_h1": nflows,
            "probe_interval_s": PROBE_INTERVAL,
            "runs": runs,
        }
    finally:
        services.stop_simhosts(lab.state())
        lab.down()


def _settle(lab: Lab, state: LabState, host: str, timeout: float = 180) -> int:
    """Wait until the host's flow count stops changing; return it."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        count = topology.flow_count(lab, state, host)
        if count == last:
            return count
        last = count
        time.sleep(2)
    return last
