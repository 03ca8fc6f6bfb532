"""Request types (bodies, path and query parameters): they validate and they are the schema."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from pydantic_core import PydanticCustomError

from flowkeeper import validation as v
from flowkeeper.model import DEFAULT_PROJECT, AddressPair, Host, Port
from flowkeeper.validation import ValidationError


class Strict(BaseModel):
    """A JSON object with exactly these fields, each of exactly its JSON type."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Loose(BaseModel):
    """Path or query parameters: strings on the wire, converted by the field types below."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _unique(values: list[str]) -> list[str]:
    seen: set[str] = set()
    for item in values:
        if item in seen:
            raise PydanticCustomError("unique", "duplicate item {item!r}", {"item": item})
        seen.add(item)
    return values


def _json_int(value: object) -> object:
    """JSON Schema's integer: 5.0 is one too (a JSON encoder may write an integer so)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**64:
        return int(value)
    return value


def _wire_int(value: object) -> object:
    """A query string's integer: ASCII digits only (no '²', no '+', no spaces)."""
    if isinstance(value, str):
        if not re.fullmatch(r"-?[0-9]{1,20}", value):
            raise PydanticCustomError("int_parsing", "must be a whole number")
        return int(value)
    return value


def _wire_number(value: object) -> object:
    """A query string's number, spelled as JSON spells one (no 'nan', 'inf', '1_0')."""
    if isinstance(value, str):
        if not re.fullmatch(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?", value):
            raise PydanticCustomError("float_parsing", "must be a number")
        return float(value)
    return value


Name = Annotated[str, Field(pattern=v.NAME_PATTERN)]
Id = Annotated[str, Field(pattern=v.ID_PATTERN)]
Mac = Annotated[str, Field(pattern=v.MAC_PATTERN, examples=["fa:16:3e:00:00:01"])]
IPv4 = Annotated[str, Field(pattern=v.IPV4_PATTERN, examples=["198.18.0.1"])]
Cidr = Annotated[str, Field(pattern=v.CIDR_PATTERN, examples=["198.19.1.0/24"])]
Text = Annotated[str, Field(pattern=v.TEXT_PATTERN)]
State = Annotated[str, Field(pattern=v.STATE_PATTERN, examples=["in-sync"])]
Revision = Annotated[int, Field(ge=0, le=v.MAX_REVISION), BeforeValidator(_json_int)]
PortStatusValue = Literal["DOWN", "ACTIVE"]
VxlanSegment = Annotated[
    int, Field(ge=1, le=v.SEGMENT_RANGES["vxlan"][1]), BeforeValidator(_json_int)
]
GreSegment = Annotated[int, Field(ge=1, le=v.SEGMENT_RANGES["gre"][1]), BeforeValidator(_json_int)]
QueryRevision = Annotated[int, Field(ge=0, le=v.MAX_REVISION), BeforeValidator(_wire_int)]
Seconds = Annotated[float, Field(ge=0, le=3600), BeforeValidator(_wire_number)]
FixedIps = Annotated[
    list[IPv4],
    AfterValidator(_unique),
    Field(max_length=64, json_schema_extra={"uniqueItems": True}),
]

GroupIds = Annotated[
    list[Id],
    AfterValidator(_unique),
    Field(max_length=64, json_schema_extra={"uniqueItems": True}),
]


class AddressPairIn(Strict):
    ip_address: IPv4 | Cidr = Field(description="an IPv4 address or a network")
    mac_address: Mac | None = Field(None, description="omitted or null: the port's own MAC")

    def to_pair(self) -> AddressPair:
        return AddressPair(self.ip_address, self.mac_address)


AddressPairs = Annotated[list[AddressPairIn], Field(max_length=32)]

TOKEN_PATH_PATTERN = "^(tk[0-9a-f]{12}|bootstrap)$"  # noqa: S105 - a pattern, not a secret
# Human words for the patterns, so a refusal says what would have been accepted.
PATTERN_HINTS = {
    v.NAME_PATTERN: "use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit",
    v.ID_PATTERN: "use 1-64 letters, digits, '_', '.', ':' or '-'",
    v.MAC_PATTERN: "expected a unicast, non-zero MAC like fa:16:3e:00:00:01",
    v.IPV4_PATTERN: "expected a unicast IPv4 address in 1.0.0.0-223.255.255.255",
    v.CIDR_PATTERN: "expected an IPv4 network without host bits, like 198.19.1.0/24",
    v.TEXT_PATTERN: f"at most {v.MAX_TEXT} characters, no control characters",
    v.STATE_PATTERN: "use 1-32 lowercase letters, digits or '-'",
    v.IP_PREFIX_PATTERN: "expected an IPv4 or IPv6 address or network, like 198.19.0.0/16",
    TOKEN_PATH_PATTERN: "expected a token id: tk and 12 hex digits",
}


# --- request bodies ------------------------------------------------------------------
class _NetworkCreate(Strict):
    name: Name
    cidr: Cidr | None = None
    id: Id | None = Field(None, description="a UUID is generated if omitted")
    project_id: Name = Field(DEFAULT_PROJECT, description="its ports' project by default")


class VxlanNetworkCreate(_NetworkCreate):
    type: Literal["vxlan"]
    segmentation_id: VxlanSegment | None = Field(None, description="lowest free if omitted")


class GreNetworkCreate(_NetworkCreate):
    type: Literal["gre"]
    segmentation_id: GreSegment | None = Field(None, description="lowest free if omitted")


NetworkCreate = Annotated[VxlanNetworkCreate | GreNetworkCreate, Field(discriminator="type")]


class PortCreate(Strict):
    network_id: Id
    host: Name
    mac: Mac
    fixed_ips: FixedIps = []
    name: Text = ""
    device_id: Text = ""
    id: Id | None = Field(None, description="a UUID is generated if omitted")
    status: PortStatusValue = "DOWN"
    project_id: Name | None = Field(None, description="omitted: the network's project")
    security_groups: GroupIds | None = Field(
        None,
        description="omitted: the project's default group (made if it has none); "
        "[]: no group, all the port's traffic is dropped",
    )
    port_security_enabled: bool = Field(
        True, description="false: no filtering and no anti-spoofing (no groups, no pairs)"
    )
    allowed_address_pairs: AddressPairs = Field(
        [], description="more (IP or network, MAC) the port may send from"
    )

    def to_port(self, new_id: str, project_id: str, default_groups: tuple[str, ...]) -> Port:
        """`project_id`: the network's, unless the request names one; `default_groups`:
        the groups of a port whose request names none."""
        if self.security_groups is not None:
            groups = tuple(self.security_groups)
        else:
            groups = default_groups if self.port_security_enabled else ()
        return Port(
            id=self.id or new_id,
            network_id=self.network_id,
            host=self.host,
            mac=self.mac,
            fixed_ips=tuple(self.fixed_ips),
            status=self.status,
            name=self.name,
            device_id=self.device_id,
            project_id=self.project_id or project_id or DEFAULT_PROJECT,
            security_groups=groups,
            port_security_enabled=self.port_security_enabled,
            allowed_address_pairs=tuple(p.to_pair() for p in self.allowed_address_pairs),
        )


class PortStatusUpdate(Strict):
    status: PortStatusValue
    host: Name | None = Field(None, description="the reporting host: 409 if not bound there")


class PortBinding(Strict):
    host: Name


class HostPut(Strict):
    tunnel_ip: IPv4
    l2pop: bool = True
    virtual: bool = False
    state: State = "unknown"
    revision: Revision = 0

    def to_host(self, name: str, now: float) -> Host:
        return Host(name, self.tunnel_ip, self.l2pop, self.virtual, self.state, self.revision, now)


# --- path and query parameters ------------------------------------------------------
class NoParams(Loose):
    pass


class NetworkPath(Loose):
    id: Id


class PortPath(Loose):
    id: Id


class HostPath(Loose):
    name: Name


class PortsQuery(Loose):
    network_id: Id | None = Field(None, description="only the ports of this network")
    host: Name | None = Field(None, description="only the ports bound to this host")


class WatchQuery(Loose):
    from_: QueryRevision = Field(
        alias="from",
        examples=[0],
        description="send every message after this revision (a view's revision)",
    )
    timeout: Seconds | None = Field(
        None,
        description="end the stream (after a last heartbeat) this many seconds after the "
        "catch-up; 0 ends it right after the catch-up. Without it the stream is endless.",
    )


# --- parsing and one-line errors ------------------------------------------------------
def parse_json(raw: bytes) -> Any:
    """A request body that must be JSON (its shape is checked by the body's type)."""
    if not raw.strip():
        raise ValidationError("empty request body: expected a JSON object")
    try:
        data = json.loads(raw)
        json.dumps(data, ensure_ascii=False).encode()  # no lone surrogates ("\\ud800")
    except UnicodeEncodeError:
        raise ValidationError("request body has a string that is not valid Unicode") from None
    except UnicodeDecodeError:
        raise ValidationError("request body is not UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"bad JSON in request body: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ValidationError("bad JSON in request body: nested too deeply") from None
    return data


def query_dict(query: Mapping[str, str], items: list[tuple[str, str]]) -> dict[str, str]:
    """The query string as a dict; a parameter given twice is refused."""
    out: dict[str, str] = {}
    for key, value in items:
        if key in out:
            raise ValidationError(f"query parameter {key!r} given more than once")
        out[key] = value
    return out
