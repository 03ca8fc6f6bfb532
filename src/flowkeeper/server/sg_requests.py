"""Request and response types of the security-group API (Neutron-shaped)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from flowkeeper import validation as v
from flowkeeper.model import SecurityGroupRule
from flowkeeper.server.requests import (
    AddressPairs,
    GroupIds,
    Id,
    Loose,
    Name,
    Revision,
    Strict,
    Text,
    _json_int,
)
from flowkeeper.server.responses import SecurityGroup as SecurityGroupOut

IpPrefix = Annotated[
    str,
    Field(
        pattern=v.IP_PREFIX_PATTERN,
        examples=["198.19.0.0/16"],
        description="an IPv4 or IPv6 address or network of the rule's ethertype; host bits "
        "are cleared, an address is a /32 (/128), a /0 is any address (null)",
    ),
]
PortNumber = Annotated[int, Field(ge=0, le=65535), BeforeValidator(_json_int)]
RULE_RELATIONS = (
    "tcp/udp: port_range_min and port_range_max both or neither, each 1-65535, min <= max "
    "(1-65535 is no range); icmp/icmpv6: port_range_min is the type and port_range_max the "
    "code, 0-255, a code only with a type; any protocol: no port_range; icmpv6 and IPv6 "
    "remote_ip_prefix only with ethertype IPv6 (and IPv4 ones with IPv4); remote_ip_prefix "
    "or remote_group_id, not both. Otherwise 400."
)


class RuleCreate(Strict):
    direction: Literal["ingress", "egress"] = Field(
        description="ingress: traffic to the port; egress: from it"
    )
    ethertype: Literal["IPv4", "IPv6"] = "IPv4"
    protocol: Literal["tcp", "udp", "icmp", "icmpv6", "any"] | None = Field(
        None, description="null or any: every protocol; icmp with IPv6 is icmpv6"
    )
    port_range_min: PortNumber | None = Field(None, description="tcp/udp: first port; icmp: type")
    port_range_max: PortNumber | None = Field(None, description="tcp/udp: last port; icmp: code")
    remote_ip_prefix: IpPrefix | None = None
    remote_group_id: Id | None = Field(
        None, description="allow the members of this group (of the same project)"
    )
    id: Id | None = Field(None, description="a UUID is generated if omitted")

    def to_rule(self, new_id: str) -> SecurityGroupRule:
        return SecurityGroupRule(
            id=self.id or new_id,
            direction=self.direction,
            ethertype=self.ethertype,
            protocol=None if self.protocol == "any" else self.protocol,
            port_range_min=self.port_range_min,
            port_range_max=self.port_range_max,
            remote_ip_prefix=self.remote_ip_prefix,
            remote_group_id=self.remote_group_id,
        )


class GroupCreate(Strict):
    name: Name = Field(
        description='"default" makes the project\'s default group (409 if it has one)'
    )
    description: Text = ""
    project_id: Name = "default"
    id: Id | None = Field(None, description="a UUID is generated if omitted")


PORT_SECURITY_RELATIONS = (
    "security_groups and allowed_address_pairs must be empty when port_security_enabled is "
    "false (400)."
)


class PortSecurityUpdate(Strict):
    security_groups: GroupIds | None = Field(
        None, description="the port's groups (replaces them); [] drops all its traffic"
    )
    port_security_enabled: bool | None = None
    allowed_address_pairs: AddressPairs | None = None


# --- path and query parameters --------------------------------------------------
class GroupPath(Loose):
    id: Id


class RulePath(Loose):
    id: Id
    rule_id: Id


class GroupsQuery(Loose):
    project_id: Name | None = Field(
        None,
        description="only this project's groups; its default group is made if it has none "
        "(with an admin token)",
    )


# --- responses ------------------------------------------------------------------
class GroupList(Strict):
    revision: Revision
    security_groups: list[SecurityGroupOut]


class RuleOut(Strict):
    id: Id
    security_group_id: Id
    direction: Literal["ingress", "egress"]
    ethertype: Literal["IPv4", "IPv6"]
    protocol: Literal["tcp", "udp", "icmp", "icmpv6"] | None
    port_range_min: int | None
    port_range_max: int | None
    remote_ip_prefix: str | None
    remote_group_id: Id | None
    revision: Revision = Field(description="the group's revision")


class RuleList(Strict):
    revision: Revision
    security_group_rules: list[RuleOut]
