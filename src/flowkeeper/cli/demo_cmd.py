"""`flowkeeper demo`: the main job on a fresh machine — a real two-host lab, pinged across."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flowkeeper.cli.common import progress
from flowkeeper.lab.lab import Lab, UpOptions


def register(sub: Any) -> None:
    demo = sub.add_parser("demo", help="bring up a 2-host lab and ping across the VXLAN overlay")
    demo.add_argument("--lab-dir", type=Path, default=Path("/var/tmp/flowkeeper-demo"))
    demo.add_argument("--hosts", type=int, default=2)
    demo.add_argument("--vms-per-host", type=int, default=2)
    demo.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    lab = Lab(args.lab_dir, progress=progress)
    lab.down()  # a previous demo that crashed leaves nothing behind
    print(f"== lab up: {args.hosts} hosts x {args.vms_per_host} VMs, real OVS (userspace)")
    state = lab.up(UpOptions(hosts=args.hosts, vms_per_host=args.vms_per_host, name="fkdemo"))
    failures = 0
    try:
        print("== pings between VMs of the same network on different hosts")
        for a in state.vms:
            for b in state.vms:
                if a.host >= b.host or a.network != b.network:
                    continue
                res = lab.ping(a.name, b.name, count=5, interval=0.05)
                ok = res.lost == 0
                failures += not ok
                print(
                    f"  {a.name:8} {a.ip:13} -> {b.name:8} {b.ip:13} "
                    f"{res.received}/{res.sent} {'ok' if ok else 'FAILED'}"
                )
        for host in state.hosts:
            tun = lab.bridge(host, "br-tun").dump_flows()
            print(f"== {host.name} br-tun: {len(tun)} flows")
    finally:
        if args.keep:
            print(
                f"lab left up in {args.lab_dir}; remove it with: "
                f"flowkeeper lab --lab-dir {args.lab_dir} down"
            )
        else:
            lab.down()
            print("== lab down: namespaces and daemons removed")
    print("demo ok" if failures == 0 else f"demo FAILED: {failures} VM pairs could not talk")
    return 0 if failures == 0 else 1
