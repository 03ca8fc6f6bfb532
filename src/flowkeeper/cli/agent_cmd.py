"""`flowkeeper agent`: run the host agent for this hypervisor's OVS."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowkeeper.errors import UsageError

if TYPE_CHECKING:
    from flowkeeper.agent.restore import RestoreResult
    from flowkeeper.snapshot.store import LoadReport

DEFAULT_OVSDB = "unix:/var/run/openvswitch/db.sock"


def register(sub: Any) -> None:
    agent = sub.add_parser("agent", help="run the host agent (follows the server, programs OVS)")
    agent.add_argument("--host", required=True, help="this host's name in the control plane")
    agent.add_argument("--tunnel-ip", required=True, help="this host's VXLAN/GRE endpoint")
    agent.add_argument(
        "--server",
        default=os.environ.get("FLOWKEEPER_SERVER"),
        metavar="URL[,URL...]",
        help="server URL, or several separated by commas: the agent fails over between "
        "them (env FLOWKEEPER_SERVER)",
    )
    agent.add_argument("--ovsdb", default=DEFAULT_OVSDB, help="local ovsdb-server, unix:PATH")
    agent.add_argument("--state-dir", type=Path, default=Path("/var/lib/flowkeeper"))
    agent.add_argument(
        "--token-file", type=Path, help="this host's API token file (env FLOWKEEPER_TOKEN)"
    )
    agent.add_argument("--ca", type=Path, help="CA of an https server (env FLOWKEEPER_CA)")
    agent.add_argument("--no-l2pop", action="store_true", help="flood and learn instead")
    agent.add_argument("--no-arp-responder", action="store_true")
    agent.add_argument(
        "--datapath-type",
        choices=("system", "netdev"),
        default="system",
        help="datapath of the bridges the agent creates (default system, the kernel's); "
        "an existing bridge is never changed",
    )
    agent.add_argument(
        "--watch-log",
        type=Path,
        metavar="PATH",
        help="diagnostics: append one JSON line per watch message received to PATH "
        "(0600; past 64 MiB it moves to PATH.1 and a new one begins)",
    )
    agent.add_argument(
        "--firewall",
        choices=("openvswitch", "noop"),
        default="openvswitch",
        help="security groups: openvswitch (the default, Neutron's stateful OVS firewall "
        "in br-int's flows) or noop (no filtering; flows as without security groups)",
    )
    agent.add_argument(
        "--vswitchd-ctl",
        default="",
        metavar="PATH",
        help="ovs-vswitchd's unixctl socket, for conntrack flushes (default: the one "
        "ovs-appctl -t ovs-vswitchd finds next to the OVSDB socket)",
    )
    slots = agent.add_argument_group(
        "twin switch slots (hot upgrade and crash failover; see docs/hot-upgrade.md)"
    )
    slots.add_argument(
        "--standby-ovsdb",
        default="",
        metavar="unix:PATH",
        help="the second switch slot's ovsdb-server: the agent keeps the same flows in "
        "both slots and moves VIFs to the other slot when one slot's ovs-vswitchd dies",
    )
    slots.add_argument(
        "--standby-rundir",
        type=Path,
        metavar="DIR",
        help="the second slot's run directory, with its bridges' .mgmt sockets (default: "
        "the directory of the --standby-ovsdb socket)",
    )
    slots.add_argument(
        "--standby-vswitchd-ctl",
        default="",
        metavar="PATH",
        help="the second slot's ovs-vswitchd unixctl socket, for conntrack flushes",
    )
    slots.add_argument(
        "--vif-netns",
        default="",
        metavar="NS",
        help="network namespace of the first slot's VIF devices (default: the agent's own)",
    )
    slots.add_argument(
        "--standby-vif-netns",
        default="",
        metavar="NS",
        help="network namespace of the second slot's VIF devices (required with "
        "--standby-ovsdb: a failover moves the devices there)",
    )
    slots.add_argument(
        "--vif-steer-netns",
        default="",
        metavar="NS",
        help="every VIF's device is in both slots and the hypervisor steers each VM NIC to "
        "one of them, with tc in namespace NS (the lab's model of a NIC attached to both "
        "switches): a failover steers every VIF to the surviving slot, no device moves",
    )
    agent.set_defaults(func=_agent)


def _twin_args(args: argparse.Namespace) -> Path | None:
    """Check the twin-slot options; returns slot b's run directory (None: one slot)."""
    from flowkeeper.agent.vifmove import valid_netns

    if not args.standby_ovsdb:
        if args.standby_vif_netns or args.standby_rundir or args.standby_vswitchd_ctl:
            raise UsageError("the --standby-* options need --standby-ovsdb unix:PATH")
        if args.vif_steer_netns:
            raise UsageError("--vif-steer-netns needs --standby-ovsdb unix:PATH")
        return None
    if not args.standby_ovsdb.startswith("unix:"):
        raise UsageError("--standby-ovsdb must be unix:PATH: the agent touches only its host")
    if args.standby_ovsdb == args.ovsdb:
        raise UsageError("--standby-ovsdb must be another ovsdb-server than --ovsdb")
    if not args.standby_vif_netns:
        raise UsageError("--standby-ovsdb needs --standby-vif-netns NS (where its VIFs live)")
    for flag, ns in (
        ("--vif-netns", args.vif_netns),
        ("--standby-vif-netns", args.standby_vif_netns),
        ("--vif-steer-netns", args.vif_steer_netns),
    ):
        if ns and not valid_netns(ns):
            raise UsageError(f"{flag}: not a namespace name: {ns!r}")
    if args.vif_netns == args.standby_vif_netns:
        raise UsageError("--vif-netns and --standby-vif-netns must differ")
    rundir = args.standby_rundir or Path(args.standby_ovsdb.removeprefix("unix:")).parent
    if not rundir.is_dir():
        raise UsageError(f"--standby-rundir {rundir}: no such directory")
    return Path(rundir)


def _quick_restore(args: argparse.Namespace) -> tuple[LoadReport, RestoreResult | None] | None:
    """Before anything heavy is loaded: snapshot back into an OVS that lost its flows."""
    from flowkeeper.agent.fastboot import restore_if_lost

    if not args.ovsdb.startswith("unix:"):
        return None
    sock = Path(args.ovsdb.removeprefix("unix:"))
    return restore_if_lost(args.state_dir, args.ovsdb, sock.parent, args.tunnel_ip)


def _agent(args: argparse.Namespace) -> int:
    started = time.monotonic()
    logging.getLogger().setLevel(logging.DEBUG if args.debug else logging.INFO)
    if not args.server:
        raise UsageError("agent needs --server URL[,URL...] or FLOWKEEPER_SERVER")
    from flowkeeper.failover import parse_servers

    servers = parse_servers(args.server)
    if args.watch_log is not None and not args.watch_log.parent.is_dir():
        raise UsageError(f"--watch-log {args.watch_log}: no such directory")
    try:
        ipaddress.IPv4Address(args.tunnel_ip)
    except ValueError:
        raise UsageError(f"--tunnel-ip: not an IPv4 address: {args.tunnel_ip!r}") from None
    if not args.ovsdb.startswith("unix:"):
        raise UsageError("--ovsdb must be unix:PATH: the agent touches only its own host's OVS")
    sock = Path(args.ovsdb.removeprefix("unix:"))
    standby_rundir = _twin_args(args)
    from flowkeeper.client import resolve_ca, resolve_token

    token = resolve_token(args.token_file)
    ca = resolve_ca(args.ca)
    if ca is not None and not ca.is_file():
        raise UsageError(f"--ca {ca}: no such file")
    args.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Inputs checked: now, before anything heavy is loaded, flows back if OVS lost them.
    early = _quick_restore(args)
    from flowkeeper.agent.daemon import Agent, AgentConfig

    cfg = AgentConfig(
        host=args.host,
        tunnel_ip=args.tunnel_ip,
        server=",".join(servers),
        ovsdb=args.ovsdb,
        rundir=sock.parent,
        state_dir=args.state_dir,
        token=token,
        ca=ca,
        l2pop=not args.no_l2pop,
        arp_responder=not args.no_arp_responder,
        datapath_type=args.datapath_type,
        watch_log=args.watch_log,
        firewall=args.firewall,
        vswitchd_ctl=args.vswitchd_ctl,
        standby_ovsdb=args.standby_ovsdb,
        standby_rundir=standby_rundir,
        standby_vswitchd_ctl=args.standby_vswitchd_ctl,
        vif_netns=args.vif_netns,
        standby_vif_netns=args.standby_vif_netns,
        vif_steer_netns=args.vif_steer_netns,
    )
    logging.getLogger("flowkeeper.agent").info(
        "agent %s starting (modules loaded in %.0f ms)",
        args.host,
        (time.monotonic() - started) * 1000,
    )
    asyncio.run(Agent(cfg, early=early).run())
    return 0
