"""Security groups, their rules, allowed address pairs and group members; pure, validated.

Rules follow Neutron's: direction, ethertype, protocol (any, tcp, udp, icmp, icmpv6), a
port range (tcp/udp) or an ICMP type and code, and at most one remote (an IP prefix or a
group). Values are normalised as Neutron normalises them, so two rules that mean the same
traffic compare equal by `key()`: the full port range 1-65535 is "any port", a prefix of
length 0 is "any address", "icmp" with IPv6 is "icmpv6", host bits are cleared.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from flowkeeper import validation as v
from flowkeeper.validation import ValidationError

__all__ = [
    "DIRECTIONS",
    "ETHERTYPES",
    "PROTOCOLS",
    "AddressPair",
    "Direction",
    "Ethertype",
    "GroupMember",
    "Protocol",
    "SecurityGroup",
    "SecurityGroupRule",
    "default_group_rules",
]

Direction = Literal["ingress", "egress"]
Ethertype = Literal["IPv4", "IPv6"]
Protocol = Literal["tcp", "udp", "icmp", "icmpv6"]
DIRECTIONS: tuple[Direction, ...] = ("ingress", "egress")
ETHERTYPES: tuple[Ethertype, ...] = ("IPv4", "IPv6")
PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp", "icmp", "icmpv6")
DEFAULT_GROUP = "default"
MAX_RULES = 1000  # per group: a bound on one stored object's size
MAX_PAIRS = 32  # allowed address pairs per port (Neutron's default max_allowed_address_pair is 10)


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def check_direction(value: object) -> Direction:
    if value not in DIRECTIONS:
        raise ValidationError(f"bad direction {value!r}: use ingress or egress")
    return value


def check_ethertype(value: object) -> Ethertype:
    if value not in ETHERTYPES:
        raise ValidationError(f"bad ethertype {value!r}: use IPv4 or IPv6")
    return value


def check_protocol(value: object, ethertype: Ethertype) -> Protocol | None:
    """None (any protocol), tcp, udp, icmp or icmpv6; "any" is None, icmp with IPv6 is icmpv6."""
    if value is None or value == "any":
        return None
    if value not in PROTOCOLS:
        raise ValidationError(f"bad protocol {value!r}: use tcp, udp, icmp, icmpv6 or any")
    if ethertype == "IPv6" and value == "icmp":
        return "icmpv6"
    if ethertype == "IPv4" and value == "icmpv6":
        raise ValidationError("protocol icmpv6 needs ethertype IPv6")
    return value


def _check_port_value(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be an integer or null, got {type(value).__name__}")
    return value


def check_port_range(
    protocol: Protocol | None, low: int | None, high: int | None
) -> tuple[int | None, int | None]:
    """Neutron's checks: tcp/udp take both ends (1-65535, min <= max; the full range is no
    range); icmp takes a type (port_range_min) and a code (port_range_max) 0-255, a code
    only with a type; any other protocol takes none."""
    low = _check_port_value(low, "port_range_min")
    high = _check_port_value(high, "port_range_max")
    if low is None and high is None:
        return None, None
    if protocol is None:
        raise ValidationError("a port range or ICMP type needs a protocol (tcp, udp or icmp)")
    if protocol in ("tcp", "udp"):
        if low is None or high is None:
            raise ValidationError(f"a {protocol} port range needs both port_range_min and max")
        if not (1 <= low <= 65535 and 1 <= high <= 65535):
            raise ValidationError(f"bad {protocol} port range {low}-{high}: ports are 1-65535")
        if low > high:
            raise ValidationError(
                f"bad {protocol} port range {low}-{high}: port_range_min > port_range_max"
            )
        if (low, high) == (1, 65535):
            return None, None
        return low, high
    for value, field in ((low, "type"), (high, "code")):
        if value is not None and not 0 <= value <= 255:
            raise ValidationError(f"bad ICMP {field} {value}: must be 0-255")
    if low is None:
        raise ValidationError(f"an ICMP code ({high}) needs an ICMP type (port_range_min)")
    return low, high


@dataclass(frozen=True, slots=True)
class SecurityGroupRule:
    """One rule: traffic it allows, seen from the port (ingress: to it, egress: from it)."""

    id: str
    direction: Direction
    ethertype: Ethertype = "IPv4"
    protocol: Protocol | None = None
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None

    def __post_init__(self) -> None:
        v.check_id(self.id, "rule")
        check_direction(self.direction)
        check_ethertype(self.ethertype)
        protocol = check_protocol(self.protocol, self.ethertype)
        _set(self, "protocol", protocol)
        low, high = check_port_range(protocol, self.port_range_min, self.port_range_max)
        _set(self, "port_range_min", low)
        _set(self, "port_range_max", high)
        if self.remote_ip_prefix is not None and self.remote_group_id is not None:
            raise ValidationError("a rule takes remote_ip_prefix or remote_group_id, not both")
        if self.remote_ip_prefix is not None:
            prefix, version = v.check_ip_prefix(self.remote_ip_prefix)
            if f"IPv{version}" != self.ethertype:
                raise ValidationError(
                    f"remote_ip_prefix {prefix} is IPv{version} but the rule's ethertype "
                    f"is {self.ethertype}"
                )
            _set(self, "remote_ip_prefix", None if prefix.endswith("/0") else prefix)
        if self.remote_group_id is not None:
            v.check_id(self.remote_group_id, "remote group")

    def key(self) -> tuple[object, ...]:
        """Everything but the id: two rules of a group with one key are duplicates."""
        return (
            self.direction,
            self.ethertype,
            self.protocol or "",
            -1 if self.port_range_min is None else self.port_range_min,
            -1 if self.port_range_max is None else self.port_range_max,
            self.remote_ip_prefix or "",
            self.remote_group_id or "",
        )

    def describe(self) -> str:
        """A short human form, for messages: 'ingress IPv4 tcp 22-22 from 198.19.0.0/16'."""
        parts: list[str] = [self.direction, self.ethertype, self.protocol or "any"]
        if self.port_range_min is not None:
            sep = "/" if self.protocol in ("icmp", "icmpv6") else "-"
            high = "" if self.port_range_max is None else f"{sep}{self.port_range_max}"
            parts.append(f"{self.port_range_min}{high}")
        remote = self.remote_ip_prefix or (
            f"group {self.remote_group_id}" if self.remote_group_id else None
        )
        if remote:
            parts.append(("from " if self.direction == "ingress" else "to ") + remote)
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "direction": self.direction,
            "ethertype": self.ethertype,
            "protocol": self.protocol,
            "port_range_min": self.port_range_min,
            "port_range_max": self.port_range_max,
            "remote_ip_prefix": self.remote_ip_prefix,
            "remote_group_id": self.remote_group_id,
        }

    @classmethod
    def from_dict(cls, data: object) -> SecurityGroupRule:
        d = v.check_object(data, "security group rule")
        optional = [
            "ethertype",
            "protocol",
            "port_range_min",
            "port_range_max",
            "remote_ip_prefix",
            "remote_group_id",
        ]
        v.check_fields(d, ["id", "direction"], optional, "security group rule")
        ethertype = check_ethertype(v.get_str(d, "ethertype", "IPv4"))
        return cls(
            id=v.get_str(d, "id"),
            direction=check_direction(v.get_str(d, "direction")),
            ethertype=ethertype,
            protocol=check_protocol(v.get_opt_str(d, "protocol"), ethertype),
            port_range_min=v.get_opt_int(d, "port_range_min"),
            port_range_max=v.get_opt_int(d, "port_range_max"),
            remote_ip_prefix=v.get_opt_str(d, "remote_ip_prefix"),
            remote_group_id=v.get_opt_str(d, "remote_group_id"),
        )


@dataclass(frozen=True, slots=True)
class SecurityGroup:
    """A named set of rules in a project; the rules live inside it (one stored object, one
    event per change), sorted by id, no two with one key."""

    id: str
    name: str
    project_id: str = "default"
    description: str = ""
    rules: tuple[SecurityGroupRule, ...] = ()
    revision: int = 0

    def __post_init__(self) -> None:
        v.check_id(self.id, "security group")
        v.check_name(self.name, "security group")
        v.check_name(self.project_id, "project")
        v.check_text(self.description, "description")
        if not isinstance(self.rules, tuple | list) or not all(
            isinstance(r, SecurityGroupRule) for r in self.rules
        ):
            raise ValidationError("security group rules must be a list of rules")
        if len(self.rules) > MAX_RULES:
            raise ValidationError(f"too many rules ({len(self.rules)}): at most {MAX_RULES}")
        rules = tuple(sorted(self.rules, key=lambda r: r.id))
        seen_ids: set[str] = set()
        seen_keys: dict[tuple[object, ...], str] = {}
        for rule in rules:
            if rule.id in seen_ids:
                raise ValidationError(f"duplicate rule id {rule.id!r} in group {self.name!r}")
            seen_ids.add(rule.id)
            other = seen_keys.setdefault(rule.key(), rule.id)
            if other != rule.id:
                raise ValidationError(
                    f"rules {other!r} and {rule.id!r} of group {self.name!r} are the same rule"
                )
        _set(self, "rules", rules)
        v.check_revision(self.revision)

    def same_rule(self, rule: SecurityGroupRule) -> SecurityGroupRule | None:
        """The group's rule with `rule`'s key (a duplicate of it), if any."""
        key = rule.key()
        return next((r for r in self.rules if r.key() == key), None)

    def rule(self, rule_id: str) -> SecurityGroupRule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def remote_groups(self) -> frozenset[str]:
        """The groups its rules name as remote_group_id."""
        return frozenset(r.remote_group_id for r in self.rules if r.remote_group_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "project_id": self.project_id,
            "description": self.description,
            "rules": [r.to_dict() for r in self.rules],
            "revision": self.revision,
        }

    @classmethod
    def from_dict(cls, data: object) -> SecurityGroup:
        d = v.check_object(data, "security group")
        optional = ["project_id", "description", "rules", "revision"]
        v.check_fields(d, ["id", "name"], optional, "security group")
        rules = d.get("rules", [])
        if not isinstance(rules, list):
            raise ValidationError("security group rules must be a list")
        return cls(
            id=v.get_str(d, "id"),
            name=v.get_str(d, "name"),
            project_id=v.get_str(d, "project_id", "default"),
            description=v.get_str(d, "description", ""),
            rules=tuple(SecurityGroupRule.from_dict(r) for r in rules),
            revision=v.get_int(d, "revision", 0),
        )


def default_group_rules(group_id: str, rule_ids: Iterable[str]) -> tuple[SecurityGroupRule, ...]:
    """Neutron's default group: egress anything (IPv4, IPv6); ingress from members of the
    group itself (IPv4, IPv6). `rule_ids`: four fresh ids."""
    ids = list(rule_ids)
    if len(ids) != 4:
        raise ValueError("the default group has four rules: give four ids")
    return (
        SecurityGroupRule(ids[0], "egress", "IPv4"),
        SecurityGroupRule(ids[1], "egress", "IPv6"),
        SecurityGroupRule(ids[2], "ingress", "IPv4", remote_group_id=group_id),
        SecurityGroupRule(ids[3], "ingress", "IPv6", remote_group_id=group_id),
    )


@dataclass(frozen=True, slots=True, order=True)
class AddressPair:
    """An extra (IP or IPv4 network, MAC) a port may send from (Neutron's allowed address
    pair). `mac_address` None means the port's own MAC: a Port fills it in."""

    ip_address: str
    mac_address: str | None = None

    def __post_init__(self) -> None:
        _set(self, "ip_address", v.check_ip_or_cidr(self.ip_address, "allowed address pair IP"))
        if self.mac_address is not None:
            _set(self, "mac_address", v.check_mac(self.mac_address))

    def to_dict(self) -> dict[str, Any]:
        return {"ip_address": self.ip_address, "mac_address": self.mac_address}

    @classmethod
    def from_dict(cls, data: object) -> AddressPair:
        d = v.check_object(data, "allowed address pair")
        v.check_fields(d, ["ip_address"], ["mac_address"], "allowed address pair")
        return cls(v.get_str(d, "ip_address"), v.get_opt_str(d, "mac_address"))


def check_address_pairs(pairs: object, port_mac: str) -> tuple[AddressPair, ...]:
    """A port's pairs with their MACs filled in, sorted, each once."""
    if not isinstance(pairs, tuple | list) or not all(isinstance(p, AddressPair) for p in pairs):
        raise ValidationError("allowed_address_pairs must be a list of address pairs")
    if len(pairs) > MAX_PAIRS:
        raise ValidationError(f"too many allowed address pairs ({len(pairs)}): at most {MAX_PAIRS}")
    return tuple(sorted({AddressPair(p.ip_address, p.mac_address or port_mac) for p in pairs}))


def check_group_ids(groups: object) -> tuple[str, ...]:
    """A port's security groups: ids, sorted, each once."""
    if not isinstance(groups, tuple | list) or not all(isinstance(g, str) for g in groups):
        raise ValidationError("security_groups must be a list of group ids")
    return tuple(sorted({v.check_id(g, "security group") for g in groups}))


@dataclass(frozen=True, slots=True)
class GroupMember:
    """A port as a member of a group (for rules with that remote_group_id): its IPs are the
    port's fixed IPs and its allowed address pairs' IPs or networks, sorted."""

    group_id: str
    port_id: str
    ips: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        v.check_id(self.group_id, "security group")
        v.check_id(self.port_id, "port")
        if not isinstance(self.ips, tuple | list):
            raise ValidationError("member ips must be a list of IPv4 addresses or networks")
        _set(self, "ips", tuple(sorted({v.check_ip_or_cidr(ip) for ip in self.ips})))

    @property
    def id(self) -> str:
        """Its key in a watch stream or a log: group and port."""
        return f"{self.group_id}/{self.port_id}"

    def to_dict(self) -> dict[str, Any]:
        return {"group_id": self.group_id, "port_id": self.port_id, "ips": list(self.ips)}

    @classmethod
    def from_dict(cls, data: object) -> GroupMember:
        d = v.check_object(data, "group member")
        v.check_fields(d, ["group_id", "port_id"], ["ips"], "group member")
        return cls(v.get_str(d, "group_id"), v.get_str(d, "port_id"), v.get_str_list(d, "ips"))
