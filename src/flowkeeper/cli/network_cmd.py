"""`flowkeeper network create|list|show|delete`: overlay networks on the server."""

from __future__ import annotations

import argparse
from typing import Any

from flowkeeper.cli.common import emit
from flowkeeper.cli.cpclient import add_client_options, client_from
from flowkeeper.cli.table import fields, table
from flowkeeper.model import Network
from flowkeeper.validation import check_cidr, check_name, check_segment


def register(sub: Any) -> None:
    net = sub.add_parser("network", help="overlay networks (VXLAN, GRE)")
    cmds = net.add_subparsers(dest="network_command", required=True)

    create = cmds.add_parser("create", help="create a network")
    create.add_argument("name")
    create.add_argument("--type", choices=["vxlan", "gre"], default="vxlan")
    create.add_argument("--segmentation-id", type=int, help="VNI or GRE key (default: lowest free)")
    create.add_argument("--cidr", help="IPv4 subnet, e.g. 198.19.1.0/24")
    create.add_argument("--project", help="the network's project, its ports' by default")
    add_client_options(create)
    create.set_defaults(func=_create)

    lst = cmds.add_parser("list", help="list networks")
    add_client_options(lst)
    lst.set_defaults(func=_list)

    show = cmds.add_parser("show", help="one network, by name or id")
    show.add_argument("network")
    add_client_options(show)
    show.set_defaults(func=_show)

    delete = cmds.add_parser("delete", help="delete a network without ports, by name or id")
    delete.add_argument("network")
    add_client_options(delete)
    delete.set_defaults(func=_delete)


def network_rows(nets: list[Network]) -> str:
    rows = [(n.name, n.id, n.type, n.segmentation_id, n.cidr or "-", n.revision) for n in nets]
    return table(["name", "id", "type", "segment", "cidr", "revision"], rows)


def _create(args: argparse.Namespace) -> int:
    check_name(args.name, "network")
    if args.segmentation_id is not None:
        check_segment(args.type, args.segmentation_id)
    if args.cidr is not None:
        check_cidr(args.cidr)
    if args.project is not None:
        check_name(args.project, "project")
    net = client_from(args).create_network(
        args.name,
        args.type,
        segmentation_id=args.segmentation_id,
        cidr=args.cidr,
        project_id=args.project,
    )
    emit(
        net.to_dict(),
        args.json,
        f"created network {net.name} ({net.id}), {net.type} {net.segmentation_id}",
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    nets = client_from(args).list_networks()
    emit([n.to_dict() for n in nets], args.json, network_rows(nets) if nets else "no networks")
    return 0


def _show(args: argparse.Namespace) -> int:
    client = client_from(args)
    net = client.find_network(args.network)
    ports = client.list_ports(network_id=net.id)
    text = fields([*net.to_dict().items(), ("ports", len(ports))])
    emit(net.to_dict(), args.json, text)
    return 0


def _delete(args: argparse.Namespace) -> int:
    client = client_from(args)
    net = client.find_network(args.network)
    revision = client.delete_network(net.id)
    emit(
        {"deleted": net.id, "revision": revision},
        args.json,
        f"deleted network {net.name} ({net.id})",
    )
    return 0
