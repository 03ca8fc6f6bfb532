"""`flowkeeper bench ...`: benchmarks that print and save their numbers (JSON)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from flowkeeper.cli.common import progress
from flowkeeper.errors import UsageError
from flowkeeper.fsutil import atomic_write

DEFAULT_OUT = Path("results")


def register(sub: Any) -> None:
    bench = sub.add_parser("bench", help="benchmarks (print and save JSON)")
    cmds = bench.add_subparsers(dest="bench_command", required=True)
    of = cmds.add_parser("openflow", help="install N flows in one bundle, each mechanism")
    of.add_argument("--sizes", default="20000,200000", help="comma-separated flow counts")
    of.add_argument("--repeats", type=int, default=3)
    of.add_argument("--methods", default="ofctl-add,ofctl-replace,preencoded,osken,wire")
    of.add_argument(
        "--delta-repeats",
        type=int,
        default=50,
        help="with method wire: one-flow deltas timed per mechanism (ovs-ofctl vs wire)",
    )
    of.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for the JSON")
    of.add_argument("--lab-dir", type=Path, default=Path("/var/tmp/flowkeeper-bench-lab"))
    of.add_argument("--lab-name", default="fkbench", help="lab name (namespace prefix)")
    of.add_argument("--json", action="store_true", help="print the JSON instead of a table")
    of.set_defaults(func=_openflow)

    rec = cmds.add_parser(
        "recovery",
        help="host reboot: snapshot restore vs cold resync vs "
        "ovs-ofctl (P1), restore alone (P2) and at 200k flows (P3)",
    )
    rec.add_argument("--ports", type=int, default=4000)
    rec.add_argument("--networks", type=int, default=10)
    rec.add_argument("--virtual-hosts", type=int, default=100)
    rec.add_argument(
        "--ips-per-port",
        type=int,
        default=3,
        help="addresses per remote port (one ARP-responder flow each); 8 with 20000 ports "
        "gives ~200k flows",
    )
    rec.add_argument("--methods", default="snapshot,cold-resync,ofctl-replace,port-by-port")
    rec.add_argument(
        "--port-by-port-limit",
        type=float,
        default=120.0,
        help="stop the port-by-port rebuild after this many seconds",
    )
    rec.add_argument(
        "--restore-sizes",
        default="20000,200000",
        help="flow counts for restore alone vs ovs-ofctl (empty: skip)",
    )
    rec.add_argument("--repeats", type=int, default=3)
    rec.add_argument("--out", type=Path, default=DEFAULT_OUT)
    rec.add_argument("--lab-dir", type=Path, default=Path("/var/tmp/flowkeeper-bench-rec"))
    rec.set_defaults(func=_recovery)

    rs = cmds.add_parser(
        "restart",
        help="agent and OVS restarts under traffic vs flush-and-"
        "rebuild: loss, longest gap per VM, time to in-sync",
    )
    rs.add_argument("--ports", type=int, default=4000)
    rs.add_argument("--networks", type=int, default=10)
    rs.add_argument("--virtual-hosts", type=int, default=100)
    rs.add_argument(
        "--scenarios",
        default="agent-graceful,agent-kill9,flush-and-rebuild,ovs-kill9,ovs-restart-frw",
    )
    _twin_arguments(rs)
    rs.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON goes")
    rs.add_argument(
        "--lab-dir",
        type=Path,
        default=Path("/var/tmp/flowkeeper-bench-restart"),
        help="lab directory (made and removed by the bench)",
    )
    rs.set_defaults(func=_restart)

    cp = cmds.add_parser(
        "controlplane",
        help="port create -> flows on every relevant host; "
        "messages per port event, targeted vs fan-out to all",
    )
    cp.add_argument("--hosts", default="200,1000", help="comma-separated host counts")
    cp.add_argument("--ports", type=int, default=200, help="ports created per phase")
    cp.add_argument("--hosts-per-network", type=int, default=10)
    cp.add_argument(
        "--store",
        default="sqlite",
        help="store backend(s), comma-separated: sqlite, etcd (each a configuration)",
    )
    cp.add_argument(
        "--servers",
        default="1",
        help="server count(s), comma-separated; every store runs with every count",
    )
    cp.add_argument("--clients", type=int, default=32, help="concurrent clients, throughput")
    cp.add_argument(
        "--throughput-ports", type=int, default=2000, help="ports created by the clients"
    )
    cp.add_argument(
        "--raw-seconds", type=float, default=5.0, help="length of the raw store-rate loop"
    )
    cp.add_argument("--out", type=Path, default=DEFAULT_OUT)
    cp.add_argument("--lab-dir", type=Path, default=Path("/var/tmp/flowkeeper-bench-cp"))
    cp.add_argument("--json", action="store_true")
    cp.set_defaults(func=_controlplane)

    _register_firewall(cmds)


def _register_firewall(cmds: Any) -> None:
    fwb = cmds.add_parser(
        "firewall",
        help="security groups: flows per port, build and install time at N ports "
        "(conjunctions vs the naive member x rule product)",
    )
    fwb.add_argument(
        "--ports",
        default="100,1000,5000",
        help="comma-separated port counts for the pipeline and install sizes ('none': skip)",
    )
    fwb.add_argument("--rules", type=int, default=10, help="rules in the ports' group")
    fwb.add_argument("--networks", type=int, default=10, help="networks the ports spread over")
    fwb.add_argument("--repeats", type=int, default=1, help="installs timed per size")
    fwb.add_argument(
        "--no-install",
        action="store_true",
        help="the pure pipeline only (no lab, no OVS; no --lab-ports run either)",
    )
    fwb.add_argument(
        "--lab-ports",
        type=int,
        default=1000,
        help="rule change -> every host enforcing it, in a real lab with agents: this many "
        "firewalled ports in all (0: skip)",
    )
    fwb.add_argument(
        "--lab-hosts", type=int, default=2, help="hosts the --lab-ports ports spread over"
    )
    fwb.add_argument(
        "--changes",
        type=int,
        default=20,
        help="rule changes timed in the lab run (even: add and remove alternate)",
    )
    fwb.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for the JSON")
    fwb.add_argument(
        "--lab-dir",
        type=Path,
        default=Path("/var/tmp/flowkeeper-bench-fw"),
        help="lab directory (the install lab, then the --lab-ports lab)",
    )
    fwb.add_argument("--lab-name", default="fkbfw", help="lab name (namespace prefix)")
    fwb.add_argument("--json", action="store_true", help="print the JSON instead of a table")
    fwb.set_defaults(func=_firewall)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--sizes must be comma-separated whole numbers, got {text!r}") from None
    if not sizes or not all(1 <= s <= 1_000_000 for s in sizes):
        raise UsageError("--sizes must be between 1 and 1,000,000 flows each")
    return sizes


def _save(name: str, data: dict[str, Any], out: Path) -> Path:
    data["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _recovery(args: argparse.Namespace) -> int:
    from flowkeeper.bench import plot, recovery, restore
    from flowkeeper.bench.topology import TopologySpec

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in recovery.METHODS]
    if unknown:
        raise UsageError(f"unknown method(s) {unknown}; choose from {', '.join(recovery.METHODS)}")
    if not 100 <= args.ports <= 20000 or not 1 <= args.networks <= 50:
        raise UsageError("--ports must be 100..20000 and --networks 1..50")
    if not 1 <= args.virtual_hosts <= 1000 or not 1 <= args.repeats <= 10:
        raise UsageError("--virtual-hosts must be 1..1000 and --repeats 1..10")
    if not 1 <= args.ips_per_port <= 20:
        raise UsageError("--ips-per-port must be 1..20")
    sizes = _sizes(args.restore_sizes) if args.restore_sizes else []
    data: dict[str, Any] = {"benchmark": "recovery"}
    if sizes:
        data["restore"] = restore.run(sizes, args.repeats, args.lab_dir, progress)["results"]
    if methods:
        spec = TopologySpec(
            ports=args.ports,
            networks=args.networks,
            ips_per_port=args.ips_per_port,
            virtual_hosts=args.virtual_hosts,
        )
        data["reboot"] = recovery.run(
            spec, methods, args.lab_dir, progress, port_by_port_limit=args.port_by_port_limit
        )
    path = _save("recovery", data, args.out)
    print(f"saved {path}")
    if methods:
        png = plot.timeline_png(
            data["reboot"]["runs"],
            path.with_suffix(".png"),
            f"Host reboot, {data['reboot']['flows_on_h1']} flows on the host",
            window_s=12.0,
        )
        print(f"saved {png}")
        print(f"{'method':15} {'recovery s':>11} {'VIFs plugged s':>15}")
        for run in data["reboot"]["runs"]:
            print(f"{run['method']:15} {run['recovery_s']!s:>11} {run['vifs_plugged_after_s']:>15}")
    for res in data.get("restore", []):
        print(
            f"{res['flows']:>7} flows: snapshot restore {res['snapshot_restore_s']:.3f} s, "
            f"ovs-ofctl replace-flows {res['ofctl_replace_s']:.3f} s "
            f"(ratio {res['ratio_restore_to_ofctl']})"
        )
    return 0


def _twin_arguments(rs: Any) -> None:
    """`bench restart --twin` and its options."""
    rs.add_argument(
        "--twin",
        action="store_true",
        help="twin switch slots instead of the scenarios: hot upgrade (VM by VM) and crash "
        "failover, each cut's budget, against a plain vswitchd restart and the kill -9 "
        "restore measured in the same run, for every --twin-flows x --twin-vms",
    )
    rs.add_argument(
        "--twin-flows",
        default="200,20000",
        metavar="N,N",
        help="with --twin: approximate flow counts on the measured host (200: no remote "
        "ports; 20000: 4,000 ports on 100 virtual hosts)",
    )
    rs.add_argument(
        "--twin-vms",
        default="10,40",
        metavar="N,N",
        help="with --twin: probe VMs per host (each on its own network)",
    )
    rs.add_argument(
        "--twin-handover",
        default="steer",
        metavar="MODE,MODE",
        help="with --twin: the VIF handovers to measure, each in a twin-slot lab of its own: "
        "netns (the tap moves between the slots' namespaces) and/or steer (a tap in each "
        "slot, the NIC steered by tc)",
    )
    rs.add_argument(
        "--twin-rounds",
        type=int,
        default=1,
        metavar="N",
        help="with --twin: upgrades and failovers per twin-slot lab (1..10), each after a "
        "probe window with no cut (the probes' own longest gaps)",
    )
    rs.add_argument(
        "--lab-name",
        default="fksl",
        help="with --twin: the twin labs' name (the plain lab's is NAME + 'p'); 1-7 "
        "letters or digits, unlike any lab already up",
    )


def _round_lines(rounds: list[dict[str, Any]]) -> list[str]:
    """One line per round: the per-VM longest gaps (lowest-highest) and the losses."""

    def span(part: dict[str, Any]) -> str:
        gaps, outs = part["per_vm_gap_ms"], part.get("per_vm_outage_ms")
        out = f"outage {min(outs)}-{max(outs)} ms, " if outs else ""
        return f"{out}gap {min(gaps)}-{max(gaps)} ms, lost {part['lost']}/{part['sent']}"

    lines = []
    for n, one in enumerate(rounds, start=1):
        fail = one["slot-failover"]
        moves = [c["vif_move_ms"] for c in one["slot-upgrade"]["cuts"]]
        lines.append(
            f"round {n}: no cut {span(one['baseline'])}; upgrade "
            f"{span(one['slot-upgrade'])} (moves {min(moves)}-{max(moves)} ms); "
            f"failover {span(fail)} (move {fail['agent_failover'].get('move_ms')} ms, "
            f"death seen after {fail['death_seen_after_ms']} ms)"
        )
    return lines


def _counts(text: str, flag: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"{flag} must be comma-separated whole numbers, got {text!r}") from None


def _twin(args: argparse.Namespace) -> int:
    from flowkeeper.bench import slotbench

    sizes, vms = _counts(args.twin_flows, "--twin-flows"), _counts(args.twin_vms, "--twin-vms")
    if not sizes or any(not 100 <= n <= 20000 for n in sizes):
        raise UsageError("--twin-flows: flow counts 100..20000, comma-separated")
    if not vms or any(not 1 <= n <= 50 for n in vms):
        raise UsageError("--twin-vms: VM counts 1..50, comma-separated")
    handovers = tuple(h.strip() for h in args.twin_handover.split(",") if h.strip())
    if not handovers or any(h not in slotbench.HANDOVERS for h in handovers):
        raise UsageError("--twin-handover: netns and/or steer, comma-separated")
    if not args.lab_name.isalnum() or len(args.lab_name) > 7:
        raise UsageError(f"--lab-name must be 1-7 letters or digits, got {args.lab_name!r}")
    if not 1 <= args.twin_rounds <= 10:
        raise UsageError(f"--twin-rounds must be 1..10, got {args.twin_rounds}")
    partial = args.out / f"bench-restart-twin-partial-{time.strftime('%Y%m%d-%H%M%S')}.json"

    def checkpoint(so_far: dict[str, Any]) -> None:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write(partial, (json.dumps(so_far, indent=2) + "\n").encode(), 0o644)
        progress(f"twin bench: {len(so_far['rows'])} rows so far in {partial}")

    data = slotbench.run_matrix(
        sizes,
        vms,
        args.lab_dir,
        progress,
        handovers=handovers,
        name=args.lab_name,
        rounds=args.twin_rounds,
        checkpoint=checkpoint,
    )
    path = _save("restart-twin", data, args.out)
    partial.unlink(missing_ok=True)
    print(f"saved {path}")
    print(_twin_table(data))
    return 0


def _twin_table(data: dict[str, Any]) -> str:
    head = (
        f"{'flows':>6} {'VMs':>4} {'VIFs':>6} {'move ms':>8} {'upg out':>8} {'/move':>6} "
        f"{'restart':>8} {'/restart':>8} {'fail out':>9} {'kill9':>7} {'/kill9':>7} "
        f"{'upg gap':>8} {'fail gap':>9}"
    )
    lines = ["outage: longest send-time span of lost probes (1 ms around each cut); "
             "gap: longest time without a reply", head]  # fmt: skip
    for row in data["rows"]:
        r = row["ratios"]
        lines.append(
            f"{row['twin']['flows_on_h1']:>6} {row['vms']:>4} "
            f"{row.get('vif_handover', 'netns'):>6} {r['vif_move_floor_ms']!s:>8} "
            f"{r['upgrade_max_outage_ms']:>8} {r['upgrade_outage_over_vif_move']!s:>6} "
            f"{r['plain_restart_outage_ms']:>8.0f} "
            f"{r['upgrade_outage_over_plain_restart']!s:>8} "
            f"{r['failover_max_outage_ms']:>9} {r['kill9_restore_outage_ms']:>7.0f} "
            f"{r['failover_outage_over_kill9_restore']!s:>7} "
            f"{r['upgrade_max_gap_ms']:>8} {r['failover_max_gap_ms']:>9}"
        )
        for cut in row["twin"]["slot-upgrade"]["cuts"]:
            overlap = (
                f" (old path dropped {cut['overlap_ms']:.0f} ms later, {cut['break_ms']} ms)"
                if cut.get("overlap_ms")
                else ""
            )
            lines.append(
                f"    cut {cut['vm']}: VIF move {cut['vif_move_ms']} ms{overlap}, bind "
                f"{cut['bind_ms']} ms, first packet {cut['first_packet_ms']} ms, outage "
                f"{cut.get('outage_ms')} ms (lost {cut.get('lost_in_window')}/"
                f"{cut.get('sent_in_window')}, {cut.get('duplicated_in_window')} twice), "
                f"gap in the window {cut.get('window_gap_ms')} ms"
            )
        up = row["twin"]["slot-upgrade"]
        pc = r.get("per_cut_outage_ms") or {}
        if pc.get("cuts"):
            lines.append(
                f"    per cut: outage median/p90/max {pc['median']}/{pc['p90']}/{pc['max']} ms, "
                f"gap in the window mean/median/max {pc.get('gap_mean')}/{pc.get('gap_median')}/"
                f"{pc.get('gap_max')} ms, probes answered twice mean {pc.get('duplicated_mean')}"
            )
        sc = r.get("sham_per_cut")
        if sc:
            lines.append(
                f"    sham cuts' gap in the window mean/median/max {sc['gap_mean']}/"
                f"{sc['gap_median']}/{sc['gap_max']} ms; cut / sham: "
                f"{r.get('per_cut_gap_over_sham')}"
            )
        fail = row["twin"]["slot-failover"]
        if fail.get("fine_window_gap_ms"):
            lines.append(
                f"    failover: the 1 ms VMs' gaps {fail['fine_window_gap_ms']} ms, against "
                f"{r['kill9_restore_gap_ms']} ms for the kill -9 restore: "
                f"{r.get('failover_window_gap_over_kill9_restore')}"
            )
        lines.append(
            f"    peer flow changes during the cuts: {up['peer_flow_changes_during_cuts']}; "
            f"peer flows the same after: {up['peer_flows_same_after']}"
        )
        if up.get("sham"):
            sham = up["sham"]
            lines.append(
                f"    sham cuts (each VM steered where it is; the lab's floor): outage max "
                f"{r.get('sham_max_outage_ms')} ms, lost {sham['lost']}/{sham['sent']}; "
                f"upgrade outage / sham: {r.get('upgrade_outage_over_sham')}"
            )
        lines += [f"    {line}" for line in _round_lines(row["twin"].get("rounds", []))]
    for size, ratio in data.get("upgrade_outage_most_over_fewest_vms", {}).items():
        lines.append(f"upgrade outage, most VMs / fewest VMs at {size} flows: {ratio}")
    for size, ratio in data["upgrade_gap_most_over_fewest_vms"].items():
        lines.append(f"upgrade gap, most VMs / fewest VMs at {size} flows: {ratio}")
    for stat, by_size in data.get("per_cut_gap_most_over_fewest_vms", {}).items():
        for size, ratio in by_size.items():
            lines.append(f"per-cut gap ({stat}), most VMs / fewest VMs at {size} flows: {ratio}")
    for stat, by_size in data.get("per_cut_gap_over_sham_most_over_fewest_vms", {}).items():
        for size, ratio in by_size.items():
            lines.append(
                f"per-cut gap over the sham's ({stat}), most VMs / fewest VMs at {size} flows: "
                f"{ratio}"
            )
    return "\n".join(lines)


def _restart(args: argparse.Namespace) -> int:
    from flowkeeper.bench import plot, restart
    from flowkeeper.bench.topology import TopologySpec

    if args.twin:
        return _twin(args)

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in restart.SCENARIOS]
    if unknown or not scenarios:
        raise UsageError(
            f"unknown scenario(s) {unknown}; choose from {', '.join(restart.SCENARIOS)}"
        )
    if not 100 <= args.ports <= 20000 or not 1 <= args.networks <= 50:
        raise UsageError("--ports must be 100..20000 and --networks 1..50")
    spec = TopologySpec(ports=args.ports, networks=args.networks, virtual_hosts=args.virtual_hosts)
    data = restart.run(spec, scenarios, args.lab_dir, progress)
    path = _save("restart", data, args.out)
    runs = [dict(r, method=r["scenario"], recovery_s=None) for r in data["runs"]]
    png = plot.timeline_png(
        runs,
        path.with_suffix(".png"),
        f"Restarts under traffic, {data['flows_on_h1']} flows on the host",
        window_s=restart.plot_window(data["runs"]),
        zero_label="restart begins",
    )
    print(f"saved {path}\nsaved {png}")
    print(f"{'scenario':18} {'lost':>6} {'sent':>7} {'max gap ms':>11} {'in sync s':>10}")
    for r in data["runs"]:
        print(
            f"{r['scenario']:18} {r['lost']:>6} {r['sent']:>7} {r['max_gap_ms']:>11.1f} "
            f"{r['in_sync_after_s']!s:>10}"
        )
    return 0


def _controlplane(args: argparse.Namespace) -> int:
    from flowkeeper.bench import controlplane

    sizes = _sizes(args.hosts)
    if not all(3 <= s <= 2000 for s in sizes):
        raise UsageError("--hosts: each count must be 3..2000")
    if not 1 <= args.ports <= 5000 or not 2 <= args.hosts_per_network <= 500:
        raise UsageError("--ports must be 1..5000 and --hosts-per-network 2..500")
    configs = _cp_configs(args)
    data = controlplane.run(
        sizes, args.ports, args.hosts_per_network, args.lab_dir, progress, configs=configs
    )
    path = _save("controlplane", data, args.out)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(_cp_table(data["phases"]))
        print(f"saved {path}")
    return 0


def _cp_configs(args: argparse.Namespace) -> list[Any]:
    from flowkeeper.bench.controlplane import Config

    stores = [s.strip() for s in args.store.split(",") if s.strip()]
    if not stores or any(s not in ("sqlite", "etcd") for s in stores):
        raise UsageError(
            f"--store must be sqlite, etcd or both (comma-separated), got {args.store!r}"
        )
    try:
        counts = [int(n) for n in args.servers.split(",") if n.strip()]
    except ValueError:
        raise UsageError(
            f"--servers must be comma-separated counts, got {args.servers!r}"
        ) from None
    if not counts or not all(1 <= n <= 5 for n in counts):
        raise UsageError("--servers: each count must be 1..5")
    if not 1 <= args.clients <= 256 or not 1 <= args.throughput_ports <= 50_000:
        raise UsageError("--clients must be 1..256 and --throughput-ports 1..50000")
    if not 0.5 <= args.raw_seconds <= 120:
        raise UsageError("--raw-seconds must be 0.5..120")
    return [
        Config(s, n, args.clients, args.throughput_ports, args.raw_seconds)
        for s in stores
        for n in counts
    ]


def _cp_table(phases: list[dict[str, Any]]) -> str:
    def num(value: Any, fmt: str = ".1f") -> str:
        return "-" if value is None else format(value, fmt)

    lines = [
        f"{'store':>6} {'srv':>3} {'hosts':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'hosts/ev':>8} {'reduct':>7} {'creates/s':>9} {'raw txn/s':>9} {'ratio':>6} "
        f"{'KiB/port':>8}"
    ]
    for p in phases:
        lat = p["latency_ms"]
        lines.append(
            f"{p['store']:>6} {p['servers']:>3} {p['hosts']:>6} {num(lat['p50']):>7} "
            f"{num(lat['p99']):>7} {num(lat['max']):>7} "
            f"{num(p['hosts_reached_per_port_event']):>8} "
            f"{num(p['reduction_vs_fanout_to_all']):>6}x "
            f"{num(p['throughput'].get('ports_per_s')):>9} "
            f"{num(p['raw_store'].get('txn_per_s')):>9} {num(p['throughput_to_raw'], '.2f'):>6} "
            f"{num(p['memory'].get('kib_per_port'), '.2f'):>8}"
        )
    return "\n".join(lines)


def _openflow(args: argparse.Namespace) -> int:
    from flowkeeper.bench import openflow

    sizes = _sizes(args.sizes)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in openflow.METHODS]
    if unknown or not methods:
        raise UsageError(f"unknown method(s) {unknown}; choose from {', '.join(openflow.METHODS)}")
    if not 1 <= args.repeats <= 20:
        raise UsageError("--repeats must be 1..20")
    if not 1 <= args.delta_repeats <= 10_000:
        raise UsageError("--delta-repeats must be 1..10000")
    data = openflow.run(
        sizes,
        args.repeats,
        methods,
        args.lab_dir,
        progress,
        delta_repeats=args.delta_repeats,
        lab_name=args.lab_name,
    )
    data["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-openflow-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(
            f"{'method':15} {'flows':>8} {'median s':>9} {'min s':>8} {'flows/s':>9} "
            f"{'prepare s':>9}"
        )
        for r in data["results"]:
            print(
                f"{r['method']:15} {r['flows']:>8} {r['median_s']:>9.3f} {r['min_s']:>8.3f} "
                f"{r['flows_per_s']:>9} {r['prepare_s']:>9.3f}"
            )
        for d in data.get("delta", []):
            print(
                f"{d['method']:15} {d['delta']}: median {d['median_ms']:.2f} ms, "
                f"min {d['min_ms']:.2f}, p90 {d['p90_ms']:.2f} ({d['repeats']} runs)"
            )
        print(f"saved {path}")
    return 0


def _fw_lab_spec(args: argparse.Namespace) -> Any:
    """The --lab-ports run's spec (None: no lab run), checked."""
    from flowkeeper.bench.fwlab import LabSpec, check

    if args.no_install or args.lab_ports == 0:
        return None
    spec = LabSpec(
        ports=args.lab_ports, hosts=args.lab_hosts, changes=args.changes, rules=args.rules
    )
    try:
        check(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return spec


def _firewall(args: argparse.Namespace) -> int:
    from flowkeeper.bench import firewall, fwlab

    sizes = [] if args.ports.strip().lower() == "none" else _sizes(args.ports)
    if not 3 <= args.rules <= 200:
        raise UsageError("--rules must be 3..200")
    if not 1 <= args.networks <= 4000 or not 1 <= args.repeats <= 20:
        raise UsageError("--networks must be 1..4000 and --repeats 1..20")
    spec = _fw_lab_spec(args)
    if not sizes and spec is None:
        raise UsageError("nothing to run: --ports none and no --lab-ports run")
    data = firewall.run(
        sizes,
        rule_count=args.rules,
        networks=args.networks,
        repeats=args.repeats,
        lab_dir=args.lab_dir,
        progress=progress,
        lab_name=args.lab_name,
        install=not args.no_install and bool(sizes),
    )
    if spec is not None:
        data["enforcement"] = fwlab.run(spec, args.lab_dir, args.lab_name, progress)
    data["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-firewall-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    if args.json:
        print(json.dumps(data, indent=2))
    elif data["results"]:
        print(
            f"{'ports':>6} {'fw flows':>9} {'/port':>6} {'members':>8} {'naive':>10} "
            f"{'ratio':>6} {'build s':>8} {'member':>8} {'rule':>8} {'wire s':>7} {'ofctl s':>8}"
        )
        for r in data["results"]:
            print(
                f"{r['ports']:>6} {r['firewall_flows']:>9} {r['firewall_flows_per_port']:>6} "
                f"{r['member_flows']:>8} {r['naive_firewall_flows']:>10} "
                f"{r['naive_over_conjunction']:>6} {r['build_s']:>8} "
                f"{r['incremental_member_change_s']:>8} {r['incremental_rule_change_s']:>8} "
                f"{r.get('install_wire_s', '-'):>7} {r.get('install_ofctl_replace_s', '-'):>8}"
            )
    if "enforcement" in data and not args.json:
        print(_fw_enforcement_table(data["enforcement"]))
    print(f"saved {path}")
    return 0


def _fw_enforcement_table(e: dict[str, Any]) -> str:
    from flowkeeper.bench.fwlab import ratio

    s, floor = e["enforced"], e["floor_ofctl_bundle_add_s"]
    lines = [
        f"rule change -> every host enforcing it: {e['ports']} ports on {e['hosts']} hosts "
        f"{e['ports_per_host']}, {e['changes']} changes, flows per change per host "
        f"{e['flows_per_change_per_host']}",
        f"{'changes':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'min ms':>7} "
        f"{'floor ms':>8} {'p50/floor':>9}",
    ]
    for label, row in [("all", s), *e["by_op"].items()]:
        lines.append(
            f"{label:>8} {row['p50_ms']:>7} {row['p99_ms']:>7} {row['max_ms']:>7} "
            f"{row['min_ms']:>7} {floor * 1000:>8.1f} "
            f"{ratio(row['p50_ms'], floor)!s:>9}"
        )
    for host, phases in e.get("agent_apply_median_ms", {}).items():
        parts = ", ".join(f"{k} {v:g}" for k, v in phases.items())
        lines.append(f"agent {host} apply, median ms: {parts}")
    for r in e.get("agent_restarts", []):
        lines.append(
            f"agent restart ({r['restart']}) of {r['host']}: in sync after "
            f"{r['in_sync_after_s']} s; stream {r['stream_sent_bytes']} bytes, "
            f"{r['stream_lost_bytes']} lost, {r['stream_resets']} resets"
        )
    return "\n".join(lines)
