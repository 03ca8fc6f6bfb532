"""Field checks shared by the domain model and request parsing; pure, one-line errors."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from flowkeeper.errors import UsageError


class ValidationError(UsageError):
    """Bad data for a domain object or a request; the message says what and why in one line."""


class StateConflict(ValidationError):
    """Well-formed data that does not fit what is stored (an IP outside its network's CIDR)."""

    status = 409  # the API answers Conflict: the request is valid, the stored state refuses it


SEGMENT_RANGES = {"vxlan": (1, 16_777_215), "gre": (1, 4_294_967_295)}
MAX_TEXT = 255
MAX_REVISION = 2**63 - 1  # SQLite's INTEGER

# Every pattern below is stated once, used here and in the API's JSON Schema: a string
# the document allows is a string the server accepts. No look-arounds (JSON Schema
# patterns are ECMA-262, pydantic's are Rust's regex): exclusions are spelled out.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_HEX = "[0-9a-fA-F]"
_NONZERO_BYTE = f"([1-9a-fA-F]{_HEX}|0[1-9a-fA-F])"


def _alt(items: Iterable[str]) -> str:
    return "(" + "|".join(items) + ")"


def _mac_pattern() -> str:
    """Six hex octets, unicast (low bit of the first octet clear), not all zeros."""
    rest = f"(:{_HEX}{{2}})"
    first_nonzero = f"([1-9a-fA-F][02468aceACE]|0[2468aceACE]){rest}{{5}}"
    # 00 first: the first non-zero octet is octet i (2..6), any octets after it.
    zero_first = [
        "00" + "(:00)" * (i - 2) + f":{_NONZERO_BYTE}" + (f"{rest}{{{6 - i}}}" if i < 6 else "")
        for i in range(2, 7)
    ]
    return "^" + _alt([first_nonzero, *zero_first]) + "$"


def _network_octets(prefix: int) -> str:
    """The dotted address of a /prefix network with no host bits set."""
    full, bits = divmod(prefix, 8)
    octets = [_OCTET] * full
    if full < 4:
        step = 1 << (8 - bits)
        octets.append("0" if bits == 0 else _alt(str(n) for n in range(0, 256, step)))
        octets += ["0"] * (3 - full)
    return r"\.".join(octets)


NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
STATE_PATTERN = "^[a-z][a-z0-9-]{0,31}$"
TEXT_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f]{0," + str(MAX_TEXT) + "}$"  # no control characters
MAC_PATTERN = _mac_pattern()
# A unicast host address: 1.0.0.0 to 223.255.255.255 (no 0/8, multicast, class E).
IPV4_PATTERN = r"^(22[0-3]|2[01][0-9]|1[0-9]{2}|[1-9][0-9]?)(\." + _OCTET + "){3}$"
CIDR_PATTERN = "^" + _alt(f"{_network_octets(p)}/{p}" for p in range(33)) + "$"
# A rule's remote_ip_prefix: an IPv4 or IPv6 address, optionally with a prefix length;
# host bits are allowed (cleared on the way in, as Neutron does).
_H4 = "[0-9a-fA-F]{1,4}"
_IPV6 = _alt(
    [
        f"({_H4}:){{7}}{_H4}",
        f"({_H4}:){{1,7}}:",
        *(f"({_H4}:){{1,{7 - n}}}(:{_H4}){{1,{n}}}" for n in range(1, 7)),
        f":((:{_H4}){{1,7}}|:)",
    ]
)
_PREFIX4 = r"\.".join([_OCTET] * 4) + "(/(3[0-2]|[12]?[0-9]))?"
_PREFIX6 = _IPV6 + "(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?"
IP_PREFIX_PATTERN = "^" + _alt([_PREFIX4, _PREFIX6]) + "$"

NAME_RE = re.compile(NAME_PATTERN)
ID_RE = re.compile(ID_PATTERN)
STATE_RE = re.compile(STATE_PATTERN)
TEXT_RE = re.compile(TEXT_PATTERN)
MAC_RE = re.compile(MAC_PATTERN)
IPV4_RE = re.compile(IPV4_PATTERN)
CIDR_RE = re.compile(CIDR_PATTERN)
IP_PREFIX_RE = re.compile(IP_PREFIX_PATTERN)


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
    if not isinstance(value, str) or not TEXT_RE.fullmatch(value):
        raise ValidationError(
            f"bad {what} {_show(value)}: at most {MAX_TEXT} characters, no control characters"
        )
    return value


def check_state(value: str) -> str:
    if not isinstance(value, str) or not STATE_RE.fullmatch(value):
        raise ValidationError(
            f"bad host state {_show(value)}: use 1-32 lowercase letters, digits or '-'"
        )
    return value


def check_revision(value: int, what: str = "revision") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REVISION:
        raise ValidationError(f"bad {what} {_show(value)}: must be a whole number >= 0")
    return value


def check_mac(value: str) -> str:
    """A unicast MAC address, returned in lowercase."""
    mac = value.lower() if isinstance(value, str) else ""
    if not MAC_RE.fullmatch(mac):
        if re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac):
            why = "all zeros" if mac == "00:00:00:00:00:00" else "multicast; a port needs unicast"
            raise ValidationError(f"bad MAC address {_show(value)}: {why}")
        raise ValidationError(
            f"bad MAC address {_show(value)}: expected six hex octets like fa:16:3e:00:00:01"
        )
    return mac


def check_ipv4(value: str, what: str = "IP address") -> str:
    """A unicast IPv4 host address (1.0.0.0-223.255.255.255) in canonical dotted form."""
    if isinstance(value, str) and IPV4_RE.fullmatch(value):
        return value
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValidationError(f"bad {what} {_show(value)}: not an IPv4 address") from None
    raise ValidationError(f"bad {what} {_show(value)}: not a unicast address in 1.0.0.0-223.x")


def check_cidr(value: str) -> str:
    """An IPv4 network like 198.19.1.0/24 (no host bits), in canonical form."""
    if isinstance(value, str) and CIDR_RE.fullmatch(value):
        return value
    if not isinstance(value, str) or "/" not in value:
        raise ValidationError(f"bad CIDR {_show(value)}: expected e.g. 198.19.1.0/24")
    try:
        ipaddress.IPv4Network(value, strict=True)
        detail = "expected e.g. 198.19.1.0/24"
    except ValueError as exc:
        detail = "host bits set" if "host bits" in str(exc) else "expected e.g. 198.19.1.0/24"
    raise ValidationError(f"bad CIDR {_show(value)}: {detail}")


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
        raise StateConflict(f"IP {ip} is outside network {network_name!r} cidr {cidr}")
    if net.prefixlen <= 30 and addr in (net.network_address, net.broadcast_address):
        which = "network" if addr == net.network_address else "broadcast"
        raise StateConflict(f"IP {ip} is the {which} address of {cidr}")


def check_ip_prefix(value: str, what: str = "remote_ip_prefix") -> tuple[str, int]:
    """An IPv4 or IPv6 address or network, normalised as Neutron does: an address becomes
    a /32 (/128), host bits are cleared. Returns (canonical CIDR, IP version)."""
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise ValidationError(f"bad {what} {_show(value)}: expected e.g. 198.19.1.0/24")
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValidationError(
            f"bad {what} {_show(value)}: not an IP network like 198.19.1.0/24 or 2001:db8::/32"
        ) from None
    return str(net), net.version


def check_ip_or_cidr(value: str, what: str = "IP address") -> str:
    """A unicast IPv4 address, or an IPv4 network without host bits (allowed address
    pairs, group members)."""
    if isinstance(value, str) and "/" in value:
        return check_cidr(value)
    return check_ipv4(value, what)
