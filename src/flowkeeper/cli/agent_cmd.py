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
        "--standby-for",
        default="",
        metavar="HOST",
        help="hot upgrade: this is the new switch slot that takes over HOST's VMs; hold "
        "HOST's networks (tunnels, flood and FDB flows) before the first VM moves",
    )
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
    agent.set_defaults(func=_agent)


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
    if args.standby_for:
        from flowkeeper.validation import check_name

        check_name(args.standby_for, "--standby-for host")
        if args.standby_for == args.host:
            raise UsageError("--standby-for must name another host")
    sock = Path(args.ovsdb.removeprefix("unix:"))
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
        standby_for=args.standby_for,
        datapath_type=args.datapath_type,
        watch_log=args.watch_log,
        firewall=args.firewall,
        vswitchd_ctl=args.vswitchd_ctl,
    )
    logging.getLogger("flowkeeper.agent").info(
        "agent %s starting (modules loaded in %.0f ms)",
        args.host,
        (time.monotonic() - started) * 1000,
    )
    asyncio.run(Agent(cfg, early=early).run())
    return 0
