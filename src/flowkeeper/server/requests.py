"""Turn request bodies and query strings into validated values; pure, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowkeeper import validation as v
from flowkeeper.model import (
    Host,
    NetworkType,
    Port,
    PortStatus,
    check_network_type,
    check_port_status,
)
from flowkeeper.validation import ValidationError


@dataclass(frozen=True)
class NetworkSpec:
    """A network to create; the store allocates segmentation_id when it is None."""

    name: str
    type: NetworkType
    segmentation_id: int | None = None
    cidr: str | None = None
    id: str | None = None


def parse_json(raw: bytes) -> Mapping[str, Any]:
    """A request body that must be one JSON object."""
    if not raw.strip():
        raise ValidationError("empty request body: expected a JSON object")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise ValidationError("request body is not UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"bad JSON in request body: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    return v.check_object(data, "request body")


def parse_network_create(body: Mapping[str, Any]) -> NetworkSpec:
    v.check_fields(body, ["name", "type"], ["segmentation_id", "cidr", "id"], "network")
    kind = check_network_type(v.get_str(body, "type"))
    seg = v.get_opt_int(body, "segmentation_id")
    cidr = v.get_opt_str(body, "cidr")
    nid = v.get_opt_str(body, "id")
    return NetworkSpec(
        name=v.check_name(v.get_str(body, "name"), "network"),
        type=kind,
        segmentation_id=None if seg is None else v.check_segment(kind, seg),
        cidr=None if cidr is None else v.check_cidr(cidr),
        id=None if nid is None else v.check_id(nid, "network"),
    )


def parse_port_create(body: Mapping[str, Any], new_id: str) -> Port:
    """The port to create; `new_id` is used unless the body names one."""
    v.check_fields(
        body,
        ["network_id", "host", "mac"],
        ["fixed_ips", "name", "device_id", "id", "status"],
        "port",
    )
    return Port(
        id=v.get_opt_str(body, "id") or new_id,
        network_id=v.get_str(body, "network_id"),
        host=v.get_str(body, "host"),
        mac=v.get_str(body, "mac"),
        fixed_ips=v.get_str_list(body, "fixed_ips"),
        status=check_port_status(v.get_str(body, "status", "DOWN")),
        name=v.get_str(body, "name", ""),
        device_id=v.get_str(body, "device_id", ""),
    )


def parse_port_status(body: Mapping[str, Any]) -> tuple[PortStatus, str | None]:
    """The status, and the reporting host if given (the port must be bound there)."""
    v.check_fields(body, ["status"], ["host"], "port status")
    host = v.check_name(v.get_str(body, "host"), "host") if "host" in body else None
    return check_port_status(v.get_str(body, "status")), host


def parse_port_binding(body: Mapping[str, Any]) -> str:
    v.check_fields(body, ["host"], [], "port binding")
    return v.check_name(v.get_str(body, "host"), "host")


def parse_host_put(name: str, body: Mapping[str, Any], now: float) -> Host:
    """A host registration or heartbeat; the server sets last_seen to `now`."""
    v.check_fields(body, ["tunnel_ip"], ["l2pop", "virtual", "state", "revision"], "host")
    return Host(
        name=v.check_name(name, "host"),
        tunnel_ip=v.get_str(body, "tunnel_ip"),
        l2pop=v.get_bool(body, "l2pop", True),
        virtual=v.get_bool(body, "virtual", False),
        state=v.get_str(body, "state", "unknown"),
        revision=v.check_revision(v.get_int(body, "revision", 0)),
        last_seen=now,
    )


def check_query(query: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(k for k in query if k not in allowed)
    if unknown:
        names = ", ".join(allowed) or "none"
        raise ValidationError(f"unknown query parameter {unknown[0]!r} (allowed: {names})")


def parse_revision(text: str | None, what: str = "from") -> int:
    if text is None:
        raise ValidationError(f"missing query parameter {what!r}: the revision to start after")
    if not text.isdigit() or len(text) > 18:
        raise ValidationError(f"bad {what}={text!r}: must be a revision number >= 0")
    return int(text)
