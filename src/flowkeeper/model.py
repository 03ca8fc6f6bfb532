"""Typed, validated control-plane objects (networks, ports, hosts, views, watch events); pure."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from flowkeeper import validation as v
from flowkeeper.validation import ValidationError

__all__ = [
    "Host",
    "Network",
    "NetworkType",
    "Port",
    "PortStatus",
    "ValidationError",
    "View",
    "WatchEvent",
    "check_port_in_network",
]

NetworkType = Literal["vxlan", "gre"]
PortStatus = Literal["DOWN", "ACTIVE"]
WatchKind = Literal["network", "port", "heartbeat"]
WatchOp = Literal["put", "delete", ""]
NETWORK_TYPES: tuple[NetworkType, ...] = ("vxlan", "gre")
CLUSTER_HEADER = "Flowkeeper-Cluster-Id"  # every server response: its store's identity
PORT_STATUSES: tuple[PortStatus, ...] = ("DOWN", "ACTIVE")


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

    def __post_init__(self) -> None:
        v.check_id(self.id, "network")
        v.check_name(self.name, "network")
        check_network_type(self.type)
        v.check_segment(self.type, self.segmentation_id)
        if self.cidr is not None:
            _set(self, "cidr", v.check_cidr(self.cidr))
        v.check_revision(self.revision)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "segmentation_id": self.segmentation_id,
            "cidr": self.cidr,
            "revision": self.revision,
        }

    @classmethod
    def from_dict(cls, data: object) -> Network:
        d = v.check_object(data, "network")
        required = ["id", "name", "type", "segmentation_id"]
        v.check_fields(d, required, ["cidr", "revision"], "network")
        return cls(
            id=v.get_str(d, "id"),
            name=v.get_str(d, "name"),
            type=check_network_type(v.get_str(d, "type")),
            segmentation_id=v.get_int(d, "segmentation_id"),
            cidr=v.get_opt_str(d, "cidr"),
            revision=v.get_int(d, "revision", 0),
        )


@dataclass(frozen=True, slots=True)
class Port:
    """A VIF's port: bound to `host`, on `network_id`.

    `tunnel_ip` is not stored: the server fills in the binding host's tunnel IP when it
    sends ports to agents (None when that host is unknown).
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
        }

    @classmethod
    def from_dict(cls, data: object) -> Port:
        d = v.check_object(data, "port")
        v.check_fields(
            d,
            ["id", "network_id", "host", "mac"],
            ["fixed_ips", "status", "name", "device_id", "revision", "tunnel_ip"],
            "port",
        )
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
    every port of those networks (with `tunnel_ip` filled in)."""

    revision: int
    networks: list[Network] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "networks": [n.to_dict() for n in self.networks],
            "ports": [p.to_dict() for p in self.ports],
        }

    @classmethod
    def from_dict(cls, data: object) -> View:
        d = v.check_object(data, "view")
        v.check_fields(d, ["revision", "networks", "ports"], [], "view")
        nets, ports = d["networks"], d["ports"]
        if not isinstance(nets, list) or not isinstance(ports, list):
            raise ValidationError("view networks and ports must be lists")
        return cls(
            revision=v.check_revision(v.get_int(d, "revision")),
            networks=[Network.from_dict(n) for n in nets],
            ports=[Port.from_dict(p) for p in ports],
        )


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One message of a host's watch stream.

    kind "network"/"port" with op "put"/"delete" and the object; or kind "heartbeat"
    (op "", object None): everything up to `revision` has been sent. A network "delete"
    means: drop that network and all its ports from your view.
    """

    revision: int
    kind: WatchKind
    op: WatchOp
    object: Network | Port | None = None

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
        if kind == "network":
            return cls(revision, "network", op, Network.from_dict(d["object"]))
        if kind == "port":
            return cls(revision, "port", op, Port.from_dict(d["object"]))
        raise ValidationError(f"bad watch message kind {kind!r}")
