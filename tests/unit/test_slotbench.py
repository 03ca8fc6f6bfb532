"""The twin-slot bench's pure parts: the end of a cut's gap, the ratios."""

from __future__ import annotations

from typing import Any

from flowkeeper.bench import slotbench
from flowkeeper.bench.probes import PROBE_INTERVAL
from flowkeeper.bench.slotbench import gap_end, lost_within, ratios, scaling, sent_within
from flowkeeper.lab.probe import ProbeResult, gap_within, outage_within, summarize


def probe(timeline: list[tuple[float, float | None]]) -> ProbeResult:
    lost = sum(1 for _t, rtt in timeline if rtt is None)
    return ProbeResult("x", len(timeline), len(timeline) - lost, lost, 10.0, 0.0, 0.0, 0, None,
                       1.0, start_unix=100.0, timeline=timeline)  # fmt: skip


def test_gap_end_is_the_first_answer_after_the_last_loss() -> None:
    res = probe([(0.0, 1.0), (0.01, 1.0), (0.02, None), (0.03, None), (0.04, 1.0), (0.05, 1.0)])
    assert gap_end(res, 100.005) == 100.04
    whole = probe([(0.0, 1.0), (0.01, 1.0), (0.02, 1.0)])
    assert gap_end(whole, 100.005) == 100.01


PLAIN = {
    "ovs-restart-frw": {"max_gap_ms": 1000.0, "max_outage_ms": 990.0},
    "ovs-kill9": {"max_gap_ms": 800.0, "max_outage_ms": 400.0},
}


def twin(up_outages: list[float], fail_outages: list[float]) -> dict[str, Any]:
    return {
        "slot-upgrade": {
            "cuts": [{"vif_move_ms": 20.0}, {"vif_move_ms": 30.0}, {"vif_move_ms": 25.0}],
            "per_vm_gap_ms": [40.0, 45.0, 50.0],
            "per_vm_outage_ms": up_outages,
            "resolution_ms": 1.0,
        },
        "slot-failover": {
            "per_vm_gap_ms": [70.0, 80.0],
            "per_vm_outage_ms": fail_outages,
            "resolution_ms": 10.0,
        },
    }


def test_ratios_come_from_the_same_run() -> None:
    r = ratios(PLAIN, twin([0.0, 9.9, 2.0], [20.0, 40.0]))
    assert r["vif_move_floor_ms"] == 25.0
    assert r["upgrade_gap_over_vif_move"] == 2.0
    assert r["upgrade_gap_over_plain_restart"] == 0.05
    assert r["failover_gap_over_kill9_restore"] == 0.1
    assert r["upgrade_max_outage_ms"] == 9.9
    assert r["upgrade_outage_over_vif_move"] == 0.4
    assert r["upgrade_outage_over_plain_restart"] == 0.01
    assert r["failover_outage_over_kill9_restore"] == 0.1


def test_the_sham_phase_is_the_upgrades_floor_when_there_is_one() -> None:
    t = twin([0.0, 30.0, 2.0], [20.0, 40.0])
    assert ratios(PLAIN, t)["upgrade_outage_over_sham"] is None  # netns: no sham cut
    t["slot-upgrade"]["sham"] = {"per_vm_outage_ms": [0.0, 15.0], "resolution_ms": 1.0}
    r = ratios(PLAIN, t)
    assert r["sham_max_outage_ms"] == 15.0
    assert r["upgrade_outage_over_sham"] == 2.0


def test_an_outage_below_the_probes_resolution_counts_as_the_resolution() -> None:
    # nothing lost: the cut was shorter than the interval, not zero
    r = ratios(PLAIN, twin([0.0, 0.0, 0.0], [0.0, 0.0]))
    assert r["upgrade_max_outage_ms"] == 1.0
    assert r["failover_max_outage_ms"] == 10.0
    assert r["failover_outage_over_kill9_restore"] == 0.025


def test_scaling_is_most_vms_over_fewest_per_size_and_handover() -> None:
    rows = [
        {"target_flows": 200, "vif_handover": "steer", "vms": n, "ratios": {"k": v}}
        for n, v in ((10, 4.0), (40, 5.0))
    ] + [{"target_flows": 200, "vif_handover": "netns", "vms": 10, "ratios": {"k": 3.0}}]
    assert scaling(rows, "k") == {"200 steer": 1.25}


def test_a_cut_window_counts_only_its_own_losses() -> None:
    # fine probes around a cut at 100.1: one lost at 100.101; a coarse loss far later
    timeline: list[tuple[float, float | None]] = [(0.0, 1.0), (0.099, 1.0), (0.1, 1.0)]
    timeline += [(0.101, None), (0.102, 1.0), (0.5, 1.0), (0.51, None), (0.52, 1.0)]
    res = probe(timeline)
    assert lost_within(res, 100.0, 100.4) == 1
    assert sent_within(res, 100.0, 100.4) == 5
    assert abs(outage_within(res, 100.0, 100.4) - 0.002) < 1e-9
    assert abs(outage_within(res, 100.4, 101.0) - 0.02) < 1e-9
    assert slotbench.lost_offsets(res, 100.1, (100.0, 100.4)) == [1.0]


def test_each_round_is_one_line_with_its_gap_spans() -> None:
    from flowkeeper.cli.bench_cmd import _round_lines

    one = {
        "baseline": {"per_vm_gap_ms": [20.0, 30.0], "lost": 0, "sent": 1600},
        "slot-upgrade": {
            "per_vm_gap_ms": [25.0, 40.0],
            "lost": 1,
            "sent": 3400,
            "cuts": [{"vif_move_ms": 3.0}, {"vif_move_ms": 5.0}],
        },
        "slot-failover": {
            "per_vm_gap_ms": [18.0, 44.0],
            "lost": 7,
            "sent": 1600,
            "agent_failover": {"move_ms": 3.5},
            "death_seen_after_ms": 2.9,
        },
    }
    assert _round_lines([one]) == [
        "round 1: no cut gap 20.0-30.0 ms, lost 0/1600; upgrade gap 25.0-40.0 ms, lost "
        "1/3400 (moves 3.0-5.0 ms); failover gap 18.0-44.0 ms, lost 7/1600 (move 3.5 ms, "
        "death seen after 2.9 ms)"
    ]


def test_the_probes_background_rate_is_the_same_at_any_vm_count() -> None:
    assert slotbench.coarse_interval(1) == PROBE_INTERVAL
    assert slotbench.coarse_interval(10) == PROBE_INTERVAL
    for vms in (10, 20, 40, 80):
        rate = vms / slotbench.coarse_interval(vms)
        assert abs(rate - slotbench.BACKGROUND_PPS) < 1e-6


def test_cut_stats_give_the_per_cut_distribution() -> None:
    cuts = [
        {"outage_ms": v, "lost_in_window": n, "duplicated_in_window": d, "window_gap_ms": g}
        for v, n, d, g in ((0.0, 0, 30, 1.5), (3.0, 2, 0, 4.5), (None, None, None, None))
    ]
    stats = slotbench.cut_stats(cuts)
    assert stats == {"cuts": 3, "mean": 1.0, "median": 0.0, "p90": 3.0, "max": 3.0,
                     "gap_mean": 2.0, "gap_median": 1.5, "gap_p90": 4.5, "gap_max": 4.5,
                     "lost_mean": 0.67, "duplicated_mean": 10.0,
                     "duplicated_max": 30}  # fmt: skip
    assert slotbench.cut_stats([])["cuts"] == 0


def test_duplicates_are_counted_by_when_their_probe_was_sent() -> None:
    res = summarize(
        "198.19.1.10",
        [0.0, 0.001, 0.002, 0.003],
        {0: 0.0005, 1: 0.0015, 2: 0.0025, 3: 0.0035},
        0.001,
        0.004,
        duplicated=[1, 1, 3, 7],  # 7 was never sent: not counted
    )
    assert res.duplicated == [1, 1, 3]
    res.start_unix = 100.0
    assert slotbench.duplicated_within(res, 100.0, 100.0015) == 2
    assert slotbench.duplicated_within(res, 100.0, 100.01) == 3
    assert slotbench.duplicated_within(res, 100.004, 100.01) == 0


def test_a_window_gap_is_the_longest_time_without_a_reply_inside_it() -> None:
    # probes every 1 ms from t=0 (unix 100), each answered in 0.5 ms but 3 and 4
    timeline: list[tuple[float, float | None]] = [
        (i / 1000, None if i in (3, 4) else 0.5) for i in range(10)
    ]
    res = ProbeResult("198.19.1.10", 10, 8, 2, 1.0, 3.0, 2.0, 2, 0.5, 0.01, 100.0, timeline)
    # replies arrive at 0.5, 1.5, 2.5, 5.5, ... ms: 3 ms from 2.5 to 5.5
    assert abs(gap_within(res, 100.0, 100.0095) - 0.003) < 1e-9
    assert abs(gap_within(res, 100.006, 100.0095) - 0.001) < 1e-9
    # a window past the last reply: its end counts
    assert abs(gap_within(res, 100.0, 100.02) - (0.02 - 0.0095)) < 1e-9
    assert gap_within(res, 100.01, 100.0) == 0.0
