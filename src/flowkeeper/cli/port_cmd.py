"""`flowkeeper port create|list|show|delete`: ports (network, host, MAC, IPs) on the server."""

from __future__ import annotations

import argparse
from typing import Any

from flowkeeper.cli.common import emit
from flowkeeper.cli.cpclient import add_client_options, client_from
from flowkeeper.cli.table import fields, table
from flowkeeper.model import AddressPair
from flowkeeper.validation import ValidationError, check_id, check_ipv4, check_mac, check_name


def register(sub: Any) -> None:
    port = sub.add_parser("port", help="ports: a VIF's network, host, MAC and IPs")
    cmds = port.add_subparsers(dest="port_command", required=True)

    create = cmds.add_parser("create", help="create a port")
    create.add_argument("--network", required=True, help="network name or id")
    create.add_argument("--host", required=True, help="the host the port is bound to")
    create.add_argument("--mac", required=True, help="unicast MAC, e.g. fa:16:3e:00:00:01")
    create.add_argument("--ip", action="append", default=[], help="fixed IPv4 (repeatable)")
    create.add_argument("--name", default="", help="a free-text label")
    create.add_argument("--device-id", default="", help="the VM (or other device) it belongs to")
    create.add_argument("--id", help="port id (the VIF's iface-id); default: a new UUID")
    create.add_argument("--project", help="the port's project (default: its network's)")
    groups = create.add_mutually_exclusive_group()
    groups.add_argument(
        "--security-group",
        action="append",
        default=None,
        metavar="GROUP",
        help="a security group, name or id (repeatable; default: the project's default group)",
    )
    groups.add_argument(
        "--no-security-group",
        action="store_true",
        help="no security group: all the port's traffic is dropped until one is added",
    )
    groups.add_argument(
        "--no-port-security",
        action="store_true",
        help="no filtering and no anti-spoofing at all (no groups, no address pairs)",
    )
    create.add_argument(
        "--allowed-address-pair",
        action="append",
        default=[],
        metavar="IP[,MAC]",
        help="another IPv4 address or network (and MAC; default the port's) the port may "
        "send from (repeatable)",
    )
    add_client_options(create)
    create.set_defaults(func=_create)

    lst = cmds.add_parser("list", help="list ports")
    lst.add_argument("--network", help="only this network (name or id)")
    lst.add_argument("--host", help="only ports bound to this host")
    add_client_options(lst)
    lst.set_defaults(func=_list)

    show = cmds.add_parser("show", help="one port")
    show.add_argument("port", help="port id")
    add_client_options(show)
    show.set_defaults(func=_show)

    bind = cmds.add_parser("bind", help="move a port to another host (plug its VIF there first)")
    bind.add_argument("port", help="port id")
    bind.add_argument("--host", required=True, help="the host the port is bound to from now on")
    add_client_options(bind)
    bind.set_defaults(func=_bind)

    update = cmds.add_parser("set", help="change a port's security groups, port security, pairs")
    update.add_argument("port", help="port id")
    groups = update.add_mutually_exclusive_group()
    groups.add_argument(
        "--security-group",
        action="append",
        default=None,
        metavar="GROUP",
        help="the port's security groups from now on, name or id (repeatable)",
    )
    groups.add_argument(
        "--no-security-group", action="store_true", help="no group: all its traffic is dropped"
    )
    security = update.add_mutually_exclusive_group()
    security.add_argument(
        "--port-security",
        dest="port_security",
        action="store_const",
        const=True,
        help="turn port security on",
    )
    security.add_argument(
        "--no-port-security",
        dest="port_security",
        action="store_const",
        const=False,
        help="turn port security off (also clears its groups and pairs)",
    )
    pairs = update.add_mutually_exclusive_group()
    pairs.add_argument(
        "--allowed-address-pair",
        action="append",
        default=None,
        metavar="IP[,MAC]",
        help="the port's allowed address pairs from now on (repeatable)",
    )
    pairs.add_argument(
        "--no-allowed-address-pair", action="store_true", help="remove all its address pairs"
    )
    add_client_options(update)
    update.set_defaults(func=_set)

    delete = cmds.add_parser("delete", help="delete a port")
    delete.add_argument("port", help="port id")
    add_client_options(delete)
    delete.set_defaults(func=_delete)


def _create(args: argparse.Namespace) -> int:
    check_name(args.host, "host")
    check_mac(args.mac)
    for ip in args.ip:
        check_ipv4(ip)
    if args.id is not None:
        check_id(args.id, "port")
    if args.project is not None:
        check_name(args.project, "project")
    pairs = [parse_pair(text) for text in args.allowed_address_pair]
    if pairs and args.no_port_security:
        raise ValidationError(
            "--allowed-address-pair needs port security (drop --no-port-security)"
        )
    client = client_from(args)
    net = client.find_network(args.network)
    project = args.project or net.project_id
    groups: list[str] | None = None
    if args.no_security_group:
        groups = []
    elif args.security_group is not None:
        groups = [client.find_security_group(g, project).id for g in args.security_group]
    port = client.create_port(
        net.id,
        args.host,
        args.mac,
        args.ip,
        name=args.name,
        device_id=args.device_id,
        id=args.id,
        project_id=args.project,
        security_groups=groups,
        port_security_enabled=not args.no_port_security,
        allowed_address_pairs=pairs,
    )
    ips = ", ".join(port.fixed_ips) or "no IP"
    emit(
        port.to_dict(),
        args.json,
        f"created port {port.id} on {net.name}: {port.mac} {ips} @ {port.host}",
    )
    return 0


def _set(args: argparse.Namespace) -> int:
    check_id(args.port, "port")
    client = client_from(args)
    groups: list[str] | None = None
    pairs: list[AddressPair] | None = None
    if args.no_security_group:
        groups = []
    elif args.security_group is not None:
        project = client.get_port(args.port).project_id
        groups = [client.find_security_group(g, project).id for g in args.security_group]
    if args.no_allowed_address_pair:
        pairs = []
    elif args.allowed_address_pair is not None:
        pairs = [parse_pair(text) for text in args.allowed_address_pair]
    if args.port_security is False:  # off: nothing to filter with, as Neutron requires
        groups = [] if groups is None else groups
        pairs = [] if pairs is None else pairs
    port = client.update_port(
        args.port,
        security_groups=groups,
        port_security_enabled=args.port_security,
        allowed_address_pairs=pairs,
    )
    state = "on" if port.port_security_enabled else "off"
    groups_text = ", ".join(port.security_groups) or "no group"
    emit(port.to_dict(), args.json, f"port {port.id}: port security {state}, {groups_text}")
    return 0


def _bind(args: argparse.Namespace) -> int:
    check_id(args.port, "port")
    check_name(args.host, "host")
    port = client_from(args).bind_port(args.port, args.host)
    emit(port.to_dict(), args.json, f"port {port.id} bound to {port.host} ({port.status})")
    return 0


def _list(args: argparse.Namespace) -> int:
    client = client_from(args)
    nets = {n.id: n.name for n in client.list_networks()}
    network_id = client.find_network(args.network).id if args.network else None
    ports = client.list_ports(network_id=network_id, host=args.host)
    rows = [
        (
            p.id,
            p.name or "-",
            nets.get(p.network_id, p.network_id),
            p.host,
            p.mac,
            ",".join(p.fixed_ips) or "-",
            p.status,
        )
        for p in ports
    ]
    text = table(["id", "name", "network", "host", "mac", "ips", "status"], rows)
    emit([p.to_dict() for p in ports], args.json, text if ports else "no ports")
    return 0


def _show(args: argparse.Namespace) -> int:
    port = client_from(args).get_port(args.port)
    data = port.to_dict()
    data.pop("tunnel_ip")
    emit(data, args.json, fields(data.items()))
    return 0


def _delete(args: argparse.Namespace) -> int:
    revision = client_from(args).delete_port(args.port)
    emit({"deleted": args.port, "revision": revision}, args.json, f"deleted port {args.port}")
    return 0


def parse_pair(text: str) -> AddressPair:
    """--allowed-address-pair IP[,MAC]: an IPv4 address or network, and a MAC."""
    ip, sep, mac = text.partition(",")
    if sep and not mac:
        raise ValidationError(f"bad --allowed-address-pair {text!r}: use IP[,MAC]")
    return AddressPair(ip, mac or None)
