"""`flowkeeper security-group create|list|show|delete` and `security-group rule
create|list|delete`: Neutron's security groups on the server (options as in `openstack
security group`)."""

from __future__ import annotations

import argparse
from typing import Any

from flowkeeper.cli.common import emit
from flowkeeper.cli.cpclient import add_client_options, client_from
from flowkeeper.cli.table import fields, table
from flowkeeper.client import Client
from flowkeeper.model import SecurityGroup, SecurityGroupRule
from flowkeeper.validation import ValidationError, check_id, check_name, check_text


def register(sub: Any) -> None:
    sg = sub.add_parser("security-group", help="security groups: stateful firewall rules for ports")
    cmds = sg.add_subparsers(dest="sg_command", required=True)

    create = cmds.add_parser(
        "create", help="create a group (it allows egress anywhere, no ingress, as in Neutron)"
    )
    create.add_argument("name", help='group name; "default" makes the project\'s default group')
    create.add_argument("--description", default="", help="free text shown by show")
    _project(create, "the group's project (default: default)")
    create.add_argument("--id", help="group id (default: a new UUID)")
    add_client_options(create)
    create.set_defaults(func=_create)

    lst = cmds.add_parser("list", help="list groups")
    _project(lst, "only this project's groups (its default group is made if missing)")
    add_client_options(lst)
    lst.set_defaults(func=_list)

    show = cmds.add_parser("show", help="one group and its rules")
    show.add_argument("group", help="group name or id")
    _project(show, "look the name up in this project")
    add_client_options(show)
    show.set_defaults(func=_show)

    delete = cmds.add_parser("delete", help="delete a group no port uses")
    delete.add_argument("group", help="group name or id")
    _project(delete, "look the name up in this project")
    add_client_options(delete)
    delete.set_defaults(func=_delete)

    _register_rules(cmds)


def _register_rules(cmds: Any) -> None:
    rule = cmds.add_parser("rule", help="the rules of a group")
    rcmds = rule.add_subparsers(dest="sg_rule_command", required=True)

    create = rcmds.add_parser("create", help="add a rule to a group")
    create.add_argument("group", help="group name or id")
    way = create.add_mutually_exclusive_group()
    way.add_argument(
        "--ingress",
        dest="direction",
        action="store_const",
        const="ingress",
        help="traffic to the port (the default)",
    )
    way.add_argument(
        "--egress",
        dest="direction",
        action="store_const",
        const="egress",
        help="traffic from the port",
    )
    create.add_argument(
        "--ethertype", choices=["IPv4", "IPv6"], default="IPv4", help="IP version (default IPv4)"
    )
    create.add_argument(
        "--protocol",
        choices=["tcp", "udp", "icmp", "icmpv6", "any"],
        default="any",
        help="the protocol allowed (default any)",
    )
    create.add_argument(
        "--dst-port",
        metavar="PORT[:PORT]",
        help="tcp/udp destination port or range, e.g. 22 or 8000:8080 (default: all)",
    )
    create.add_argument("--icmp-type", type=int, help="icmp/icmpv6 type, 0-255 (default: all)")
    create.add_argument("--icmp-code", type=int, help="icmp/icmpv6 code, 0-255 (needs a type)")
    remote = create.add_mutually_exclusive_group()
    remote.add_argument(
        "--remote-ip", metavar="CIDR", help="allow only this address or network (default: any)"
    )
    remote.add_argument(
        "--remote-group", metavar="GROUP", help="allow only the ports of this group (name or id)"
    )
    _project(create, "look names up in this project")
    create.add_argument("--id", help="rule id (default: a new UUID)")
    add_client_options(create)
    create.set_defaults(func=_rule_create, direction="ingress")

    lst = rcmds.add_parser("list", help="a group's rules")
    lst.add_argument("group", help="group name or id")
    _project(lst, "look the name up in this project")
    add_client_options(lst)
    lst.set_defaults(func=_rule_list)

    delete = rcmds.add_parser("delete", help="delete a rule")
    delete.add_argument("group", help="group name or id")
    delete.add_argument("rule", help="rule id")
    _project(delete, "look the group's name up in this project")
    add_client_options(delete)
    delete.set_defaults(func=_rule_delete)


def _project(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--project", help=text)


def _find(client: Client, args: argparse.Namespace) -> SecurityGroup:
    return client.find_security_group(args.group, args.project)


# --- groups -----------------------------------------------------------------------
def _create(args: argparse.Namespace) -> int:
    check_name(args.name, "security group")
    check_text(args.description, "description")
    project = args.project or "default"
    check_name(project, "project")
    if args.id is not None:
        check_id(args.id, "security group")
    group = client_from(args).create_security_group(
        args.name, description=args.description, project_id=project, id=args.id
    )
    emit(
        group.to_dict(),
        args.json,
        f"created security group {group.name} ({group.id}) in project {group.project_id}, "
        f"{len(group.rules)} rule(s)",
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    if args.project is not None:
        check_name(args.project, "project")
    groups = client_from(args).list_security_groups(args.project)
    rows = [(g.name, g.id, g.project_id, len(g.rules), g.description or "-") for g in groups]
    text = table(["name", "id", "project", "rules", "description"], rows)
    emit([g.to_dict() for g in groups], args.json, text if groups else "no security groups")
    return 0


def _show(args: argparse.Namespace) -> int:
    group = _find(client_from(args), args)
    head = fields(
        [
            ("id", group.id),
            ("name", group.name),
            ("project", group.project_id),
            ("description", group.description),
            ("revision", group.revision),
        ]
    )
    rules = rule_rows(group.rules) if group.rules else "no rules"
    emit(group.to_dict(), args.json, f"{head}\n{rules}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    client = client_from(args)
    group = _find(client, args)
    revision = client.delete_security_group(group.id)
    emit(
        {"deleted": group.id, "revision": revision},
        args.json,
        f"deleted security group {group.name} ({group.id})",
    )
    return 0


# --- rules ------------------------------------------------------------------------
def rule_rows(rules: tuple[SecurityGroupRule, ...] | list[SecurityGroupRule]) -> str:
    rows = [
        (
            r.id,
            r.direction,
            r.ethertype,
            r.protocol or "any",
            _ports(r),
            r.remote_ip_prefix or (f"group {r.remote_group_id}" if r.remote_group_id else "any"),
        )
        for r in rules
    ]
    return table(["id", "direction", "ethertype", "protocol", "ports", "remote"], rows)


def _ports(rule: SecurityGroupRule) -> str:
    if rule.port_range_min is None:
        return "any"
    if rule.protocol in ("icmp", "icmpv6"):
        code = "" if rule.port_range_max is None else f" code {rule.port_range_max}"
        return f"type {rule.port_range_min}{code}"
    if rule.port_range_min == rule.port_range_max:
        return str(rule.port_range_min)
    return f"{rule.port_range_min}:{rule.port_range_max}"


def parse_ports(text: str | None) -> tuple[int | None, int | None]:
    """--dst-port 22 or 8000:8080."""
    if text is None:
        return None, None
    low, sep, high = text.partition(":")
    try:
        first = int(low)
        last = int(high) if sep else first
    except ValueError:
        raise ValidationError(
            f"bad --dst-port {text!r}: use a port or a range, e.g. 22 or 8000:8080"
        ) from None
    return first, last


def rule_from_args(
    args: argparse.Namespace, remote_group: str | None, rule_id: str
) -> SecurityGroupRule:
    protocol = None if args.protocol == "any" else args.protocol
    if args.dst_port is not None and (args.icmp_type is not None or args.icmp_code is not None):
        raise ValidationError("--dst-port is for tcp/udp, --icmp-type/--icmp-code for icmp")
    if args.dst_port is not None:
        low, high = parse_ports(args.dst_port)
        if protocol not in ("tcp", "udp"):
            raise ValidationError("--dst-port needs --protocol tcp or udp")
    else:
        low, high = args.icmp_type, args.icmp_code
        if (low is not None or high is not None) and protocol not in ("icmp", "icmpv6"):
            raise ValidationError("--icmp-type/--icmp-code need --protocol icmp or icmpv6")
    return SecurityGroupRule(
        rule_id,
        args.direction,
        args.ethertype,
        protocol,
        low,
        high,
        args.remote_ip,
        remote_group,
    )


def _rule_create(args: argparse.Namespace) -> int:
    if args.id is not None:
        check_id(args.id, "rule")
    client = client_from(args)
    group = _find(client, args)
    remote = None
    if args.remote_group is not None:
        found = client.find_security_group(args.remote_group, args.project or group.project_id)
        remote = found.id
    rule = rule_from_args(args, remote, args.id or "new")
    if args.id is None:
        rule = client.create_security_group_rule(group.id, None, **_fields(rule))
    else:
        rule = client.create_security_group_rule(group.id, rule)
    data = {**rule.to_dict(), "security_group_id": group.id}
    emit(data, args.json, f"created rule {rule.id} in {group.name}: {rule.describe()}")
    return 0


def _fields(rule: SecurityGroupRule) -> dict[str, Any]:
    data = rule.to_dict()
    data.pop("id")
    return data


def _rule_list(args: argparse.Namespace) -> int:
    client = client_from(args)
    group = _find(client, args)
    rules = client.list_security_group_rules(group.id)
    emit([r.to_dict() for r in rules], args.json, rule_rows(rules) if rules else "no rules")
    return 0


def _rule_delete(args: argparse.Namespace) -> int:
    check_id(args.rule, "rule")
    client = client_from(args)
    group = _find(client, args)
    revision = client.delete_security_group_rule(group.id, args.rule)
    emit(
        {"deleted": args.rule, "revision": revision},
        args.json,
        f"deleted rule {args.rule} of {group.name}",
    )
    return 0
