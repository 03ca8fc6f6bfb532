"""`bench restart --twin`: hot upgrade and crash failover with twin switch slots, side by
side with a plain ovs-vswitchd restart and the kill -9 restore, in one run.

For each size (flows on the measured host h1) and each VM count, two labs of the same
topology are built one after the other:
- a plain lab (one switch per host): `ovs-restart-frw` (a plain vswitchd restart, as
  `ovs-ctl restart` does it) and `ovs-kill9` (the agent restores its flows into the
  restarted vswitchd) under probes, each VM of h1 probed from its peer on h2 every
  10 ms (up to 10 VMs; beyond, every VMs/1000 s: `coarse_interval`);
- a twin-slot lab (`lab up --standby`) per VIF handover asked for (`netns`: a VM's tap
  moves between the slots' namespaces; `steer`: it is in both, and tc in the host's
  hypervisor namespace steers the NIC): `slot-upgrade` (`lab upgrade-ovs h1`, VMs moved
  one at a time) and `slot-failover` (kill -9 of the slot holding the VMs).

Per cut of the upgrade the budget is: the VIF move (the `ip` netns move, the lab's floor;
with steer, the `tc -batch` run),
the bind (the new slot's OVSDB shows the device's ofport), the first answered probe after
the cut began, and whether any flow of the peer host changed during the cut. The ratios
the targets name are computed from numbers of the same run.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flowkeeper.bench import restart, topology
from flowkeeper.bench.fwrestart import log_time
from flowkeeper.bench.probes import PROBE_INTERVAL, start_probes
from flowkeeper.bench.recovery import recovered_at
from flowkeeper.bench.topology import TopologySpec
from flowkeeper.errors import FlowkeeperError
from flowkeeper.lab import services, slots, slotupgrade
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.probe import MAX_SECONDS, ProbeResult, gap_within, outage_within
from flowkeeper.lab.state import HostState, VmState

Progress = Callable[[str], None]
SETTLE_S = 0.3  # between two VMs' cuts
PLAIN = ("ovs-restart-frw", "ovs-kill9")


def peer_flows(lab: Lab, host: str) -> list[str]:
    """A peer's flows by number, without counters or MAC learning (a cut must not change
    one of them)."""
    return slots.flow_dump(lab.state().host(host))


def spec_for(flows: int, vms: int) -> TopologySpec:
    """The topology for about `flows` flows on h1 with `vms` probe VMs per host."""
    if flows >= 2000:
        return TopologySpec(ports=4000, networks=vms, virtual_hosts=100)
    # ~5 flows per remote port: 30 remote ports (on one virtual host per network)
    return TopologySpec(ports=2 * vms + 30, networks=vms, virtual_hosts=vms)


def _pairs(vms: int) -> list[tuple[str, str]]:
    return [(f"p{n}h2", f"p{n}h1") for n in range(vms)]


def _plain(spec: TopologySpec, lab_dir: Path, progress: Progress, name: str) -> dict[str, Any]:
    lab, state = topology.build(lab_dir, spec, progress, name=name)
    try:
        flows = topology.flow_count(lab, state, "h1")
        pairs = _pairs(spec.networks)
        for a, b in pairs:
            lab.ping(a, b, count=3, interval=0.05)
        out: dict[str, Any] = {"flows_on_h1": flows}
        for scenario in PLAIN:
            coarse = coarse_interval(len(pairs))  # the probe rate of the twin lab's phases
            out[scenario] = _slim(restart.measure(lab, scenario, pairs, progress, interval=coarse))
            topology.wait(
                lambda: topology.flow_count(lab, lab.state(), "h1") >= flows,
                180,
                "h1 back in steady state",
            )
            time.sleep(2)
        return out
    finally:
        services.stop_simhosts(lab.state())
        lab.down()


def gap_end(res: ProbeResult, after: float, window: float = 3.0) -> float | None:
    """Unix time of the first answered probe after the last unanswered one sent within
    `window` s of `after` (the first packet through the new slot); None if none was lost
    (then: the first answered probe sent after `after`)."""
    last_lost = None
    for offset, rtt in res.timeline:
        sent = res.start_unix + offset
        if after <= sent <= after + window and rtt is None:
            last_lost = sent
    if last_lost is None:
        return recovered_at(res, after)
    return recovered_at(res, last_lost + 1e-6)


def _slim(run_: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run_.items() if k != "timeline"}


def _gaps(results: list[ProbeResult]) -> list[float]:
    return [round(r.max_gap_ms, 1) for r in results]


def peer_applies(lab: Lab, host: str, since: float) -> int:
    """Flow changes the peer's agent applied since `since` (its 'applied' log lines)."""
    log = Path(lab.state().host(host).path("agent.log"))
    count = 0
    for line in log.read_text().splitlines():
        stamp = log_time(line)
        if stamp is not None and stamp >= since and "applied +" in line:
            count += 1
    return count


FINE_S = 0.001  # the probe interval around a cut
CUT_BOUND_S = 15.0  # per VM, the longest the upgrade's probes may run for (then stopped)
LEAD_S = 0.1  # fine probing before a cut
FAILOVER_FINE_VMS = 4  # VMs probed at FINE_S across a failover (the others every 10 ms)
FAILOVER_FINE_S = 1.0  # fine probing after the kill
BACKGROUND_PPS = 1000  # all VMs' probes outside the fine windows, per second, at most


def coarse_interval(vms: int) -> float:
    """Each VM's probe interval outside its fine window: PROBE_INTERVAL up to 10 VMs, then
    longer, so that the probes' own load is the same at any VM count (at 40 VMs every
    10 ms, the lab's userspace switches dropped probes of every VM at once: their
    underlay sockets overflowed whenever a vswitchd was not scheduled for ~70 ms)."""
    return max(PROBE_INTERVAL, vms / BACKGROUND_PPS)


def _upgrade(lab: Lab, pairs: list[tuple[str, str]], progress: Progress) -> dict[str, Any]:
    """`lab upgrade-ovs h1` step by step, so that the probes cover exactly the cuts:
    restart the empty slot, probe while the VMs move one at a time, restart the other.
    Each VM is probed every 10 ms, and every 1 ms from LEAD_S before its own cut to
    SETTLE_S after it."""
    state = lab.state()
    h1 = state.host("h1")
    slotupgrade.sync_slots(state, h1)
    for slot in ("a", "b"):
        slotupgrade.wait_ready(h1, slot, timeout=120)
    vms = [vm for vm in state.vms if vm.host == "h1"]
    src = vms[0].slot
    dst = slotupgrade.other(src)
    began = time.monotonic()
    restarts = [slotupgrade.restart_slot(state, h1, dst, timeout=120)]
    before = peer_flows(lab, "h2")
    sham = None
    if lab.state().host("h1").hv_ns:  # steer: a no-op cut of each VM first (the floor)
        sham = _cut_phase(lab, pairs, vms, "", progress)
    phase = _cut_phase(lab, pairs, vms, dst, progress)
    applies = peer_applies(lab, "h2", phase.began)
    same = peer_flows(lab, "h2") == before
    restarts.append(slotupgrade.restart_slot(state, h1, src, timeout=120))
    out = phase.summary()
    out.update(
        {
            "sham": None if sham is None else sham.summary(),
            "peer_flow_changes_during_cuts": applies,
            "peer_flows_same_after": same,
            "slot_restarts_ms": [round(r.restart_ms, 1) for r in restarts],
            "total_s": round(time.monotonic() - began, 2),
        }
    )
    return out


@dataclass
class CutPhase:
    moves: list[slotupgrade.SlotMove]
    results: list[ProbeResult]
    pairs: list[tuple[str, str]]
    began: float
    ended: float

    def summary(self) -> dict[str, Any]:
        by_vm = {dst_vm: r for (_src, dst_vm), r in zip(self.pairs, self.results, strict=True)}
        return {
            "cuts": [_cut(move, by_vm.get(move.vm)) for move in self.moves],
            "per_vm_gap_ms": _gaps(self.results),
            "per_vm_outage_ms": _outages(self.results),
            "resolution_ms": FINE_S * 1000,
            "coarse_interval_ms": coarse_interval(len(self.pairs)) * 1000,
            "lost": sum(r.lost for r in self.results),
            "sent": sum(r.sent for r in self.results),
            "duplicated": sum(len(r.duplicated) for r in self.results),
            "cut_phase_s": round(self.ended - self.began, 2),
        }


def _cut_phase(
    lab: Lab, pairs: list[tuple[str, str]], vms: list[VmState], dst: str, progress: Progress
) -> CutPhase:
    """Probe every VM while each is cut over to slot `dst` in turn, every 1 ms from LEAD_S
    before its own cut to SETTLE_S after it. `dst` "": the sham, each VM steered to the
    slot it is in (the same commands, nothing changes on the path): the lab's own floor."""
    state = lab.state()
    h1 = state.host("h1")
    # A bound only: the probes are stopped once the last cut has settled (a loaded machine
    # can take seconds per VM between cuts).
    seconds = min(MAX_SECONDS, 10.0 + len(vms) * CUT_BOUND_S)
    coarse = coarse_interval(len(pairs))
    probes = start_probes(
        lab, state, pairs, seconds=seconds, control=True, fine=FINE_S, interval=coarse
    )
    probe_of = {dst_vm: p for (_src, dst_vm), p in zip(pairs, probes, strict=True)}
    time.sleep(2.0)
    began = time.time()
    moves = []
    for vm in vms:
        vm_now = state.vm(vm.name)
        fine = probe_of.get(vm.name)
        if fine:
            fine.set_interval(FINE_S)
        time.sleep(LEAD_S)
        moves.append(slotupgrade.move_vm(state, h1, vm_now, dst or vm_now.slot))
        what = f"to slot {dst}" if dst else "sham, steered where it is"
        progress(f"slot-upgrade: {vm.name} {what}: {moves[-1].move_ms:.1f} ms")
        time.sleep(SETTLE_S)
        if fine:
            fine.set_interval(coarse)
    ended = time.time()
    for probe in probes:
        probe.stop()
    return CutPhase(moves, [p.result() for p in probes], pairs, began, ended)


def _cut(move: slotupgrade.SlotMove, res: ProbeResult | None) -> dict[str, Any]:
    """One cut's budget: the VIF move, the bind, the first packet through the new slot,
    and the VM's outage and losses in its own fine-probed window."""
    first = gap_end(res, move.started) if res else None
    window = (move.started - LEAD_S, move.started + SETTLE_S)
    return {
        "vm": move.vm,
        "vif_move_ms": round(move.move_ms, 2),
        "overlap_ms": round(move.overlap_ms, 1),
        "break_ms": round(move.break_ms, 2),
        "bind_ms": round(move.ofport_ms, 2),
        "first_packet_ms": None if first is None else round((first - move.started) * 1000, 1),
        "gap_ms": None if res is None else round(res.max_gap_ms, 1),
        # the longest time without a reply inside the fine window (its second half before
        # the cut: the probes are every 1 ms from its start on)
        "window_gap_ms": None
        if res is None
        else round(gap_within(res, move.started - LEAD_S / 2, window[1]) * 1000, 1),
        "outage_ms": None if res is None else round(outage_within(res, *window) * 1000, 1),
        "lost_in_window": None if res is None else lost_within(res, *window),
        "lost_at_ms": None if res is None else lost_offsets(res, move.started, window),
        "sent_in_window": None if res is None else sent_within(res, *window),
        "duplicated_in_window": None if res is None else duplicated_within(res, *window),
    }


def duplicated_within(res: ProbeResult, start_unix: float, end_unix: float) -> int:
    """Pure: extra replies to probes sent inside the window (the VM got a request twice)."""
    return sum(
        1
        for i in res.duplicated
        if i < len(res.timeline) and start_unix <= res.start_unix + res.timeline[i][0] <= end_unix
    )


def lost_offsets(res: ProbeResult, started: float, window: tuple[float, float]) -> list[float]:
    """Pure: when each probe lost inside `window` was sent, in ms from the cut's start
    (a loss before 0 is not the cut's: the cut had not begun)."""
    return [
        round((res.start_unix + t - started) * 1000, 1)
        for t, rtt in res.timeline
        if rtt is None and window[0] <= res.start_unix + t <= window[1]
    ]


def sent_within(res: ProbeResult, start_unix: float, end_unix: float) -> int:
    return sum(1 for t, _rtt in res.timeline if start_unix <= res.start_unix + t <= end_unix)


def lost_within(res: ProbeResult, start_unix: float, end_unix: float) -> int:
    return sum(
        1 for t, rtt in res.timeline if rtt is None and start_unix <= res.start_unix + t <= end_unix
    )


def _outages(results: list[ProbeResult]) -> list[float]:
    return [round(r.max_outage_ms, 1) for r in results]


def _failover(lab: Lab, pairs: list[tuple[str, str]], progress: Progress) -> dict[str, Any]:
    """kill -9 of the slot holding h1's VMs under probes: every 10 ms for each VM, every
    1 ms for the first FAILOVER_FINE_VMS from LEAD_S before the kill to FAILOVER_FINE_S
    after it."""
    state = lab.state()
    h1 = state.host("h1")
    slotupgrade.sync_slots(state, h1)
    for slot in ("a", "b"):
        slotupgrade.wait_ready(h1, slot, timeout=120)
    busy = {vm.slot for vm in state.vms if vm.host == "h1"}
    if len(busy) != 1:
        raise FlowkeeperError(f"bench: h1's VMs are in slots {sorted(busy)}, not in one")
    dead = busy.pop()
    pid = int(Path(h1.slot(dead).path("ovs-vswitchd.pid")).read_text())
    count = len(_failovers(h1))
    coarse = coarse_interval(len(pairs))
    probes = start_probes(
        lab, state, pairs, seconds=8.0, control=True, fine=FINE_S, interval=coarse
    )
    fine = probes[:FAILOVER_FINE_VMS]
    time.sleep(2.0 - LEAD_S)
    for probe in fine:
        probe.set_interval(FINE_S)
    time.sleep(LEAD_S)
    began = time.time()
    os.kill(pid, signal.SIGKILL)  # the lab's own vswitchd; no process start in the timing
    time.sleep(FAILOVER_FINE_S)
    for probe in fine:
        probe.set_interval(coarse)
    results = [p.result() for p in probes]
    records = _failovers(h1)
    record = records[-1] if len(records) > count else {}
    slotupgrade.sync_slots(lab.state(), lab.state().host("h1"))
    back = [gap_end(r, began) for r in results]
    fine_gaps = [
        round(gap_within(r, began - LEAD_S / 2, began + FAILOVER_FINE_S) * 1000, 1)
        for r in results[: len(fine)]
    ]
    progress(
        f"slot-failover: outages {_outages(results)} ms, gaps {_gaps(results)} ms; "
        f"agent's record {record}"
    )
    slotupgrade.wait_ready(lab.state().host("h1"), dead, timeout=120)
    seen = record.get("seen_unix") if record else None
    return {
        "dead_slot": dead,
        "death_seen_after_ms": None if not seen else round((seen - began) * 1000, 2),
        "per_vm_gap_ms": _gaps(results),
        "per_vm_outage_ms": _outages(results),
        "fine_probed_vms": len(fine),
        # the 1 ms VMs' longest time without a reply, from LEAD_S/2 before the kill on
        "fine_window_gap_ms": fine_gaps,
        "resolution_ms": (FINE_S if len(fine) == len(probes) else coarse) * 1000,
        "coarse_interval_ms": coarse * 1000,
        "lost": sum(r.lost for r in results),
        "sent": sum(r.sent for r in results),
        "agent_failover": record,
        "first_packet_ms": [None if t is None else round((t - began) * 1000, 1) for t in back],
    }


def _failovers(host: HostState) -> list[dict[str, Any]]:
    """The failovers the host's agent recorded in its status file."""
    try:
        raw = json.loads(slotupgrade.slots_path(host).read_text())
    except (OSError, ValueError):
        return []
    return list(raw.get("failovers", []))


BASELINE_S = 8.0  # a probe window with no cut: the probes' own longest gaps


def _baseline(lab: Lab, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Probes with nothing happening: the longest gap the machine's load alone makes, and
    the outage the probes measure when nothing is cut (0 unless the lab drops probes),
    the first VM probed every 1 ms for the middle 2 s."""
    coarse = coarse_interval(len(pairs))
    probes = start_probes(
        lab, lab.state(), pairs, seconds=BASELINE_S, control=True, interval=coarse
    )
    time.sleep(BASELINE_S / 2 - 1)
    probes[0].set_interval(FINE_S)
    time.sleep(2.0)
    probes[0].set_interval(coarse)
    results = [p.result() for p in probes]
    return {
        "per_vm_gap_ms": _gaps(results),
        "per_vm_outage_ms": _outages(results),
        "lost": sum(r.lost for r in results),
        "sent": sum(r.sent for r in results),
    }


def _twin(
    spec: TopologySpec,
    lab_dir: Path,
    progress: Progress,
    name: str,
    *,
    handover: str = "netns",
    rounds: int = 1,
) -> dict[str, Any]:
    """The upgrade and the failover, `rounds` times on one lab (each round after a probe
    window with no cut); the first round is the row's `slot-upgrade` and `slot-failover`,
    every round is in `rounds`."""
    twin_spec = replace(spec, standby=True, vif_handover=handover)
    lab, state = topology.build(lab_dir, twin_spec, progress, name=name)
    try:
        pairs = _pairs(spec.networks)
        for a, b in pairs:
            lab.ping(a, b, count=3, interval=0.05)
        out: dict[str, Any] = {"flows_on_h1": topology.flow_count(lab, state, "h1")}
        out["rounds"] = []
        for n in range(rounds):
            one = {"baseline": _baseline(lab, pairs)}
            time.sleep(1)
            one["slot-upgrade"] = _upgrade(lab, pairs, progress)
            time.sleep(2)
            one["slot-failover"] = _failover(lab, pairs, progress)
            time.sleep(2)
            progress(f"twin bench ({handover}): round {n + 1} of {rounds} done")
            out["rounds"].append(one)
        out["slot-upgrade"] = out["rounds"][0]["slot-upgrade"]
        out["slot-failover"] = out["rounds"][0]["slot-failover"]
        return out
    finally:
        services.stop_simhosts(lab.state())
        lab.down()


def outage_bound(run_: dict[str, Any]) -> float:
    """A phase's longest per-VM outage, or its probes' resolution when nothing longer was
    lost (a cut shorter than the interval can lose no probe: its outage is below it)."""
    return float(max([*run_["per_vm_outage_ms"], run_["resolution_ms"]]))


def ratios(plain: dict[str, Any], twin: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, as ratios of numbers measured in this run: on outages (the
    send-time spans of lost probes) and, for comparison, on reply gaps (which include the
    machine's scheduling delays)."""
    up, fail = twin["slot-upgrade"], twin["slot-failover"]
    # every round (the first alone when the rounds are not kept): the worst of them counts
    ups = [r["slot-upgrade"] for r in twin.get("rounds") or []] or [up]
    fails = [r["slot-failover"] for r in twin.get("rounds") or []] or [fail]
    moves = [c["vif_move_ms"] for u in ups for c in u["cuts"]]
    floor = statistics.median(moves) if moves else None
    up_out = max(outage_bound(u) for u in ups)
    fail_out = max(outage_bound(f) for f in fails)
    restart_out = plain["ovs-restart-frw"]["max_outage_ms"]
    kill9_out = plain["ovs-kill9"]["max_outage_ms"]
    up_gap = max(max(u["per_vm_gap_ms"]) for u in ups)
    fail_gap = max(max(f["per_vm_gap_ms"]) for f in fails)
    restart_gap = plain["ovs-restart-frw"]["max_gap_ms"]
    kill9_gap = plain["ovs-kill9"]["max_gap_ms"]
    sham_runs = [u["sham"] for u in ups if u.get("sham")]
    sham_out = max(outage_bound(s) for s in sham_runs) if sham_runs else None
    per_cut = cut_stats([c for u in ups for c in u["cuts"]])
    # the sham's cuts, the same steps with nothing changed on the path, in the same lab:
    # the gap the lab's own load makes around a cut (the floor the cut's gap stands on)
    shams = [c for s in sham_runs for c in s.get("cuts", [])]
    sham_cuts = cut_stats(shams) if shams else None
    over_sham = {
        stat: _ratio(per_cut[f"gap_{stat}"], sham_cuts[f"gap_{stat}"] if sham_cuts else None, 2)
        for stat in ("mean", "median", "max")
    }
    fail_window_gaps = [max(f.get("fine_window_gap_ms") or [0.0]) for f in fails]
    fail_window_gap = max(fail_window_gaps)
    return {
        "per_cut_outage_ms": per_cut,
        "sham_per_cut": sham_cuts,
        "per_cut_gap_over_sham": over_sham,
        "per_cut_mean_gap_over_sham": over_sham["mean"],
        "per_cut_median_gap_over_sham": over_sham["median"],
        "per_cut_mean_outage_ms": per_cut["mean"],
        "per_cut_mean_gap_ms": per_cut["gap_mean"],
        "per_cut_median_gap_ms": per_cut["gap_median"],
        "per_cut_max_gap_ms": per_cut["gap_max"],
        "vif_move_floor_ms": floor,
        "sham_max_outage_ms": sham_out,
        "upgrade_outage_over_sham": _ratio(up_out, sham_out, 2),
        "upgrade_max_outage_ms": up_out,
        "upgrade_outage_over_vif_move": _ratio(up_out, floor, 2),
        "upgrade_outage_over_plain_restart": _ratio(up_out, restart_out, 4),
        # the longest gap of any cut inside its own 1 ms window
        "upgrade_cut_gap_over_vif_move": _ratio(per_cut["gap_max"], floor, 2),
        "upgrade_cut_gap_over_plain_restart": _ratio(per_cut["gap_max"], restart_gap, 4),
        "failover_window_gap_ms": fail_window_gap,
        "failover_window_gap_ms_by_round": fail_window_gaps,
        "failover_outage_ms_by_round": [
            max(f["per_vm_outage_ms"][: f.get("fine_probed_vms") or None] or [0.0]) for f in fails
        ],
        "failover_window_gap_over_kill9_restore": _ratio(fail_window_gap, kill9_gap, 4),
        "failover_max_outage_ms": fail_out,
        "failover_outage_over_kill9_restore": _ratio(fail_out, kill9_out, 4),
        "plain_restart_outage_ms": restart_out,
        "kill9_restore_outage_ms": kill9_out,
        "upgrade_max_gap_ms": up_gap,
        "upgrade_gap_over_vif_move": _ratio(up_gap, floor, 2),
        "upgrade_gap_over_plain_restart": _ratio(up_gap, restart_gap, 3),
        "failover_max_gap_ms": fail_gap,
        "failover_gap_over_kill9_restore": _ratio(fail_gap, kill9_gap, 3),
        "plain_restart_gap_ms": restart_gap,
        "kill9_restore_gap_ms": kill9_gap,
    }


def _dist(values: list[float]) -> dict[str, float]:
    """Pure: mean, median, p90 and max of a non-empty list."""
    vals = sorted(values)
    return {
        "mean": round(statistics.fmean(vals), 2),
        "median": round(statistics.median(vals), 2),
        "p90": round(vals[min(len(vals) - 1, int(0.9 * len(vals)))], 2),
        "max": round(vals[-1], 2),
    }


def cut_stats(cuts: list[dict[str, Any]]) -> dict[str, float]:
    """Pure: the per-cut outages and window gaps (each in its own fine window) as
    distributions: a lab's largest cut is one of its VM count's cuts, so the maxima of 40
    and of 10 cuts are not alike; the mean and the quantiles are."""
    if not cuts:
        zero = {"mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0.0}
        return {
            "cuts": 0, **zero, **{f"gap_{k}": v for k, v in zero.items()},
            "lost_mean": 0.0, "duplicated_mean": 0.0, "duplicated_max": 0,
        }  # fmt: skip
    outs = _dist([float(c.get("outage_ms") or 0.0) for c in cuts])
    gaps = _dist([float(c.get("window_gap_ms") or 0.0) for c in cuts])
    lost = [int(c.get("lost_in_window") or 0) for c in cuts]
    dups = [int(c.get("duplicated_in_window") or 0) for c in cuts]
    return {
        "cuts": len(cuts),
        **outs,
        **{f"gap_{k}": v for k, v in gaps.items()},
        "lost_mean": round(statistics.fmean(lost), 2),
        "duplicated_mean": round(statistics.fmean(dups), 2),
        "duplicated_max": max(dups),
    }


def _ratio(num: float, den: float | None, digits: int) -> float | None:
    return round(num / den, digits) if den else None


def scaling(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Per size and handover: `key` of the row with the most VMs over the fewest."""
    by_size: dict[tuple[int, str], dict[int, float]] = {}
    for row in rows:
        by_size.setdefault((row["target_flows"], row["vif_handover"]), {})[row["vms"]] = row[
            "ratios"
        ][key]
    return {
        f"{size} {how}": round(vals[max(vals)] / vals[min(vals)], 2)
        for (size, how), vals in by_size.items()
        if len(vals) > 1 and vals[min(vals)] and vals[max(vals)] is not None
    }


HANDOVERS = ("netns", "steer")
LAB_NAME = "fksl"  # the twin labs' name; the plain lab's is this + "p"


def run_matrix(
    sizes: list[int],
    vm_counts: list[int],
    lab_dir: Path,
    progress: Progress,
    *,
    handovers: tuple[str, ...] = ("netns",),
    name: str = LAB_NAME,
    rounds: int = 1,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """One plain lab per size x VM count, then one twin-slot lab per VIF handover; a row
    per handover (each with the plain lab's numbers of its size). `checkpoint` gets the
    matrix so far after each row (a long run that fails later keeps what it measured)."""
    rows: list[dict[str, Any]] = []
    for flows in sizes:
        for vms in vm_counts:
            spec = spec_for(flows, vms)
            progress(f"twin bench: ~{flows} flows, {vms} VMs: plain lab first")
            plain = _plain(spec, lab_dir, progress, f"{name}p")
            for handover in handovers:
                progress(f"twin bench: ~{flows} flows, {vms} VMs: twin-slot lab ({handover})")
                twin = _twin(spec, lab_dir, progress, name, handover=handover, rounds=rounds)
                row: dict[str, Any] = {
                    "target_flows": flows,
                    "vms": vms,
                    "vif_handover": handover,
                    "plain": plain,
                    "twin": twin,
                    "ratios": ratios(plain, twin),
                }
                progress(f"twin bench: {flows} flows, {vms} VMs, {handover}: {row['ratios']}")
                rows.append(row)
                if checkpoint is not None:
                    checkpoint(matrix(rows))
    return matrix(rows)


def matrix(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The bench's result for the rows measured."""
    return {
        "benchmark": "restart-twin",
        "probe_interval_s": PROBE_INTERVAL,
        "background_probes_per_s": BACKGROUND_PPS,
        "fine_interval_s": FINE_S,
        "settle_s": SETTLE_S,
        "rows": rows,
        "upgrade_outage_most_over_fewest_vms": scaling(rows, "upgrade_max_outage_ms"),
        "per_cut_mean_outage_most_over_fewest_vms": scaling(rows, "per_cut_mean_outage_ms"),
        # the cut's own gap (no reply, in its 1 ms window): 40 VMs against 10
        "per_cut_gap_most_over_fewest_vms": {
            stat: scaling(rows, f"per_cut_{stat}_gap_ms") for stat in ("mean", "median", "max")
        },
        # the same, each lab's cut gap over its own sham's first (the lab's floor)
        "per_cut_gap_over_sham_most_over_fewest_vms": {
            stat: scaling(rows, f"per_cut_{stat}_gap_over_sham") for stat in ("mean", "median")
        },
        "upgrade_gap_most_over_fewest_vms": scaling(rows, "upgrade_max_gap_ms"),
    }
