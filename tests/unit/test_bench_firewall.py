"""The firewall bench's naive count is what the rules written per member would build."""

from __future__ import annotations

from dataclasses import replace

from flowkeeper.bench import firewall as bench
from flowkeeper.pipeline.build import build_flows
from flowkeeper.pipeline.view import GroupView, RuleView


def test_naive_count_is_the_flows_of_one_rule_per_member() -> None:
    v = bench.view(20, 10, 3)
    members = v.members[0][1]
    rules: list[RuleView] = []
    for rule in v.groups[0].rules:
        if rule.remote_group:
            rules += [replace(rule, remote_group="", remote_ip_prefix=m) for m in members]
        else:
            rules.append(rule)
    naive = replace(v, groups=(GroupView(bench.GROUP, tuple(rules)),), members=())
    assert bench.naive_count(v, build_flows(v)) == bench.firewall_count(build_flows(naive))
    assert len(bench.rules(10)) == 10


def test_pure_measurements_at_a_small_size() -> None:
    res = bench.measure_pure(50, 10, 5)
    assert res["firewall_flows"] == bench.firewall_count(res.pop("_flows"))
    assert res["member_change_flows"] == 4  # one address, 2 remote rules' offsets x 2 states
    assert res["naive_firewall_flows"] > res["firewall_flows"]
