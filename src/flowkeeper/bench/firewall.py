"""Firewall bench: flows per port, build and install time at N ports with port security.

Each size: N ports on one network-spread host, each in one group of R rules, some of
which name the group itself as remote (Neutron's default group does), so the remote
group has N members. Measured: the pipeline's flows (per port, conjunction member flows),
the same rules written without conjunctions (the naive member x rule product, counted,
not installed), the pure build (from scratch and incremental: a member change, a rule
change), and installing the flows into a real br-int (userspace datapath) through the
agent's OpenFlow connection (counting its ovs-ofctl fallbacks), through
`ovs-ofctl --bundle add-flows` and through `ovs-ofctl replace-flows`; and applying a
member change (the small delta the agent sends in-process) both ways.

The VIFs are patch ports without a peer: OVS gives them an ofport, so flows naming them
install like a tap's, without 5,000 kernel devices.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from flowkeeper.flows.flowset import FlowSet, diff
from flowkeeper.flows.record import Flow
from flowkeeper.lab import ovsproc
from flowkeeper.lab.lab import Lab, UpOptions
from flowkeeper.naming import BR_INT
from flowkeeper.ovs.ofctl import OfctlBridge
from flowkeeper.ovs.ofwire import WireBridge
from flowkeeper.pipeline import firewall as fw
from flowkeeper.pipeline.build import build_flows
from flowkeeper.pipeline.incremental import IncrementalBuild
from flowkeeper.pipeline.tables import cookie_for
from flowkeeper.pipeline.view import GroupView, HostView, LocalPort, NetworkView, RuleView

Progress = Callable[[str], None]
GROUP = "sg-bench"
ADD_PORTS_BATCH = 500
DELTA_REPEATS = 10  # each way, each method


def rules(count: int) -> tuple[RuleView, ...]:
    """`count` rules: egress any, 2 from the group itself (tcp range, icmp), tcp ports."""
    fixed = [
        RuleView("egress", "IPv4"),
        RuleView("ingress", "IPv4", "tcp", 8000, 8099, remote_group=GROUP),
        RuleView("ingress", "IPv4", "icmp", remote_group=GROUP),
    ]
    plain = [RuleView("ingress", "IPv4", "tcp", 1000 + i, 1000 + i) for i in range(count)]
    return tuple(sorted((fixed + plain)[:count], key=fw.rule_order))


def view(ports: int, rule_count: int, networks: int) -> HostView:
    nets = tuple(NetworkView(f"net-{i}", "vxlan", 1000 + i, i + 1) for i in range(networks))
    local = tuple(
        LocalPort(
            f"port-{i:05d}",
            nets[i % networks].id,
            device(i),
            f"fa:16:3e:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}",
            (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",),
            port_security=True,
            security_groups=(GROUP,),
        )
        for i in range(ports)
    )
    members = ((GROUP, tuple(sorted(p.ips[0] for p in local))),)
    return HostView(
        "198.18.0.2",
        cookie=cookie_for(1),
        networks=nets,
        local_ports=local,
        firewall=True,
        groups=(GroupView(GROUP, rules(rule_count)),),
        members=members,
    )


def device(i: int) -> str:
    return f"tapbench{i:05d}"


def naive_count(v: HostView, flows: FlowSet) -> int:
    """The firewall's flow count were each remote rule written once per member address."""
    members = dict(v.members)
    conj = sum(1 for f in flows if "conjunction(" in f.actions or "conj_id" in dict(f.match))
    product = 0
    for inputs in fw.plan(v).rules.values():
        for rule in inputs.rules:
            if rule.remote_group:
                per_member = len(fw._rule_matches(rule, "0x1")) * len(fw.RULE_STATES)
                product += per_member * len(members.get(rule.remote_group, ()))
    return firewall_count(flows) - conj + product


def firewall_count(flows: FlowSet) -> int:
    """Flows a port's firewall adds: tables 71-93, table 60 dispatch (not 94's switching)."""
    return sum(
        1
        for f in flows
        if f.bridge == BR_INT and (71 <= f.table <= 93 or (f.table == 60 and f.priority > 0))
    )


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_pure(ports: int, rule_count: int, networks: int) -> dict[str, Any]:
    v = view(ports, rule_count, networks)
    start = time.perf_counter()
    flows = build_flows(v)
    build_s = time.perf_counter() - start
    inc = IncrementalBuild()
    first_s = _timed(lambda: inc.update(v))
    fewer = replace(v, members=((GROUP, v.members[0][1][1:]),))
    member_changed: set[Any] = set()
    member_s = _timed(lambda: member_changed.update(inc.update(fewer)))
    shorter = replace(fewer, groups=(GroupView(GROUP, rules(rule_count)[:-1]),))
    rule_changed: set[Any] = set()
    rule_s = _timed(lambda: rule_changed.update(inc.update(shorter)))
    fw_flows = firewall_count(flows)
    members = sum(1 for f in flows if "conjunction(" in f.actions and ",1/2)" in f.actions)
    naive = naive_count(v, flows)
    return {
        "ports": ports,
        "rules": rule_count,
        "members": len(v.members[0][1]),
        "networks": networks,
        "br_int_flows": sum(1 for f in flows if f.bridge == BR_INT),
        "firewall_flows": fw_flows,
        "firewall_flows_per_port": round(fw_flows / ports, 2),
        "member_flows": members,
        "naive_firewall_flows": naive,
        "naive_over_conjunction": round(naive / fw_flows, 2),
        "build_s": round(build_s, 3),
        "incremental_first_s": round(first_s, 3),
        "incremental_member_change_s": round(member_s, 4),
        "member_change_flows": len(member_changed),
        "incremental_rule_change_s": round(rule_s, 4),
        "rule_change_flows": len(rule_changed),
        "_flows": flows,
        "_fewer_flows": build_flows(fewer),
    }


def _add_ports(host: Any, count: int, progress: Progress) -> None:
    """`count` peerless patch ports on br-int, in a few OVSDB transactions."""
    for start in range(0, count, ADD_PORTS_BATCH):
        args: list[str] = []
        for i in range(start, min(count, start + ADD_PORTS_BATCH)):
            name = device(i)
            args += ["--", "--may-exist", "add-port", BR_INT, name]
            args += ["--", "set", "Interface", name, "type=patch", "options:peer=none"]
        ovsproc.vsctl(host, *args, timeout=300)
    progress(f"{count} VIFs on br-int")


def _install(host: Any, flows: FlowSet, repeats: int) -> dict[str, float]:
    """Median seconds to install the flows into an empty br-int, each way: the agent's
    OpenFlow connection (in-process encoder), `ovs-ofctl --bundle add-flows` (what that
    connection falls back to for flows it cannot encode, the firewall's path before the
    encoder took conntrack), and `ovs-ofctl replace-flows`."""
    mine = list(flows.for_bridge(BR_INT))
    ofctl = OfctlBridge(BR_INT, host.mgmt(BR_INT), timeout=900)
    wire_s, add_s, ofctl_s = [], [], []
    fallbacks = 0
    for _ in range(repeats):
        ofctl.delete_all()
        with WireBridge(BR_INT, host.mgmt(BR_INT), timeout=900) as wire:
            start = time.perf_counter()
            wire.add_flows(mine)
            wire_s.append(time.perf_counter() - start)
            fallbacks += wire.fallbacks
        _check(ofctl, mine)
        ofctl.delete_all()
        start = time.perf_counter()
        ofctl.add_flows(mine)
        add_s.append(time.perf_counter() - start)
        _check(ofctl, mine)
        ofctl.delete_all()
        start = time.perf_counter()
        ofctl.replace_flows(mine)
        ofctl_s.append(time.perf_counter() - start)
        _check(ofctl, mine)
    ofctl.delete_all()
    return {
        "install_wire_s": round(statistics.median(wire_s), 3),
        "install_wire_fallbacks": fallbacks,
        "install_ofctl_add_s": round(statistics.median(add_s), 3),
        "install_ofctl_replace_s": round(statistics.median(ofctl_s), 3),
    }


def _member_delta(host: Any, flows: FlowSet, fewer: FlowSet) -> dict[str, float]:
    """Median ms to apply a member change (a remote group loses one member, and gets it
    back) as one delta, through the agent's OpenFlow connection and through ovs-ofctl."""
    before, after = flows.for_bridge(BR_INT), fewer.for_bridge(BR_INT)
    ofctl = OfctlBridge(BR_INT, host.mgmt(BR_INT), timeout=900)
    ofctl.delete_all()
    ofctl.add_flows(before)
    there, back = diff(after, before), diff(before, after)
    times: dict[str, list[float]] = {"wire": [], "ofctl": []}
    with WireBridge(BR_INT, host.mgmt(BR_INT), timeout=900) as wire:
        for _ in range(DELTA_REPEATS):
            for name, apply in (("wire", wire.apply), ("ofctl", ofctl.apply)):
                for delta in (there, back):
                    start = time.perf_counter()
                    apply(delta)
                    times[name].append(time.perf_counter() - start)
        fallbacks = wire.fallbacks
    _check(ofctl, list(before))
    ofctl.delete_all()
    return {
        "member_delta_flows": len(there.add) + len(there.modify) + len(there.delete),
        "member_delta_wire_ms": round(1000 * statistics.median(times["wire"]), 2),
        "member_delta_wire_fallbacks": fallbacks,
        "member_delta_ofctl_ms": round(1000 * statistics.median(times["ofctl"]), 2),
    }


def _check(ofctl: OfctlBridge, flows: list[Flow]) -> None:
    if ofctl.flow_count() != len(flows):
        raise RuntimeError(f"{ofctl.flow_count()} flows on br-int, not {len(flows)}")
    if FlowSet(ofctl.dump_flows()) != FlowSet(flows):
        raise RuntimeError("br-int holds other flows than were installed")


def run(
    sizes: list[int],
    *,
    rule_count: int,
    networks: int,
    repeats: int,
    lab_dir: Path,
    progress: Progress,
    lab_name: str = "fkbfw",
    install: bool = True,
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    lab: Lab | None = None
    try:
        if install:
            lab = Lab(lab_dir, progress=progress)
            lab.down()
            opts = UpOptions(hosts=1, vms_per_host=0, name=lab_name, agents=False)
            host = lab.up(opts).hosts[0]
            _add_ports(host, max(sizes), progress)
        for size in sizes:
            res = measure_pure(size, rule_count, networks)
            flows: FlowSet = res.pop("_flows")
            fewer: FlowSet = res.pop("_fewer_flows")
            progress(
                f"{size} ports: {res['firewall_flows']} firewall flows "
                f"({res['firewall_flows_per_port']}/port), build {res['build_s']}s"
            )
            if lab is not None:
                res.update(_install(host, flows, repeats))
                progress(
                    f"{size} ports: install wire {res['install_wire_s']}s "
                    f"({res['install_wire_fallbacks']} fallbacks), ovs-ofctl add-flows "
                    f"{res['install_ofctl_add_s']}s, replace-flows "
                    f"{res['install_ofctl_replace_s']}s"
                )
                res.update(_member_delta(host, flows, fewer))
                progress(
                    f"{size} ports: member change ({res['member_delta_flows']} flows) on OVS: "
                    f"wire {res['member_delta_wire_ms']} ms "
                    f"({res['member_delta_wire_fallbacks']} fallbacks), "
                    f"ovs-ofctl {res['member_delta_ofctl_ms']} ms"
                )
            results.append(res)
    finally:
        if lab is not None:
            lab.down()
    return {
        "benchmark": "firewall",
        "rules": rule_count,
        "networks": networks,
        "repeats": repeats,
        "results": results,
    }
