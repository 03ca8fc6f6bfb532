"""Typed, validated control-plane objects (networks, ports, hosts, views, watch events); pure."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from flowkeeper import validation as v
from flowkeeper.model_sg import (
    AddressPair,
    GroupMember,
    SecurityGroup,
    SecurityGroupRule,
    check_address_pairs,
    check_group_ids,
)
from flowkeeper.validation import ValidationError

__all__ = [
    "DEFAULT_PROJECT",
    "AddressPair",
    "GroupMember",
    "Host",
    "Network",
    "NetworkType",
    "Port",
    "PortStatus",
    "SecurityGroup",
    "SecurityGroupRule",
    "ValidationError",
    "View",
    "WatchEvent",
    "WatchObject",
    "check_port_in_network",
]

NetworkType = Literal["vxlan", "gre"]
PortStatus = Literal["DOWN", "ACTIVE"]
WatchKind = Literal["network", "port", "security_group", "member", "heartbeat"]
WatchOp = Literal["put", "delete", ""]
NETWORK_TYPES: tuple[NetworkType, ...] = ("vxlan", "gre")
CLUSTER_HEADER = "Flowkeeper-Cluster-Id"  # every server response: its store's identity
PORT_STATUSES: tuple[PortStatus, ...] = ("DOWN", "ACTIVE")
DEFAULT_PROJECT = "default"  # the project of objects made without one (and before projects)


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)  # normalising a frozen dataclass in __post_init__


def check_network_type(value: object) -> NetworkType:
    if value not in NETWORK_TYPES:
        raise ValidationError(f"bad network type {value!r}: use vxlan or gre")
    return value


def check_port_status(value: object) -> PortStatus:
    if value not in PORT_STATUSES:
        raise ValidationError(f"bad port status {value!r}: use ACTIVE or DOWN")
    return value


@dataclass(frozen=True, slots=True)
class Network:
    """An overlay network; `revision` is the store revision that last changed it."""

    id: str
    name: str
    type: NetworkType
    segmentation_id: int
    cidr: str | None = None
    revision: int = 0
    project_id: str = DEFAULT_PROJECT

    def __post_init__(self) -> None:
        v.check_id(self.id, "network")
        v.check_name(self.name, "network")
        check_network_type(self.type)
        v.check_segment(self.type, self.segmentation_id)
        if self.cidr is not None:
            _set(self, "cidr", v.check_cidr(self.cidr))
        v.check_revision(self.revision)
        v.check_name(self.project_id, "project")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "segmentation_id": self.segmentation_id,
            "cidr": self.cidr,
            "revision": self.revision,
            "project_id": self.project_id,
        }

    @classmethod
    def from_dict(cls, data: object) -> Network:
        d = v.check_object(data, "network")
        required = ["id", "name", "type", "segmentation_id"]
        v.check_fields(d, required, ["cidr", "revision", "project_id"], "network")
        return cls(
            id=v.get_str(d, "id"),
            name=v.get_str(d, "name"),
            type=check_network_type(v.get_str(d, "type")),
            segmentation_id=v.get_int(d, "segmentation_id"),
            cidr=v.get_opt_str(d, "cidr"),
            revision=v.get_int(d, "revision", 0),
            project_id=v.get_str(d, "project_id", DEFAULT_PROJECT),
        )


@dataclass(frozen=True, slots=True)
class Port:
    """A VIF's port: bound to `host`, on `network_id`.

    `tunnel_ip` is not stored: the server fills in the binding host's tunnel IP when it
    sends ports to agents (None when that host is unknown).

    Security: with `port_security_enabled` the port's traffic is filtered by the rules of
    its `security_groups` (none: everything dropped) and it may send only from its MAC and
    fixed IPs plus its `allowed_address_pairs`. Without it the port is unfiltered and takes
    neither groups nor pairs. A port stored before security groups reads as unfiltered.
    """

    id: str
    network_id: str
    host: str
    mac: str
    fixed_ips: tuple[str, ...] = ()
    status: PortStatus = "DOWN"
    name: str = ""
    device_id: str = ""
    revision: int = 0
    tunnel_ip: str | None = None
    project_id: str = DEFAULT_PROJECT
    security_groups: tuple[str, ...] = ()
    port_security_enabled: bool = False
    allowed_address_pairs: tuple[AddressPair, ...] = ()

    def __post_init__(self) -> None:
        v.check_id(self.id, "port")
        v.check_id(self.network_id, "network")
        v.check_name(self.host, "host")
        _set(self, "mac", v.check_mac(self.mac))
        if not isinstance(self.fixed_ips, tuple | list):
            raise ValidationError("fixed_ips must be a list of IPv4 addresses")
        ips = tuple(v.check_ipv4(ip) for ip in self.fixed_ips)
        if len(set(ips)) != len(ips):
            raise ValidationError(f"duplicate IP in fixed_ips {list(ips)}")
        _set(self, "fixed_ips", ips)
        check_port_status(self.status)
        v.check_text(self.name, "port name")
        v.check_text(self.device_id, "device_id")
        v.check_revision(self.revision)
        if self.tunnel_ip is not None:
            _set(self, "tunnel_ip", v.check_ipv4(self.tunnel_ip, "tunnel IP"))
        v.check_name(self.project_id, "project")
        _set(self, "security_groups", check_group_ids(self.security_groups))
        if not isinstance(self.port_security_enabled, bool):
            raise ValidationError("port_security_enabled must be true or false")
        _set(
            self, "allowed_address_pairs", check_address_pairs(self.allowed_address_pairs, self.mac)
        )
        if not self.port_security_enabled and self.security_groups:
            raise ValidationError(
                "a port with port_security_enabled false takes no security groups"
            )
        if not self.port_security_enabled and self.allowed_address_pairs:
            raise ValidationError(
                "a port with port_security_enabled false takes no allowed address pairs"
            )

    def member_ips(self) -> tuple[str, ...]:
        """Its addresses as a member of its groups: fixed IPs and address pairs' IPs."""
        ips = set(self.fixed_ips) | {p.ip_address for p in self.allowed_address_pairs}
        return tuple(sorted(ips))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "network_id": self.network_id,
            "host": self.host,
            "mac": self.mac,
            "fixed_ips": list(self.fixed_ips),
            "status": self.status,
            "name": self.name,
            "device_id": self.device_id,
            "revision": self.revision,
            "tunnel_ip": self.tunnel_ip,
            "project_id": self.project_id,
            "security_groups": list(self.security_groups),
            "port_security_enabled": self.port_security_enabled,
            "allowed_address_pairs": [p.to_dict() for p in self.allowed_address_pairs],
        }

    @classmethod
    def from_dict(cls, data: object) -> Port:
        d = v.check_object(data, "port")
        optional = [
            "fixed_ips",
            "status",
            "name",
            "device_id",
            "revision",
            "tunnel_ip",
            "project_id",
            "security_groups",
            "port_security_enabled",
            "allowed_address_pairs",
        ]
        v.check_fields(d, ["id", "network_id", "host", "mac"], optional, "port")
        pairs = d.get("allowed_address_pairs", [])
        if not isinstance(pairs, list):
            raise ValidationError("field 'allowed_address_pairs' must be a list")
        return cls(
            id=v.get_str(d, "id"),
            network_id=v.get_str(d, "network_id"),
            host=v.get_str(d, "host"),
            mac=v.get_str(d, "mac"),
            fixed_ips=v.get_str_list(d, "fixed_ips"),
            status=check_port_status(v.get_str(d, "status", "DOWN")),
            name=v.get_str(d, "name", ""),
            device_id=v.get_str(d, "device_id", ""),
            revision=v.get_int(d, "revision", 0),
            tunnel_ip=v.get_opt_str(d, "tunnel_ip"),
            project_id=v.get_str(d, "project_id", DEFAULT_PROJECT),
            security_groups=v.get_str_list(d, "security_groups"),
            port_security_enabled=v.get_bool(d, "port_security_enabled", False),
            allowed_address_pairs=tuple(AddressPair.from_dict(p) for p in pairs),
        )


@dataclass(frozen=True, slots=True)
class Host:
    """A hypervisor as its agent registered it.

    `revision` is the last store revision the agent says it applied; `state` is its own
    word ("syncing", "in-sync", ...); `last_seen` (Unix time) is set by the server.
    """

    name: str
    tunnel_ip: str
    l2pop: bool = True
    virtual: bool = False
    state: str = "unknown"
    revision: int = 0
    last_seen: float = 0.0

    def __post_init__(self) -> None:
        v.check_name(self.name, "host")
        _set(self, "tunnel_ip", v.check_ipv4(self.tunnel_ip, "tunnel IP"))
        if not isinstance(self.l2pop, bool) or not isinstance(self.virtual, bool):
            raise ValidationError("l2pop and virtual must be true or false")
        v.check_state(self.state)
        v.check_revision(self.revision)
        seen = self.last_seen
        if isinstance(seen, bool) or not isinstance(seen, int | float) or not math.isfinite(seen):
            raise ValidationError(f"bad last_seen {seen!r}: must be a Unix time")
        _set(self, "last_seen", float(seen))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tunnel_ip": self.tunnel_ip,
            "l2pop": self.l2pop,
            "virtual": self.virtual,
            "state": self.state,
            "revision": self.revision,
            "last_seen": self.last_seen,
        }

    @classmethod
    def from_dict(cls, data: object) -> Host:
        d = v.check_object(data, "host")
        v.check_fields(
            d, ["name", "tunnel_ip"], ["l2pop", "virtual", "state", "revision", "last_seen"], "host"
        )
        return cls(
            name=v.get_str(d, "name"),
            tunnel_ip=v.get_str(d, "tunnel_ip"),
            l2pop=v.get_bool(d, "l2pop", True),
            virtual=v.get_bool(d, "virtual", False),
            state=v.get_str(d, "state", "unknown"),
            revision=v.get_int(d, "revision", 0),
            last_seen=v.get_float(d, "last_seen", 0.0),
        )

    def same_spec(self, other: Host) -> bool:
        """Equal apart from liveness (state, revision, last_seen)."""
        return (self.tunnel_ip, self.l2pop, self.virtual) == (
            other.tunnel_ip,
            other.l2pop,
            other.virtual,
        )


def check_port_in_network(port: Port, network: Network) -> None:
    """Cross-object rule: a port's fixed IPs lie inside its network's CIDR (when it has one)."""
    if port.network_id != network.id:
        raise ValidationError(f"port {port.id!r} is not on network {network.name!r}")
    if network.cidr is not None:
        for ip in port.fixed_ips:
            v.check_ip_in_cidr(ip, network.cidr, network.name)


@dataclass(frozen=True)
class View:
    """What one host needs, consistent at `revision`: the networks where it has ports and
    every port of those networks (with `tunnel_ip` filled in); the security groups its
    ports use and the members of the groups their rules name as remote groups."""

    revision: int
    networks: list[Network] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)
    security_groups: list[SecurityGroup] = field(default_factory=list)
    members: list[GroupMember] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "networks": [n.to_dict() for n in self.networks],
            "ports": [p.to_dict() for p in self.ports],
            "security_groups": [g.to_dict() for g in self.security_groups],
            "members": [m.to_dict() for m in self.members],
        }

    @classmethod
    def from_dict(cls, data: object) -> View:
        d = v.check_object(data, "view")
        v.check_fields(d, ["revision", "networks", "ports"], ["security_groups", "members"], "view")
        nets, ports = d["networks"], d["ports"]
        groups, members = d.get("security_groups", []), d.get("members", [])
        if not all(isinstance(x, list) for x in (nets, ports, groups, members)):
            raise ValidationError("view networks, ports, security_groups and members must be lists")
        return cls(
            revision=v.check_revision(v.get_int(d, "revision")),
            networks=[Network.from_dict(n) for n in nets],
            ports=[Port.from_dict(p) for p in ports],
            security_groups=[SecurityGroup.from_dict(g) for g in groups],
            members=[GroupMember.from_dict(m) for m in members],
        )


WatchObject = Network | Port | SecurityGroup | GroupMember
_WATCH_DECODERS: dict[str, Any] = {
    "network": Network.from_dict,
    "port": Port.from_dict,
    "security_group": SecurityGroup.from_dict,
    "member": GroupMember.from_dict,
}


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One message of a host's watch stream.

    kind "network"/"port"/"security_group"/"member" with op "put"/"delete" and the object;
    or kind "heartbeat" (op "", object None): everything up to `revision` has been sent. A
    network "delete" means: drop that network and all its ports from your view. A member
    (GroupMember) is keyed by (group_id, port_id).
    """

    revision: int
    kind: WatchKind
    op: WatchOp
    object: WatchObject | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "heartbeat" or self.object is None:
            return {"kind": "heartbeat", "revision": self.revision}
        return {
            "revision": self.revision,
            "kind": self.kind,
            "op": self.op,
            "object": self.object.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> WatchEvent:
        d = v.check_object(data, "watch message")
        kind = d.get("kind")
        revision = v.check_revision(v.get_int(d, "revision"))
        if kind == "heartbeat":
            return cls(revision, "heartbeat", "")
        v.check_fields(d, ["revision", "kind", "op", "object"], [], "watch message")
        op = d["op"]
        if op not in ("put", "delete"):
            raise ValidationError(f"bad watch op {op!r}")
        decode = _WATCH_DECODERS.get(kind) if isinstance(kind, str) else None
        if decode is None:
            raise ValidationError(f"bad watch message kind {kind!r}")
        return cls(revision, cast(WatchKind, kind), op, decode(d["object"]))
