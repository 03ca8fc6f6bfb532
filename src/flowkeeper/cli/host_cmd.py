"""`flowkeeper host list`: the agents that registered, their tunnel IP, state and revision."""

from __future__ import annotations

import argparse
import time
from typing import Any

from flowkeeper.cli.common import emit
from flowkeeper.cli.cpclient import add_client_options, client_from
from flowkeeper.cli.table import ago, table


def register(sub: Any) -> None:
    host = sub.add_parser("host", help="hosts (agents) known to the server")
    cmds = host.add_subparsers(dest="host_command", required=True)
    lst = cmds.add_parser("list", help="name, tunnel IP, state, revision, last seen")
    add_client_options(lst)
    lst.set_defaults(func=_list)


def _list(args: argparse.Namespace) -> int:
    hosts = client_from(args).list_hosts()
    now = time.time()
    rows = [
        (
            h.name,
            h.tunnel_ip,
            h.state,
            h.revision,
            ago(h.last_seen, now),
            "yes" if h.l2pop else "no",
            "yes" if h.virtual else "no",
        )
        for h in hosts
    ]
    text = table(["name", "tunnel ip", "state", "revision", "last seen", "l2pop", "virtual"], rows)
    emit([h.to_dict() for h in hosts], args.json, text if hosts else "no hosts")
    return 0
