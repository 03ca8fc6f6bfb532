"""The lab firewall bench's pure parts: argument checks, the spread, the summary math."""

from __future__ import annotations

import argparse

import pytest

from flowkeeper.bench import fwlab
from flowkeeper.bench.fwlab import LabSpec
from flowkeeper.cli import bench_cmd
from flowkeeper.errors import UsageError
from flowkeeper.flows.record import Flow


def test_default_spec_is_accepted_and_bad_sizes_are_refused() -> None:
    fwlab.check(LabSpec())
    for bad in (
        LabSpec(hosts=1),
        LabSpec(ports=3),
        LabSpec(ports=fwlab.MAX_PORTS + 1),
        LabSpec(changes=3),  # odd: the rule would be left in
        LabSpec(changes=0),
        LabSpec(changes=fwlab.MAX_CHANGES + 2),
        LabSpec(rules=2),
    ):
        with pytest.raises(ValueError):
            fwlab.check(bad)


def _args(**over: object) -> argparse.Namespace:
    base = {"no_install": False, "lab_ports": 1000, "lab_hosts": 2, "changes": 20, "rules": 10}
    return argparse.Namespace(**(base | over))


def test_cli_spec_skips_the_lab_run_and_reports_bad_sizes_as_usage_errors() -> None:
    assert bench_cmd._fw_lab_spec(_args()) == LabSpec(1000, 2, 20, 10)
    assert bench_cmd._fw_lab_spec(_args(lab_ports=0)) is None
    assert bench_cmd._fw_lab_spec(_args(no_install=True)) is None
    with pytest.raises(UsageError, match="--changes"):
        bench_cmd._fw_lab_spec(_args(changes=5))


def test_spread_is_even_and_counts_every_port() -> None:
    assert fwlab.spread(1000, 2) == [500, 500]
    assert fwlab.spread(1001, 3) == [334, 334, 333]
    assert sum(fwlab.spread(997, 4)) == 997


def test_percentiles_and_summary() -> None:
    values = [float(v) for v in range(1, 101)]
    assert fwlab.percentile(values, 50) == 50
    assert fwlab.percentile(values, 99) == 99
    assert fwlab.percentile(values, 100) == 100
    assert fwlab.percentile([3.0, 1.0, 2.0], 50) == 2
    assert fwlab.percentile([7.0], 99) == 7
    with pytest.raises(ValueError):
        fwlab.percentile([], 50)
    s = fwlab.summarize([0.1, 0.2, 0.3, 0.4])
    assert s == {
        "p50_ms": 200.0,
        "p99_ms": 400.0,
        "max_ms": 400.0,
        "min_ms": 100.0,
        "mean_ms": 250.0,
    }
    assert fwlab.ratio(200.0, 0.05) == 4.0
    assert fwlab.ratio(200.0, 0.0) is None


def test_group_rules_are_the_count_with_a_self_remote_and_the_reference_rule() -> None:
    rules = fwlab.group_rules("g", 10)
    assert len(rules) == 9  # plus the new group's own egress IPv4 rule
    assert sum(r.get("remote_group_id") == "g" for r in rules) == 2
    assert any(r.get("port_range_min") == fwlab.REFERENCE_PORT for r in rules)
    assert fwlab.changed_rule() not in rules


def test_addresses_and_the_rule_flow_filter() -> None:
    ips = {fwlab.port_ip(i) for i in range(fwlab.MAX_PORTS)}
    macs = {fwlab.port_mac(i) for i in range(fwlab.MAX_PORTS)}
    assert len(ips) == len(macs) == fwlab.MAX_PORTS
    assert not ips & set(fwlab.VM_IPS)
    assert all(ip.startswith("198.19.") for ip in ips)
    match = (("dl_type", "0x0800"), ("reg5", "0x5"), ("nw_proto", "6"), ("tp_dst", "7000"))
    assert fwlab.is_rule_flow(Flow("br-int", 82, 70, match, "resubmit(,92)"))
    assert not fwlab.is_rule_flow(Flow("br-int", 72, 70, match, "resubmit(,92)"))
    other = (*match[:3], ("tp_dst", "1000"))
    assert not fwlab.is_rule_flow(Flow("br-int", 82, 70, other, "resubmit(,92)"))


def test_agent_phases_parse_the_applies_of_the_change_size() -> None:
    lines = [
        "2026-12-02 06:29:34,815 INFO flowkeeper.agent: applied +20 ~0 -0 flows in 43 ms "
        "(revision 509; view 2, tunnels 0, build+diff 5, bundles 36 ms)",
        "x INFO flowkeeper.agent: applied +1000 ~0 -0 flows in 300 ms "
        "(revision 2019; view 100, tunnels 0, build+diff 120, bundles 80 ms)",
        "x INFO flowkeeper.agent: applied +0 ~0 -1000 flows in 200 ms "
        "(revision 2020; view 90, tunnels 0, build+diff 60, bundles 50 ms)",
        "x INFO flowkeeper.agent: in sync at revision 2020: 34530 flows",
    ]
    applies = fwlab.agent_phases(lines, 1000)
    assert applies == [
        {"total": 300, "view": 100, "tunnels": 0, "build+diff": 120, "bundles": 80},
        {"total": 200, "view": 90, "tunnels": 0, "build+diff": 60, "bundles": 50},
    ]
    assert fwlab.median_phases(applies)["total"] == 250
