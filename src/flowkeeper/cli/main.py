"""The `flowkeeper` command: parse arguments, dispatch, turn failures into one-line errors."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from flowkeeper import __version__
from flowkeeper.cli import (
    agent_cmd,
    bench_cmd,
    demo_cmd,
    host_cmd,
    lab_cmd,
    network_cmd,
    port_cmd,
    secgroup_cmd,
    server_cmd,
    snapshot_cmd,
    token_cmd,
)
from flowkeeper.errors import FlowkeeperError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flowkeeper", description="OVS overlay agent with flow snapshots.")
    parser.add_argument("--version", action="version", version=f"flowkeeper {__version__}")
    parser.add_argument("--debug", action="store_true", help="show stack traces and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    server_cmd.register(sub)
    agent_cmd.register(sub)
    network_cmd.register(sub)
    port_cmd.register(sub)
    secgroup_cmd.register(sub)
    host_cmd.register(sub)
    token_cmd.register(sub)
    snapshot_cmd.register(sub)
    lab_cmd.register(sub)
    bench_cmd.register(sub)
    demo_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        args = build_parser().parse_args(args_list)
        code: int = args.func(args)
        return code
    except UsageError as exc:
        print(f"flowkeeper: error: {exc}", file=sys.stderr)
        return 2
    except FlowkeeperError as exc:
        if debug:
            traceback.print_exc()
        print(f"flowkeeper: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("flowkeeper: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(
            f"flowkeeper: internal error: {type(exc).__name__}: {exc} (use --debug)",
            file=sys.stderr,
        )
        return 1
