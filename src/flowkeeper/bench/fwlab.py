"""`bench firewall --lab-ports N`: time from a rule change to every affected host enforcing
it, in a real lab (real agents with --firewall openvswitch, real OVS, userspace datapath).

The lab: `hosts` hosts, one network, one security group of `rules` rules (egress any, tcp
8000-8099 and icmp from the group itself, the rest single tcp ports), N firewalled ports in
all spread evenly over the hosts. Two of them are real VMs (a namespace each, one on h1,
one on h2) for a packet check; the others are VIFs without a namespace: peerless patch
ports on br-int with Nova's external_ids, which the agent binds like any tap. The group
names itself as remote, so its N members reach every host.

Each change adds or removes (alternating, starting with an add) the rule "ingress tcp
RULE_PORT" in the group. Its time runs from just before the API call until every host
enforces it: the rule's flows in br-int table 82 (ingress rules) are all there (two per
local port, one per conntrack state) or all gone, polled with `ovs-ofctl dump-aggregate`
every POLL_S on each host at once. After the first add and the first remove a TCP connect
from the VM on h1 to a listener in the VM on h2 checks the verdict (connected, dropped).
The floor, in the same run: one `ovs-ofctl --bundle add-flows` of the rule's flows (as
dumped from h1) on h1's br-int. Then, at the same size, the agent restarts
(SIGTERM, kill -9) under a counted TCP stream: see fwrestart.
"""

from __future__ import annotations

import math
import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowkeeper.bench import fwrestart
from flowkeeper.client import Client
from flowkeeper.errors import FlowkeeperError
from flowkeeper.flows.record import Flow
from flowkeeper.lab import ovsproc, trafficrun
from flowkeeper.lab.lab import Lab, UpOptions
from flowkeeper.lab.state import HostState, LabState, VmState
from flowkeeper.naming import BR_INT
from flowkeeper.ovs.ofctl import OfctlBridge
from flowkeeper.pipeline.firewall import RULE_STATES

Progress = Callable[[str], None]
RULE_PORT = 7000  # the changed rule: ingress tcp 7000
RULE_TABLE = 82  # Neutron's RULES_INGRESS_TABLE
REFERENCE_PORT = 1000  # a rule of the same shape that stays: its flows are the expected count
POLL_S = 0.005
CHANGE_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 600.0
FLOOR_REPEATS = 3
LISTEN_S = 300.0  # the listener's bound (the verdicts come in the first two changes)
VM_IPS = ("198.19.100.10", "198.19.100.11")
PLUG_BATCH = 250
MAX_PORTS = 5000
MAX_CHANGES = 200


@dataclass(frozen=True)
class LabSpec:
    ports: int = 1000  # firewalled ports in all, the two VMs included
    hosts: int = 2
    changes: int = 20
    rules: int = 10


def check(spec: LabSpec) -> None:
    """Refuse sizes the bench does not support (ValueError with the reason)."""
    if not 2 <= spec.hosts <= 8:
        raise ValueError("--lab-hosts must be 2..8")
    if not 2 * spec.hosts <= spec.ports <= MAX_PORTS:
        raise ValueError(f"--lab-ports must be {2 * spec.hosts}..{MAX_PORTS} (0: no lab run)")
    if not 2 <= spec.changes <= MAX_CHANGES or spec.changes % 2:
        raise ValueError(f"--changes must be even and 2..{MAX_CHANGES} (add, remove, ...)")
    if not 3 <= spec.rules <= 50:
        raise ValueError("--rules must be 3..50 for the lab run")


def spread(ports: int, hosts: int) -> list[int]:
    """Ports per host (h1 first), as even as can be; the counts include each host's VM."""
    base, extra = divmod(ports, hosts)
    return [base + (1 if i < extra else 0) for i in range(hosts)]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(seconds: list[float]) -> dict[str, float]:
    """p50, p99, max, min and mean, in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
        "min_ms": round(min(ms), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


def ratio(value_ms: float, floor_s: float) -> float | None:
    return None if floor_s <= 0 else round(value_ms / 1000 / floor_s, 2)


def group_rules(group_id: str, count: int) -> list[dict[str, Any]]:
    """The group's rules (egress IPv4 any is the new group's own; these are the others)."""
    fixed: list[dict[str, Any]] = [
        _rule("tcp", 8000, 8099, remote_group_id=group_id),
        _rule("icmp", None, None, remote_group_id=group_id),
    ]
    plain = [_rule("tcp", REFERENCE_PORT + i, REFERENCE_PORT + i) for i in range(count)]
    return (fixed + plain)[: count - 1]


def changed_rule() -> dict[str, Any]:
    return _rule("tcp", RULE_PORT, RULE_PORT)


def _rule(protocol: str, low: int | None, high: int | None, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"direction": "ingress", "ethertype": "IPv4", "protocol": protocol}
    if low is not None:
        fields |= {"port_range_min": low, "port_range_max": high}
    return fields | extra


def port_mac(i: int) -> str:
    return f"fa:16:3e:fb:{(i >> 8) & 255:02x}:{i & 255:02x}"


def port_ip(i: int) -> str:
    return f"198.19.{64 + i // 250}.{i % 250 + 2}"


def device(i: int) -> str:
    return f"fwb{i:05d}"


def rule_match(port: int) -> str:
    return f"table={RULE_TABLE},tcp,tp_dst={port}"


_APPLIED = re.compile(r"applied \+(\d+) ~(\d+) -(\d+) flows in (\d+) ms \(revision \d+; (.*) ms\)")


def agent_phases(lines: list[str], flows: int) -> list[dict[str, int]]:
    """The agent's own account ("applied +A ~M -D flows in T ms (revision R; view v, ...
    ms)") of each apply that added or removed exactly `flows` flows: phase -> ms."""
    out = []
    for line in lines:
        m = _APPLIED.search(line)
        if m is None or flows not in (int(m.group(1)), int(m.group(3))):
            continue
        phases = {"total": int(m.group(4))}
        for part in m.group(5).split(", "):
            name, _, ms = part.rpartition(" ")
            if name and ms.isdigit():
                phases[name] = int(ms)
        out.append(phases)
    return out


def median_phases(applies: list[dict[str, int]]) -> dict[str, float]:
    names = sorted({k for a in applies for k in a})
    return {k: statistics.median(a.get(k, 0) for a in applies) for k in names}


# --- the lab ---------------------------------------------------------------------------
def _make_group(client: Client, rule_count: int) -> str:
    group = client.create_security_group("fwbench")
    for old in group.rules:
        if old.ethertype != "IPv4" or old.direction != "egress":
            client.delete_security_group_rule(group.id, old.id)
    for fields in group_rules(group.id, rule_count):
        client.create_security_group_rule(group.id, **fields)
    return group.id


def _plug(host: HostState, items: list[tuple[str, str, str]]) -> None:
    """(device, port id, MAC): peerless patch ports with Nova's external_ids, in batches."""
    for start in range(0, len(items), PLUG_BATCH):
        args: list[str] = []
        for dev, port_id, mac in items[start : start + PLUG_BATCH]:
            args += ["--", "--may-exist", "add-port", BR_INT, dev]
            args += ["--", "set", "Interface", dev, "type=patch", "options:peer=none"]
            args += [f"external_ids:iface-id={port_id}", f"external_ids:attached-mac={mac}"]
            args += ["external_ids:iface-status=active"]
        ovsproc.vsctl(host, *args, timeout=300)


def _build(lab: Lab, spec: LabSpec, name: str, progress: Progress) -> tuple[LabState, str]:
    state = lab.up(
        UpOptions(hosts=spec.hosts, vms_per_host=0, networks=1, name=name, firewall="openvswitch")
    )
    client = lab.client(state)
    net = client.create_network("fwbench", "vxlan", segmentation_id=7100).id
    group = _make_group(client, spec.rules)
    for i, ip in enumerate(VM_IPS):
        vm = lab.add_vm(f"fwvm{i + 1}", f"h{i + 1}", net, ip, f"fa:16:3e:fc:00:{i + 1:02x}")
        client.update_port(vm.iface_id, security_groups=[group])
    started = time.monotonic()
    index = 0
    for h, count in enumerate(spread(spec.ports, spec.hosts)):
        host = f"h{h + 1}"
        items = []
        for _ in range(count - (1 if h < len(VM_IPS) else 0)):
            port = client.create_port(
                net, host, port_mac(index), [port_ip(index)], security_groups=[group]
            )
            items.append((device(index), port.id, port_mac(index)))
            index += 1
        _plug(state.host(host), items)
        progress(f"{host}: {count} firewalled ports ({time.monotonic() - started:.0f} s)")
    return lab.state(), group


def _expected(spec: LabSpec) -> list[int]:
    """The changed rule's flows per host: one per conntrack state per local port."""
    return [n * len(RULE_STATES) for n in spread(spec.ports, spec.hosts)]


def _bridges(state: LabState) -> list[OfctlBridge]:
    return [OfctlBridge(BR_INT, h.mgmt(BR_INT), timeout=30) for h in state.hosts]


def _settle(lab: Lab, state: LabState, want: list[int], progress: Progress) -> None:
    """Until every port is ACTIVE, every agent has applied the server's revision (as its
    heartbeat reports it) and the reference rule's flows are in for every port: no change
    is timed behind the lab's own backlog (port statuses fan out as events too)."""
    client = lab.client(state)
    bridges = _bridges(state)
    names = {h.name for h in state.hosts}
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        active = all(p.status == "ACTIVE" for p in client.list_ports())
        revision = client.revision()
        applied = {h.name: h.revision for h in client.list_hosts() if h.name in names}
        counts = [b.flow_count(rule_match(REFERENCE_PORT)) for b in bridges]
        if active and counts == want and min(applied.values()) >= revision:
            progress(f"settled at revision {revision}: {want} flows per rule")
            return
        time.sleep(1.0)
    raise FlowkeeperError("bench: the lab did not settle (ports, agents, flows) in time")


def _poll_host(bridge: OfctlBridge, match: str, want: int, deadline: float) -> float | None:
    """perf_counter time of the first poll that saw `want` flows matching (None: timeout)."""
    while True:
        if bridge.flow_count(match) == want:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            return None
        time.sleep(POLL_S)


def timed_change(
    bridges: list[OfctlBridge], want: list[int], act: Callable[[], None]
) -> list[float | None]:
    """Seconds from just before act() until each host's count of the rule's flows is its
    want (polled on every host at once, each in its own thread)."""
    match = rule_match(RULE_PORT)
    seen: list[float | None] = [None] * len(bridges)
    start = time.perf_counter()
    deadline = start + CHANGE_TIMEOUT_S
    # The pollers start first (their first polls see the old count), then the API call:
    # the clock runs from just before it.

    def poll(i: int) -> None:
        seen[i] = _poll_host(bridges[i], match, want[i], deadline)

    threads = [threading.Thread(target=poll, args=(i,), daemon=True) for i in range(len(bridges))]
    for t in threads:
        t.start()
    before = time.perf_counter()
    act()
    for t in threads:
        t.join(CHANGE_TIMEOUT_S + 30)
    return [None if s is None else max(0.0, s - before) for s in seen]


def _verdict(src: VmState, dst: VmState, port: int = RULE_PORT) -> str:
    result = trafficrun.once(src, "connect", "--dst", dst.ip, "--port", str(port), "--timeout", "1")
    return str(result["verdict"])


def _wait_path(src: VmState, dst: VmState, timeout: float = 60.0) -> None:
    """Until a TCP connect to the reference rule's port is refused (allowed, nobody
    listens): the VMs reach each other (ARP, tunnels) before any verdict counts."""
    deadline = time.monotonic() + timeout
    while (got := _verdict(src, dst, REFERENCE_PORT)) != "refused":
        if time.monotonic() > deadline:
            raise FlowkeeperError(f"bench: {src.name} -> {dst.name}: {got}, never refused")
        time.sleep(0.2)


def floor(host: HostState, lines: list[str], repeats: int = FLOOR_REPEATS) -> float:
    """Median seconds of one `ovs-ofctl --bundle add-flows` of `lines` on the host's br-int
    (the flows are deleted again after each)."""
    bridge = OfctlBridge(BR_INT, host.mgmt(BR_INT), timeout=120)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        bridge.add_lines(lines)  # ovs-ofctl -O OpenFlow15 --bundle add-flows BRIDGE -
        times.append(time.perf_counter() - start)
        if bridge.flow_count(rule_match(RULE_PORT)) != len(lines):
            raise FlowkeeperError("bench: the floor's flows did not all install")
        bridge.delete_matching([rule_match(RULE_PORT)])
    return statistics.median(times)


def _changes(
    lab: Lab, state: LabState, group: str, spec: LabSpec, progress: Progress
) -> tuple[list[dict[str, Any]], list[str]]:
    client = lab.client(state)
    bridges = _bridges(state)
    want = _expected(spec)
    none = [0] * len(bridges)
    a, b = state.vm("fwvm1"), state.vm("fwvm2")
    runs: list[dict[str, Any]] = []
    dumped: list[str] = []
    rule_id = ""
    for n in range(spec.changes):
        add = n % 2 == 0

        def act(add: bool = add) -> None:
            nonlocal rule_id
            if add:
                rule_id = client.create_security_group_rule(group, **changed_rule()).id
            else:
                client.delete_security_group_rule(group, rule_id)

        times = timed_change(bridges, want if add else none, act)
        if any(t is None for t in times):
            raise FlowkeeperError(f"bench: change {n} not enforced within {CHANGE_TIMEOUT_S} s")
        done = [t for t in times if t is not None]
        run: dict[str, Any] = {
            "change": n,
            "op": "add" if add else "remove",
            "enforced_ms": round(max(done) * 1000, 1),
            "per_host_ms": [round(t * 1000, 1) for t in done],
            "flows_per_host": want,
        }
        if n < 2:
            run["verdict"] = _verdict(a, b)
            expected = "connected" if add else "dropped"
            if run["verdict"] != expected:
                raise FlowkeeperError(f"bench: {run['op']}: TCP {run['verdict']}, not {expected}")
        if add and not dumped:
            dumped = [f.render() for f in bridges[0].dump_flows() if is_rule_flow(f)]
        runs.append(run)
        progress(
            f"change {n} ({run['op']}): every host in {run['enforced_ms']} ms "
            f"(per host {run['per_host_ms']}){' ' + run['verdict'] if 'verdict' in run else ''}"
        )
    return runs, dumped


def is_rule_flow(flow: Flow) -> bool:
    """One of the changed rule's flows (table 82, tcp port RULE_PORT)."""
    return flow.table == RULE_TABLE and dict(flow.match).get("tp_dst") == str(RULE_PORT)


def run(spec: LabSpec, lab_dir: Path, lab_name: str, progress: Progress) -> dict[str, Any]:
    check(spec)
    lab = Lab(lab_dir, progress=progress)
    lab.down()
    listener: trafficrun.Background | None = None
    try:
        state, group = _build(lab, spec, lab_name, progress)
        want = _expected(spec)
        _settle(lab, state, want, progress)
        _wait_path(state.vm("fwvm1"), state.vm("fwvm2"))
        seconds = LISTEN_S
        listener = trafficrun.start(
            state,
            state.vm("fwvm2"),
            "fwbench-listen",
            "listen",
            "--port",
            str(RULE_PORT),
            "--seconds",
            str(seconds),
            seconds=seconds,
            ready=True,
        )
        runs, dumped = _changes(lab, state, group, spec, progress)
        if len(dumped) != want[0]:
            raise FlowkeeperError(f"bench: dumped {len(dumped)} rule flows on h1, not {want[0]}")
        floor_s = floor(state.host("h1"), dumped)
        summary = summarize([r["enforced_ms"] / 1000 for r in runs])
        agents = {}
        for h, flows in zip(state.hosts, want, strict=True):
            log_lines = Path(h.path("agent.log")).read_text().splitlines()
            agents[h.name] = median_phases(agent_phases(log_lines, flows)[-spec.changes :])
        progress(f"agents' own apply times (median ms): {agents}")
        progress(f"floor: ovs-ofctl --bundle add-flows of {len(dumped)} flows {floor_s:.4f} s")
        restarts = fwrestart.run(lab, state, progress)
        return {
            "ports": spec.ports,
            "hosts": spec.hosts,
            "ports_per_host": spread(spec.ports, spec.hosts),
            "rules": spec.rules,
            "changes": spec.changes,
            "poll_interval_ms": POLL_S * 1000,
            "flows_per_change_per_host": want,
            "enforced": summary,
            "by_op": {
                op: summarize([r["enforced_ms"] / 1000 for r in runs if r["op"] == op])
                for op in ("add", "remove")
            },
            "agent_apply_median_ms": agents,
            "floor_ofctl_bundle_add_s": round(floor_s, 4),
            "p50_over_floor": ratio(summary["p50_ms"], floor_s),
            "p99_over_floor": ratio(summary["p99_ms"], floor_s),
            "runs": runs,
            "agent_restarts": restarts,
        }
    finally:
        if listener is not None:
            listener.stop()
        lab.down()
