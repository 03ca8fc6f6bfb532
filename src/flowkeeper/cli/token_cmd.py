"""`flowkeeper token create|list|revoke`: API tokens (admin only); secrets are shown once."""

from __future__ import annotations

import argparse
import time
from typing import Any

from flowkeeper.cli.common import emit
from flowkeeper.cli.cpclient import add_client_options, client_from
from flowkeeper.cli.table import ago, table


def register(sub: Any) -> None:
    tok = sub.add_parser("token", help="API tokens: per-host, admin, read-only")
    cmds = tok.add_subparsers(dest="token_command", required=True)
    create = cmds.add_parser("create", help="make a token and print its secret (only once)")
    kind = create.add_mutually_exclusive_group(required=True)
    kind.add_argument("--host", help="a host token: acts only as this host (for its agent)")
    kind.add_argument("--admin", action="store_true", help="may do everything")
    kind.add_argument("--read-only", action="store_true", help="may read everything")
    create.add_argument("--note", default="", help="a free-text label shown by 'token list'")
    add_client_options(create)
    create.set_defaults(func=_create)
    lst = cmds.add_parser("list", help="id, role, host, age, note (never the secrets)")
    add_client_options(lst)
    lst.set_defaults(func=_list)
    revoke = cmds.add_parser("revoke", help="refuse a token from now on; ends its watches")
    revoke.add_argument("id")
    add_client_options(revoke)
    revoke.set_defaults(func=_revoke)


def _create(args: argparse.Namespace) -> int:
    role = "admin" if args.admin else "read-only" if args.read_only else "host"
    made = client_from(args).create_token(role, args.host or "", args.note)
    emit(made, args.json, made["secret"])
    return 0


def _list(args: argparse.Namespace) -> int:
    tokens = client_from(args).list_tokens()
    now = time.time()
    rows = [(t["id"], t["role"], t["host"], ago(t["created"], now), t["note"]) for t in tokens]
    text = table(["id", "role", "host", "created", "note"], rows)
    emit(tokens, args.json, text if tokens else "no tokens (besides the bootstrap token)")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    done = client_from(args).revoke_token(args.id)
    closed = done["closed_streams"]
    emit(done, args.json, f"revoked {done['revoked']} ({closed} watch stream(s) closed)")
    return 0
