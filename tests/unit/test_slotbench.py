"""The twin-slot bench's pure parts: the end of a cut's gap, the ratios."""

from __future__ import annotations

from flowkeeper.bench.slotbench import gap_end, ratios
from flowkeeper.lab.probe import ProbeResult


def probe(timeline: list[tuple[float, float | None]]) -> ProbeResult:
    lost = sum(1 for _t, rtt in timeline if rtt is None)
    return ProbeResult("x", len(timeline), len(timeline) - lost, lost, 10.0, 0.0, 0, None,
                       1.0, start_unix=100.0, timeline=timeline)  # fmt: skip


def test_gap_end_is_the_first_answer_after_the_last_loss() -> None:
    res = probe([(0.0, 1.0), (0.01, 1.0), (0.02, None), (0.03, None), (0.04, 1.0), (0.05, 1.0)])
    assert gap_end(res, 100.005) == 100.04
    whole = probe([(0.0, 1.0), (0.01, 1.0), (0.02, 1.0)])
    assert gap_end(whole, 100.005) == 100.01


def test_ratios_come_from_the_same_run() -> None:
    plain = {"ovs-restart-frw": {"max_gap_ms": 1000.0}, "ovs-kill9": {"max_gap_ms": 800.0}}
    twin = {
        "slot-upgrade": {
            "cuts": [{"vif_move_ms": 20.0}, {"vif_move_ms": 30.0}, {"vif_move_ms": 25.0}],
            "per_vm_gap_ms": [40.0, 45.0, 50.0],
        },
        "slot-failover": {"per_vm_gap_ms": [70.0, 80.0]},
    }
    r = ratios(plain, twin)
    assert r["vif_move_floor_ms"] == 25.0
    assert r["upgrade_gap_over_vif_move"] == 2.0
    assert r["upgrade_gap_over_plain_restart"] == 0.05
    assert r["failover_gap_over_kill9_restore"] == 0.1


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
        "round 1: no cut 20.0-30.0 ms, lost 0/1600; upgrade 25.0-40.0 ms, lost 1/3400 "
        "(moves 3.0-5.0 ms); failover 18.0-44.0 ms, lost 7/1600 (move 3.5 ms, death seen "
        "after 2.9 ms)"
    ]
