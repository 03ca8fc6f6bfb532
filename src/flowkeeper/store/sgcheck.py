"""Security-group rules every store backend applies the same way; pure.

Each function gets what the backend read (inside its transaction, or at the revision it
will compare against) and raises the error the API answers with, or returns what to write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from flowkeeper.cperrors import Conflict, MissingReference, NotFound
from flowkeeper.model import Port, SecurityGroup, SecurityGroupRule
from flowkeeper.model_sg import DEFAULT_GROUP
from flowkeeper.validation import StateConflict

__all__ = [
    "DEFAULT_GROUP",
    "check_port_groups",
    "check_remotes",
    "in_use",
    "other_remotes",
    "updated_port",
    "with_rule",
    "without_rule",
]


def check_port_groups(port: Port, groups: Mapping[str, SecurityGroup | None]) -> None:
    """Every group of the port exists (NotFound) and is of the port's project (else
    StateConflict, 409: the request is well formed, the stored group refuses it)."""
    for gid in port.security_groups:
        group = groups.get(gid)
        if group is None:
            raise MissingReference(f"security group {gid!r} not found")
        if group.project_id != port.project_id:
            raise StateConflict(
                f"security group {gid!r} is of project {group.project_id!r}, "
                f"not the port's project {port.project_id!r}"
            )


def updated_port(port: Port, changes: Mapping[str, Any]) -> Port:
    """The port with its security fields changed. Without port security a port takes no
    groups and no pairs: when the stored port is what breaks that (turning it off while it
    has groups, giving groups to a port without it), StateConflict (409); when the update
    itself asks for both, the model's ValidationError (400)."""
    enabled = changes.get("port_security_enabled", port.port_security_enabled)
    if not enabled:
        for name in ("security_groups", "allowed_address_pairs"):
            value = changes.get(name, getattr(port, name))
            if value and not ("port_security_enabled" in changes and name in changes):
                what = name.replace("_", " ")
                raise StateConflict(
                    f"port {port.id!r} would have {what} without port security: turn "
                    f"port_security_enabled on, or clear {name} in the same update"
                )
    return replace(port, **changes)


def other_remotes(group: SecurityGroup) -> frozenset[str]:
    """The groups its rules name as remote, other than itself (the index of references)."""
    return group.remote_groups() - {group.id}


def check_remotes(group: SecurityGroup, found: Mapping[str, SecurityGroup | None]) -> None:
    """The remote groups of `group`'s rules exist and are of its project."""
    for gid in sorted(other_remotes(group)):
        remote = found.get(gid)
        if remote is None:
            raise MissingReference(f"remote group {gid!r} not found")
        if remote.project_id != group.project_id:
            raise StateConflict(
                f"remote group {gid!r} is of project {remote.project_id!r}, "
                f"not the group's project {group.project_id!r}"
            )


def with_rule(group: SecurityGroup, rule: SecurityGroupRule) -> SecurityGroup:
    """The group with `rule` added; Conflict for a duplicate (Neutron answers 409)."""
    same = group.same_rule(rule)
    if same is not None:
        raise Conflict(f"group {group.name!r} already has this rule: {same.id} ({same.describe()})")
    if group.rule(rule.id) is not None:
        raise Conflict(f"rule id {rule.id!r} already exists in group {group.name!r}")
    return replace(group, rules=(*group.rules, rule))


def without_rule(group: SecurityGroup, rule_id: str) -> SecurityGroup:
    if group.rule(rule_id) is None:
        raise NotFound(f"rule {rule_id!r} not found in security group {group.id!r}")
    return replace(group, rules=tuple(r for r in group.rules if r.id != rule_id))


def in_use(group: SecurityGroup, ports: Iterable[str], referrers: Iterable[str]) -> None:
    """Conflict while ports use the group or other groups' rules name it as remote."""
    users = sorted(ports)
    if users:
        more = f" and {len(users) - 1} more" if len(users) > 1 else ""
        raise Conflict(
            f"security group {group.name!r} ({group.id}) is used by port {users[0]!r}{more}; "
            "take it off its ports first"
        )
    refs = sorted(set(referrers) - {group.id})
    if refs:
        raise Conflict(
            f"security group {group.name!r} ({group.id}) is the remote group of rules in "
            f"group {refs[0]!r}; delete those rules first"
        )
