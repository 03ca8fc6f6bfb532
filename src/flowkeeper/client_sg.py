"""Security-group request bodies and answers for both API clients; pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowkeeper.model import AddressPair, SecurityGroup, SecurityGroupRule

RULE_EXTRA = ("security_group_id", "revision")  # in the API's rule answers, not the model's


def port_security_fields(
    project_id: str | None,
    security_groups: Sequence[str] | None,
    port_security_enabled: bool,
    allowed_address_pairs: Sequence[AddressPair],
) -> dict[str, Any]:
    """The security fields of a port create, only those that differ from the server's
    defaults (so a server from before security groups still takes a plain create)."""
    body: dict[str, Any] = {}
    if project_id is not None:
        body["project_id"] = project_id
    if security_groups is not None:
        body["security_groups"] = list(security_groups)
    if not port_security_enabled:
        body["port_security_enabled"] = False
    if allowed_address_pairs:
        body["allowed_address_pairs"] = [pair_body(p) for p in allowed_address_pairs]
    return body


def pair_body(pair: AddressPair) -> dict[str, Any]:
    body: dict[str, Any] = {"ip_address": pair.ip_address}
    if pair.mac_address is not None:
        body["mac_address"] = pair.mac_address
    return body


def port_update_body(
    security_groups: Sequence[str] | None,
    port_security_enabled: bool | None,
    allowed_address_pairs: Sequence[AddressPair] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if security_groups is not None:
        body["security_groups"] = list(security_groups)
    if port_security_enabled is not None:
        body["port_security_enabled"] = port_security_enabled
    if allowed_address_pairs is not None:
        body["allowed_address_pairs"] = [pair_body(p) for p in allowed_address_pairs]
    return body


def group_body(name: str, description: str, project_id: str, group_id: str) -> dict[str, Any]:
    return {"name": name, "description": description, "project_id": project_id, "id": group_id}


def same_group(found: Any, body: Mapping[str, Any]) -> bool:
    group = SecurityGroup.from_dict(found)
    want = (body["name"], body["description"], body["project_id"])
    return (group.name, group.description, group.project_id) == want


def rule_body(rule: SecurityGroupRule) -> dict[str, Any]:
    """A rule create: the rule's fields that are set."""
    return {k: val for k, val in rule.to_dict().items() if val is not None}


def rule_from(data: Any) -> SecurityGroupRule:
    """A rule from the API's answer (which also names its group and revision)."""
    if not isinstance(data, Mapping):
        return SecurityGroupRule.from_dict(data)  # its one-line error
    return SecurityGroupRule.from_dict({k: v for k, v in data.items() if k not in RULE_EXTRA})


def same_rule(found: Any, rule: SecurityGroupRule) -> bool:
    return rule_from(found) == rule
