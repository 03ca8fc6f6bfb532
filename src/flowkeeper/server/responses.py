"""Response types of the /v1 API: the shapes the server answers with, stated for the document."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowkeeper.server.requests import (
    Cidr,
    GreSegment,
    Id,
    IPv4,
    Mac,
    Name,
    PortStatusValue,
    Revision,
    State,
    Strict,
    Text,
)


class Error(Strict):
    error: str = Field(description="what was wrong, in one line")


class Network(Strict):
    id: Id
    name: Name
    type: Literal["vxlan", "gre"]
    segmentation_id: GreSegment = Field(description="vxlan 1..16777215, gre 1..4294967295")
    cidr: Cidr | None
    revision: Revision = Field(description="store revision of the last change")
    project_id: Name = Field(description='its project ("default" unless given)')


class AddressPair(Strict):
    ip_address: IPv4 | Cidr = Field(description="an IPv4 address or network")
    mac_address: Mac | None = Field(description="the port's own MAC when null on input")


class Port(Strict):
    id: Id
    network_id: Id
    host: Name
    mac: Mac
    fixed_ips: list[IPv4]
    status: PortStatusValue
    name: Text
    device_id: Text
    revision: Revision
    tunnel_ip: IPv4 | None = Field(
        description="the binding host's tunnel IP; filled in only in views and watch "
        "messages (null when the host is not registered)"
    )
    project_id: Name
    security_groups: list[Id] = Field(description="ids of its security groups, sorted")
    port_security_enabled: bool = Field(
        description="false: unfiltered (no groups, no anti-spoofing)"
    )
    allowed_address_pairs: list[AddressPair]


class SecurityGroupRule(Strict):
    id: Id
    direction: Literal["ingress", "egress"]
    ethertype: Literal["IPv4", "IPv6"]
    protocol: Literal["tcp", "udp", "icmp", "icmpv6"] | None = Field(description="null: any")
    port_range_min: int | None = Field(description="tcp/udp: first port; icmp: type")
    port_range_max: int | None = Field(description="tcp/udp: last port; icmp: code")
    remote_ip_prefix: str | None = Field(description="a CIDR; null: any address")
    remote_group_id: Id | None = Field(description="from/to the members of this group")


class SecurityGroup(Strict):
    id: Id
    name: Name
    project_id: Name
    description: Text
    rules: list[SecurityGroupRule] = Field(description="sorted by id")
    revision: Revision = Field(description="store revision of the last change")


class GroupMember(Strict):
    group_id: Id
    port_id: Id
    ips: list[IPv4 | Cidr] = Field(description="fixed IPs and allowed address pairs' IPs")


class Host(Strict):
    name: Name
    tunnel_ip: IPv4
    l2pop: bool
    virtual: bool
    state: State
    revision: Revision = Field(description="last revision the agent applied")
    last_seen: float = Field(description="Unix time, set by the server")


class HostStatus(Host):
    alive: bool = Field(
        description="true while the host's heartbeats keep coming (the last one within the "
        "server's liveness TTL, default 15 s); false: the host is gone"
    )
    since: float = Field(
        description="Unix time: alive since (the first heartbeat of the current run), or "
        "gone since (when its liveness ran out)"
    )


class NetworkList(Strict):
    revision: Revision
    networks: list[Network]


class PortList(Strict):
    revision: Revision
    ports: list[Port]


class HostList(Strict):
    revision: Revision
    hosts: list[HostStatus]


class Deleted(Strict):
    deleted: Id
    revision: Revision


class View(Strict):
    revision: Revision
    networks: list[Network]
    ports: list[Port]
    security_groups: list[SecurityGroup] = Field(description="the groups its ports use")
    members: list[GroupMember] = Field(
        description="the members of the groups those groups' rules name as remote groups"
    )


class Heartbeat(Strict):
    kind: Literal["heartbeat"]
    revision: Revision = Field(description="everything up to here was sent")


class NetworkMessage(Strict):
    revision: Revision
    kind: Literal["network"]
    op: Literal["put", "delete"] = Field(description="delete: drop the network and its ports")
    object: Network


class PortMessage(Strict):
    revision: Revision
    kind: Literal["port"]
    op: Literal["put", "delete"]
    object: Port


class SecurityGroupMessage(Strict):
    revision: Revision
    kind: Literal["security_group"]
    op: Literal["put", "delete"]
    object: SecurityGroup


class MemberMessage(Strict):
    revision: Revision
    kind: Literal["member"]
    op: Literal["put", "delete"] = Field(description="keyed by (group_id, port_id)")
    object: GroupMember


WatchMessage = Annotated[
    Heartbeat | NetworkMessage | PortMessage | SecurityGroupMessage | MemberMessage,
    Field(discriminator="kind", description="one line of the NDJSON watch stream"),
]


class FanoutSample(Strict):
    revision: Revision
    network_id: Id
    delivered: int
    interested: int
    registered: int


class PortEventStats(Strict):
    count: int
    hosts_delivered_total: int
    hosts_interested_total: int
    hosts_registered_total: int
    mean_hosts_delivered: float
    mean_hosts_registered: float
    recent: list[FanoutSample] = Field(description="the last 1,000 port events")


class Stats(Strict):
    cluster_id: str = Field(
        description="the store's identity (also the Flowkeeper-Cluster-Id header)"
    )
    revision: Revision
    events_written: int
    events_by_kind: dict[str, int]
    messages_sent: int
    messages_by_kind: dict[str, int]
    watchers: int
    watch_connections: int
    registered_hosts: int
    port_events: PortEventStats


class OpenApiDocument(BaseModel):
    """This document."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, str]
