"""`flowkeeper host list|delete`: the agents that registered, whether they are alive, and
removing the registration of a host that is gone for good."""

from __future__ import annotations

import argparse
import time
from typing import Any

from flowkeeper.cli.common import emit
from flowkeeper.cli.cpclient import add_client_options, client_from
from flowkeeper.cli.table import ago, table
from flowkeeper.client import host_record
from flowkeeper.validation import check_name


def register(sub: Any) -> None:
    host = sub.add_parser("host", help="hosts (agents) known to the server")
    cmds = host.add_subparsers(dest="host_command", required=True)
    lst = cmds.add_parser(
        "list", help="name, tunnel IP, alive or gone since when, state, revision, last seen"
    )
    add_client_options(lst)
    lst.set_defaults(func=_list)

    delete = cmds.add_parser(
        "delete",
        help="remove a host's registration (admin; refused while ports are bound to it; "
        "stop its agent first, or it registers again)",
    )
    delete.add_argument("name")
    add_client_options(delete)
    delete.set_defaults(func=_delete)


def liveness_text(alive: object, since: object, now: float) -> str:
    """'alive', or 'gone since 2024-05-01 12:00:03 (42s ago)' (local time)."""
    if alive is True:
        return "alive"
    if isinstance(since, int | float) and not isinstance(since, bool) and since > 0:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
        return f"gone since {stamp} ({max(0, int(now - since))}s ago)"
    return "gone"


def host_rows(records: list[dict[str, Any]], now: float) -> str:
    rows = []
    for data in records:
        h = host_record(data)
        rows.append(
            (
                h.name,
                h.tunnel_ip,
                liveness_text(data.get("alive"), data.get("since"), now),
                h.state,
                h.revision,
                ago(h.last_seen, now),
                "yes" if h.l2pop else "no",
                "yes" if h.virtual else "no",
            )
        )
    headers = ["name", "tunnel ip", "liveness", "state", "revision", "last seen", "l2pop"]
    return table([*headers, "virtual"], rows)


def _list(args: argparse.Namespace) -> int:
    records: list[dict[str, Any]] = client_from(args).request("GET", "/v1/hosts")["hosts"]
    text = host_rows(records, time.time()) if records else "no hosts"
    emit(records, args.json, text)
    return 0


def _delete(args: argparse.Namespace) -> int:
    check_name(args.name, "host")
    revision = client_from(args).delete_host(args.name)
    emit(
        {"deleted": args.name, "revision": revision},
        args.json,
        f"deleted host {args.name} (revision {revision})",
    )
    return 0
