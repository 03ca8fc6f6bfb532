"""Field checks shared by the domain model and request parsing; pure, one-line errors."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from flowkeeper.errors import UsageError


class ValidationError(UsageError):
    """Bad data for a domain object or a request; the message says what and why in one line."""


NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
STATE_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
SEGMENT_RANGES = {"vxlan": (1, 16_777_215), "gre": (1, 4_294_967_295)}
MAX_TEXT = 255


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


def check_object(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationError(f"{what} must be a JSON object, got {type(data).__name__}")
    return data


def check_fields(
    data: Mapping[str, Any], required: Iterable[str], optional: Iterable[str], what: str
) -> None:
    """No unknown fields, no missing required ones."""
    req, opt = list(required), list(optional)
    unknown = sorted(str(k) for k in data if k not in req and k not in opt)
    if unknown:
        allowed = ", ".join(req + opt)
        raise ValidationError(f"unknown field {unknown[0]!r} in {what} (allowed: {allowed})")
    for name in req:
        if name not in data:
            raise ValidationError(f"missing field {name!r} in {what}")


def _type_error(key: str, want: str, value: object) -> ValidationError:
    got = "null" if value is None else type(value).__name__
    return ValidationError(f"field {key!r} must be {want}, got {got}")


def get_str(data: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise _type_error(key, "a string", value)
    return value


def get_opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _type_error(key, "a string or null", value)
    return value


def get_int(data: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(key, "an integer", value)
    return value


def get_opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return None if value is None else get_int(data, key)


def get_bool(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise _type_error(key, "true or false", value)
    return value


def get_float(data: Mapping[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(key, "a number", value)
    return float(value)


def get_str_list(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _type_error(key, "a list of strings", value)
    return tuple(value)


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValidationError(
            f"bad {what} name {_show(value)}: use 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise ValidationError(
            f"bad {what} id {_show(value)}: use 1-64 letters, digits, '_', '.', ':' or '-'"
        )
    return value


def check_text(value: str, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT or not value.isprintable():
        raise ValidationError(f"bad {what} {_show(value)}: at most {MAX_TEXT} printable chars")
    return value


def check_state(value: str) -> str:
    if not isinstance(value, str) or not STATE_RE.fullmatch(value):
        raise ValidationError(
            f"bad host state {_show(value)}: use 1-32 lowercase letters, digits or '-'"
        )
    return value


def check_revision(value: int, what: str = "revision") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"bad {what} {_show(value)}: must be a whole number >= 0")
    return value


def check_mac(value: str) -> str:
    """A unicast MAC address, returned in lowercase."""
    mac = value.lower() if isinstance(value, str) else ""
    if not MAC_RE.fullmatch(mac):
        raise ValidationError(
            f"bad MAC address {_show(value)}: expected six hex octets like fa:16:3e:00:00:01"
        )
    if int(mac[:2], 16) & 1:
        raise ValidationError(f"bad MAC address {_show(value)}: multicast; a port needs unicast")
    if mac == "00:00:00:00:00:00":
        raise ValidationError(f"bad MAC address {_show(value)}: all zeros")
    return mac


def check_ipv4(value: str, what: str = "IP address") -> str:
    """A unicast IPv4 address in canonical dotted form."""
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValidationError(f"bad {what} {_show(value)}: not an IPv4 address") from None
    if addr.is_multicast or addr.is_unspecified or addr == ipaddress.IPv4Address(2**32 - 1):
        raise ValidationError(f"bad {what} {_show(value)}: not a unicast address")
    return str(addr)


def check_cidr(value: str) -> str:
    """An IPv4 network like 198.19.1.0/24 (no host bits), in canonical form."""
    if not isinstance(value, str) or "/" not in value:
        raise ValidationError(f"bad CIDR {_show(value)}: expected e.g. 198.19.1.0/24")
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        detail = "host bits set" if "host bits" in str(exc) else "expected e.g. 198.19.1.0/24"
        raise ValidationError(f"bad CIDR {_show(value)}: {detail}") from None
    return str(net)


def check_segment(kind: str, segmentation_id: int) -> int:
    low, high = SEGMENT_RANGES[kind]
    if isinstance(segmentation_id, bool) or not isinstance(segmentation_id, int):
        raise ValidationError(f"segmentation_id {_show(segmentation_id)} is not an integer")
    if not low <= segmentation_id <= high:
        raise ValidationError(
            f"segmentation_id {segmentation_id} out of range {low}..{high} for {kind}"
        )
    return segmentation_id


def check_ip_in_cidr(ip: str, cidr: str, network_name: str) -> None:
    net = ipaddress.IPv4Network(cidr)
    addr = ipaddress.IPv4Address(ip)
    if addr not in net:
        raise ValidationError(f"IP {ip} is outside network {network_name!r} cidr {cidr}")
    if net.prefixlen <= 30 and addr in (net.network_address, net.broadcast_address):
        which = "network" if addr == net.network_address else "broadcast"
        raise ValidationError(f"IP {ip} is the {which} address of {cidr}")
