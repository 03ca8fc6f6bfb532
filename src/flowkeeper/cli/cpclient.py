"""Options shared by the commands that talk to the server: --server, --token-file, --ca,
--json."""

from __future__ import annotations

import argparse

from flowkeeper.client import Client, resolve_ca, resolve_server, resolve_token


def add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        metavar="URL[,URL...]",
        help="server URL, or several separated by commas, tried in order when one does "
        "not answer (env FLOWKEEPER_SERVER; default http://127.0.0.1:9696)",
    )
    parser.add_argument(
        "--token-file", help="API token file (env FLOWKEEPER_TOKEN); every request needs one"
    )
    parser.add_argument("--ca", help="CA certificate (PEM) of an https server (env FLOWKEEPER_CA)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def client_from(args: argparse.Namespace) -> Client:
    return Client(
        resolve_server(args.server), resolve_token(args.token_file), ca=resolve_ca(args.ca)
    )
