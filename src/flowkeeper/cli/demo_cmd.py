"""`flowkeeper demo`: the main job on a fresh machine: a real lab run by flowkeeper agents."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowkeeper.cli.common import progress

if TYPE_CHECKING:
    from flowkeeper.lab.lab import Lab
    from flowkeeper.lab.state import LabState


def register(sub: Any) -> None:
    demo = sub.add_parser("demo", help="a real OVS lab run by flowkeeper: server, agents, VMs")
    demo.add_argument("--lab-dir", type=Path, default=Path("/var/tmp/flowkeeper-demo"))
    demo.add_argument("--hosts", type=int, default=3)
    demo.add_argument("--vms-per-host", type=int, default=2)
    demo.add_argument("--networks", type=int, default=2)
    demo.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from flowkeeper.lab.lab import Lab, UpOptions

    lab = Lab(args.lab_dir, progress=progress)
    lab.down()  # a previous demo that crashed leaves nothing behind
    print(
        f"== lab up: {args.hosts} hosts x {args.vms_per_host} VMs on {args.networks} networks"
        " (real OVS, userspace datapath), flowkeeper server + one agent per host"
    )
    opts = UpOptions(
        hosts=args.hosts,
        vms_per_host=args.vms_per_host,
        networks=args.networks,
        name="fkdemo",
        network_type="mixed",
    )
    state = lab.up(opts)
    try:
        failures = _pings(lab, state)
        for host in state.hosts:
            n_int = len(lab.bridge(host, "br-int").dump_flows())
            n_tun = len(lab.bridge(host, "br-tun").dump_flows())
            print(f"== {host.name}: {n_int} flows on br-int, {n_tun} on br-tun")
    finally:
        if args.keep:
            print(f"lab left up; try: flowkeeper lab --lab-dir {args.lab_dir} status")
        else:
            lab.down()
            print("== lab down: namespaces, daemons and agents removed")
    print("demo ok" if failures == 0 else f"demo FAILED: {failures} checks failed")
    return 0 if failures == 0 else 1


def _pings(lab: Lab, state: LabState) -> int:
    failures = 0
    print("== same network, different hosts: must answer (VXLAN on odd, GRE on even networks)")
    print("   different networks: must not")
    for a in state.vms:
        for b in state.vms:
            if a.host >= b.host:
                continue
            same = a.network == b.network
            res = lab.ping(a.name, b.name, count=5, interval=0.05)
            ok = res.received >= 4 if same else res.received == 0
            failures += not ok
            verdict = "ok" if ok else "FAILED"
            what = "same net " if same else "other net"
            print(
                f"  {a.name:7} {a.ip:13} -> {b.name:7} {b.ip:13} {what} "
                f"{res.received}/{res.sent} replies  {verdict}"
            )
    return failures
