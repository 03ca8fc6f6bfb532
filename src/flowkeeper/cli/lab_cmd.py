"""`flowkeeper lab ...`: bring the real-OVS lab up and down, look at it, ping across it."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowkeeper.cli.common import emit, progress
from flowkeeper.errors import UsageError

if TYPE_CHECKING:  # the lab (OVS, HTTP clients) is loaded only by lab commands
    from flowkeeper.lab.lab import Lab
from flowkeeper.lab.run import LabError, in_ns


def register(sub: Any) -> None:
    lab = sub.add_parser("lab", help="the real-OVS test lab (namespaces, OVS, VMs)")
    lab.add_argument("--lab-dir", type=Path, help="lab directory (env FLOWKEEPER_LAB_DIR)")
    cmds = lab.add_subparsers(dest="lab_command", required=True)

    up = cmds.add_parser("up", help="create hosts, underlay and VMs")
    up.add_argument("--hosts", type=int, default=2)
    up.add_argument("--vms-per-host", type=int, default=1)
    up.add_argument("--networks", type=int, default=1)
    up.add_argument("--name", default="fk", help="prefix of the lab's namespaces")
    up.add_argument(
        "--flows",
        choices=["agents", "static", "none"],
        default="agents",
        help="agents: server + one agent per host (default); static: fixed VXLAN flows, "
        "no control plane; none: empty tables",
    )
    up.add_argument("--network-type", choices=["vxlan", "gre", "mixed"], default="vxlan")
    up.add_argument("--no-l2pop", action="store_true", help="agents flood and learn")
    up.add_argument(
        "--virtual-hosts",
        type=int,
        default=0,
        help="control-plane-only hosts bound by simulated agents",
    )
    up.add_argument(
        "--virtual-ports",
        type=int,
        default=0,
        help="ports on the virtual hosts, spread over the networks",
    )
    up.add_argument(
        "--tls", action="store_true", help="HTTPS API with a CA made for the lab (LABDIR/tls)"
    )
    up.add_argument(
        "--store",
        choices=["sqlite", "etcd"],
        default="sqlite",
        help="the servers' store: one SQLite file (default) or a 3-member etcd cluster "
        "on 127.0.0.1 (LABDIR/etcd)",
    )
    up.add_argument(
        "--servers", type=int, default=1, help="flowkeeper servers on the one store (1..5)"
    )
    up.add_argument(
        "--watch-log",
        action="store_true",
        help="agents log every watch message to LABDIR/hosts/hN/watch.ndjson",
    )
    up.add_argument(
        "--firewall",
        choices=["openvswitch", "noop"],
        default="noop",
        help="every agent's --firewall (default noop here; the agent's own default is openvswitch)",
    )
    up.add_argument(
        "--standby",
        action="store_true",
        help="twin switch slots: every host also gets slot b (NAME-hN-b, its own OVS, the "
        "NIC mirrored to both, the fk-slot link), each slot's vswitchd supervised",
    )
    up.add_argument(
        "--vif-handover",
        choices=["netns", "steer"],
        default="netns",
        help="with --standby, how a VM's NIC changes slot: netns (default: its tap moves "
        "between the slots' namespaces) or steer (a tap in each slot; a hypervisor "
        "namespace NAME-hN-hv steers the NIC to one of them with tc)",
    )
    up.add_argument("--json", action="store_true")
    up.set_defaults(func=_up)

    down = cmds.add_parser("down", help="remove everything the lab made (idempotent)")
    down.add_argument("--json", action="store_true")
    down.set_defaults(func=_down)

    status = cmds.add_parser("status", help="hosts, daemons and VMs")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)

    ping = cmds.add_parser("ping", help="probe from one VM to another")
    ping.add_argument("src")
    ping.add_argument("dst")
    ping.add_argument("--count", type=int, default=5)
    ping.add_argument("--interval", type=float, default=0.2)
    ping.add_argument("--json", action="store_true")
    ping.set_defaults(func=_ping)

    _register_restarts(cmds)

    srv = cmds.add_parser("server", help="stop or start one of the lab's flowkeeper servers")
    srv.add_argument("action", choices=["stop", "start"])
    srv.add_argument("index", nargs="?", type=int, default=1, help="server number (default 1)")
    srv.add_argument("--kill", action="store_true", help="stop with kill -9")
    srv.set_defaults(func=_server)

    etcd = cmds.add_parser("etcd", help="stop or start one member of the lab's etcd cluster")
    etcd.add_argument("action", choices=["stop", "start"])
    etcd.add_argument("index", type=int, help="member number (1..3)")
    etcd.add_argument("--kill", action="store_true", help="stop with kill -9")
    etcd.set_defaults(func=_etcd)

    exe = cmds.add_parser("exec", help="run a command inside a VM or host namespace")
    exe.add_argument("target")
    exe.add_argument("cmd", nargs=argparse.REMAINDER)
    exe.set_defaults(func=_exec)


def _register_restarts(cmds: Any) -> None:
    """Reboots, restarts and the hot OVS upgrade."""
    reboot = cmds.add_parser("reboot", help="simulate a power loss of HOST and boot it again")
    reboot.add_argument("host")
    reboot.add_argument("--no-agent", action="store_true", help="do not start the agent")
    reboot.set_defaults(func=_reboot)

    ra = cmds.add_parser("restart-agent", help="restart HOST's agent (graceful or kill -9)")
    ra.add_argument("host")
    ra.add_argument("--kill", action="store_true", help="kill -9 instead of SIGTERM")
    ra.set_defaults(func=_restart_agent)

    ro = cmds.add_parser("restart-ovs", help="restart HOST's ovs-vswitchd under traffic")
    ro.add_argument("host")
    ro.add_argument("--kill", action="store_true", help="kill -9 instead of SIGTERM")
    ro.add_argument(
        "--no-flow-restore-wait",
        action="store_true",
        help="do not set other_config:flow-restore-wait before the restart",
    )
    ro.set_defaults(func=_restart_ovs)

    up = cmds.add_parser(
        "upgrade-ovs",
        help="hot OVS upgrade of HOST, VMs moved one at a time between its two switch "
        "slots (a lab made with --standby)",
    )
    up.add_argument("host")
    up.add_argument("--settle", type=float, default=0.2, help="seconds between two VMs' cut-overs")
    up.add_argument(
        "--overlap",
        type=float,
        default=None,
        help="steered VMs (--vif-handover steer): seconds the old slot's frames still reach "
        "the VM after its new path is made, so that none still in flight in the old slot is "
        "lost (a frame may arrive twice meanwhile); 0 switches both ways at once "
        "(default 0.03)",
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for a restarted slot to be prepared",
    )
    up.add_argument("--json", action="store_true")
    up.set_defaults(func=_upgrade_ovs)


def _lab(args: argparse.Namespace) -> Lab:
    from flowkeeper.lab.lab import Lab

    return Lab(args.lab_dir, progress=progress)


def _up(args: argparse.Namespace) -> int:
    from flowkeeper.lab.lab import UpOptions

    opts = UpOptions(
        hosts=args.hosts,
        vms_per_host=args.vms_per_host,
        networks=args.networks,
        name=args.name,
        static_flows=args.flows == "static",
        agents=args.flows == "agents",
        l2pop=not args.no_l2pop,
        network_type=args.network_type,
        virtual_hosts=args.virtual_hosts,
        virtual_ports=args.virtual_ports,
        tls=args.tls,
        store=args.store,
        servers=args.servers,
        watch_log=args.watch_log,
        firewall=args.firewall,
        standby=args.standby,
        vif_handover=args.vif_handover,
    )
    state = _lab(args).up(opts)
    vms = ", ".join(f"{v.name}={v.ip}" for v in state.vms)
    emit(
        _lab(args).status(),
        args.json,
        f"lab {state.name} up in {state.dir}: {len(state.hosts)} hosts; VMs: {vms or 'none'}",
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    done = _lab(args).down()
    emit(done, args.json, "\n".join(done) if done else "nothing to remove")
    return 0


def _status(args: argparse.Namespace) -> int:
    st = _lab(args).status()
    lines = [f"lab {st['lab']} in {st['dir']}, store {st['store']} {st['store_url']}"]
    for srv in st["servers"]:  # type: ignore[attr-defined]
        up = "up" if srv["up"] else "DOWN"
        lines.append(f"  server {srv['index']} {srv['url']:26} pid {srv['pid'] or '-'} {up}")
    for m in st.get("etcd", []):  # type: ignore[attr-defined]
        up = "up" if m["up"] else "DOWN"
        lines.append(f"  etcd   {m['index']} {m['endpoint']:26} pid {m['pid'] or '-'} {up}")
    for h in st["hosts"]:  # type: ignore[attr-defined]
        daemons = " ".join(f"{d}:{'up' if ok else 'DOWN'}" for d, ok in h["daemons"].items())
        lines.append(f"  host {h['name']:6} {h['tunnel_ip']:15} {daemons}")
        if "standby" in h:
            sb = h["standby"]
            daemons = " ".join(f"{d}:{'up' if ok else 'DOWN'}" for d, ok in sb["daemons"].items())
            restarts = h["supervisor_restarts"]
            lines.append(
                f"       slot b {sb['namespace']:15} {daemons}; supervisor restarts "
                f"a={restarts['a']} b={restarts['b']}"
            )
        if "hypervisor" in h:
            lines.append(f"       hypervisor {h['hypervisor']} (VM NICs steered by tc)")
    for v in st["vms"]:  # type: ignore[attr-defined]
        lines.append(
            f"  vm   {v['name']:10} on {v['host']:4} net {v['network']} "
            f"{v['ip']:15} {v['mac']} {v['tap']} slot {v['slot']}"
        )
    emit(st, args.json, "\n".join(lines))
    return 0


def _ping(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= 10_000 or not 0.001 <= args.interval <= 10:
        raise UsageError("--count must be 1..10000 and --interval 0.001..10 seconds")
    res = _lab(args).ping(args.src, args.dst, args.count, args.interval)
    text = (
        f"{args.src} -> {args.dst}: {res.received}/{res.sent} replies, {res.lost} lost, "
        f"longest gap {res.max_gap_ms:.1f} ms"
    )
    emit({k: v for k, v in vars(res).items() if k != "timeline"}, args.json, text)
    return 0 if res.lost == 0 else 1


def _reboot(args: argparse.Namespace) -> int:
    times = _lab(args).reboot(args.host, agent=not args.no_agent)
    print(
        f"{args.host} rebooted: OVS up, VIFs re-plugged after "
        f"{(times.vifs_plugged - times.ovs_started) * 1000:.0f} ms"
        + ("" if times.agent_started is None else ", agent started")
    )
    return 0


def _restart_agent(args: argparse.Namespace) -> int:
    _lab(args).restart_agent(args.host, hard=args.kill)
    print(f"agent of {args.host} {'killed' if args.kill else 'stopped'} and started again")
    return 0


def _restart_ovs(args: argparse.Namespace) -> int:
    times = _lab(args).restart_ovs(
        args.host, hard=args.kill, flow_restore_wait=not args.no_flow_restore_wait
    )
    print(
        f"ovs-vswitchd of {args.host} restarted: up again after "
        f"{(times.ready - times.stopped) * 1000:.0f} ms"
    )
    return 0


def _upgrade_ovs(args: argparse.Namespace) -> int:
    from flowkeeper.lab.slotupgrade import MAX_OVERLAP_S, OVERLAP_S, upgrade_ovs

    if not 0 <= args.settle <= 60:
        raise UsageError(f"--settle must be 0..60 seconds, got {args.settle}")
    overlap = OVERLAP_S if args.overlap is None else args.overlap
    if not 0 <= overlap <= MAX_OVERLAP_S:
        raise UsageError(f"--overlap must be 0..{MAX_OVERLAP_S:g} seconds, got {args.overlap}")
    if not 1 <= args.timeout <= 600:
        raise UsageError(f"--timeout must be 1..600 seconds, got {args.timeout}")
    lab = _lab(args)
    if lab.state().host(args.host).standby is None:
        raise LabError(
            f"{args.host} has one switch slot: a hot upgrade needs two "
            "(make the lab with `lab up --standby`)"
        )
    report = upgrade_ovs(
        lab,
        args.host,
        settle=args.settle,
        overlap=overlap,
        timeout=args.timeout,
        progress=lab.progress,
    )
    lines = [
        f"{args.host} upgraded, slot {report.first} first: {len(report.moves)} VMs moved, "
        f"{report.total_s:.2f} s in all"
    ]
    lines += [
        f"  slot {r.slot}: vswitchd {r.old_pid or '-'} -> {r.pid} in {r.restart_ms:.0f} ms, "
        f"prepared after {r.prepared_s:.2f} s"
        for r in report.restarts
    ]
    lines += [
        f"  {m.vm}: {m.src} -> {m.dst}, "
        + (
            f"steered in {m.move_ms:.1f} ms (ofport {m.ofport} in both slots)"
            + (
                f", old path dropped {m.overlap_ms:.0f} ms later ({m.break_ms:.1f} ms)"
                if m.overlap_ms
                else ""
            )
            if m.how == "steer"
            else f"device moved in {m.move_ms:.1f} ms, ofport {m.ofport} after {m.ofport_ms:.1f} ms"
        )
        for m in report.moves
    ]
    emit(asdict(report), args.json, "\n".join(lines))
    return 0


def _server(args: argparse.Namespace) -> int:
    lab = _lab(args)
    if args.action == "stop":
        how = "killed" if args.kill else "stopped"
        done = lab.stop_server(args.index, hard=args.kill)
        print(f"server {args.index} {how}" if done else f"server {args.index} was not running")
    else:
        url = lab.start_server(args.index)
        print(f"server {args.index} started on {url}")
    return 0


def _etcd(args: argparse.Namespace) -> int:
    lab = _lab(args)
    if args.action == "stop":
        how = "killed" if args.kill else "stopped"
        done = lab.stop_etcd(args.index, hard=args.kill)
        print(
            f"etcd member {args.index} {how}"
            if done
            else f"etcd member {args.index} was not running"
        )
    else:
        lab.start_etcd(args.index)
        print(f"etcd member {args.index} started")
    return 0


def _exec(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise UsageError("lab exec needs a command: lab exec VM -- CMD ...")
    ns = _lab(args).namespace_of(args.target)
    argv = in_ns(ns, cmd)
    os.execvp(argv[0], argv)  # noqa: S606 - argv list, no shell
    return 127  # not reached
