"""`flowkeeper bench ...`: benchmarks that print and save their numbers (JSON)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from flowkeeper.cli.common import progress
from flowkeeper.errors import UsageError

DEFAULT_OUT = Path("results")


def register(sub: Any) -> None:
    bench = sub.add_parser("bench", help="benchmarks (print and save JSON)")
    cmds = bench.add_subparsers(dest="bench_command", required=True)
    of = cmds.add_parser("openflow", help="install N flows in one bundle, each mechanism")
    of.add_argument("--sizes", default="20000,200000", help="comma-separated flow counts")
    of.add_argument("--repeats", type=int, default=3)
    of.add_argument("--methods", default="ofctl-add,ofctl-replace,preencoded,osken")
    of.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for the JSON")
    of.add_argument("--lab-dir", type=Path, default=Path("/var/tmp/flowkeeper-bench-lab"))
    of.add_argument("--json", action="store_true", help="print the JSON instead of a table")
    of.set_defaults(func=_openflow)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--sizes must be comma-separated whole numbers, got {text!r}") from None
    if not sizes or not all(1 <= s <= 1_000_000 for s in sizes):
        raise UsageError("--sizes must be between 1 and 1,000,000 flows each")
    return sizes


def _openflow(args: argparse.Namespace) -> int:
    from flowkeeper.bench import openflow

    sizes = _sizes(args.sizes)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in openflow.METHODS]
    if unknown or not methods:
        raise UsageError(f"unknown method(s) {unknown}; choose from {', '.join(openflow.METHODS)}")
    if not 1 <= args.repeats <= 20:
        raise UsageError("--repeats must be 1..20")
    data = openflow.run(sizes, args.repeats, methods, args.lab_dir, progress)
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
        print(f"saved {path}")
    return 0
