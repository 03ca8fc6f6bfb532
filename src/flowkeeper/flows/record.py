"""Canonical OpenFlow flow records: parse ovs-ofctl text, compare, render back."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from flowkeeper.flows import actions as act
from flowkeeper.flows.fields import FIELD_ALIASES, PROTOCOL_SHORTHANDS, canonical_value

Match = tuple[tuple[str, str], ...]
FlowKey = tuple[str, int, int, Match]

DEFAULT_PRIORITY = 32768
# Fields that ovs-ofctl dump-flows prints but that are counters, not part of a flow.
_STAT_FIELDS = frozenset(
    {"duration", "n_packets", "n_bytes", "idle_age", "hard_age", "reset_counts", "importance"}
)
_HEADER_FIELDS = frozenset({"cookie", "table", "priority", "idle_timeout", "hard_timeout"})


class FlowSyntaxError(ValueError):
    """A flow text that cannot be parsed into a canonical record."""


@dataclass(frozen=True, slots=True)
class Flow:
    """One OpenFlow flow. Key: (bridge, table, priority, match). Value: (actions, cookie)."""

    bridge: str
    table: int
    priority: int
    match: Match
    actions: str
    cookie: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0

    @property
    def key(self) -> FlowKey:
        return (self.bridge, self.table, self.priority, self.match)

    def render(self) -> str:
        """The flow as an `ovs-ofctl add-flows` line (no bridge)."""
        head = f"cookie={self.cookie:#x},table={self.table},priority={self.priority}"
        if self.idle_timeout:
            head += f",idle_timeout={self.idle_timeout}"
        if self.hard_timeout:
            head += f",hard_timeout={self.hard_timeout}"
        match = render_match(self.match)
        return f"{head}{',' + match if match else ''},actions={self.actions}"

    def render_key(self) -> str:
        """The flow's identity as a strict-match spec, for delete_strict and modify_strict."""
        match = render_match(self.match)
        return f"table={self.table},priority={self.priority}{',' + match if match else ''}"


def render_match(match: Match) -> str:
    parts = []
    for field, value in match:
        parts.append(field if value == "" else f"{field}={_quote_name(field, value)}")
    return ",".join(parts)


def _quote_name(field: str, value: str) -> str:
    if field == "in_port" and not value.isdigit() and not value.isupper():
        return f'"{value}"'
    return value


def parse_flow(text: str, bridge: str) -> Flow:
    """Parse one flow as written for add-flows or as printed by dump-flows."""
    line = text.strip()
    if not line:
        raise FlowSyntaxError("empty flow")
    idx = line.find("actions=")
    if idx < 0:
        raise FlowSyntaxError(f"flow has no actions: {line!r}")
    head, actions_text = line[:idx], line[idx + len("actions=") :]
    fields: dict[str, str] = {}
    header: dict[str, str] = {}
    for token in _split_match(head):
        name, _, value = token.partition("=")
        name = name.strip()
        value = value.strip().strip('"')
        if name in _STAT_FIELDS:
            continue
        if name in _HEADER_FIELDS:
            header[name] = value
            continue
        if not _:
            if name in PROTOCOL_SHORTHANDS:
                for sub_name, sub_value in PROTOCOL_SHORTHANDS[name]:
                    _set_field(fields, sub_name, sub_value, line)
                continue
            raise FlowSyntaxError(f"unknown match keyword {name!r} in {line!r}")
        _set_field(fields, FIELD_ALIASES.get(name, name), value, line)
    try:
        table = int(header.get("table", "0"), 0)
        priority = int(header.get("priority", str(DEFAULT_PRIORITY)), 0)
        cookie = int(header.get("cookie", "0").split("/")[0], 0)
        idle = int(header.get("idle_timeout", "0"), 0)
        hard = int(header.get("hard_timeout", "0"), 0)
    except ValueError as exc:
        raise FlowSyntaxError(f"bad number in {line!r}: {exc}") from None
    if not 0 <= table <= 254 or not 0 <= priority <= 65535:
        raise FlowSyntaxError(f"table or priority out of range in {line!r}")
    try:
        actions = act.canonical_actions(actions_text.strip())
    except ValueError as exc:
        raise FlowSyntaxError(f"bad actions in {line!r}: {exc}") from None
    return Flow(
        bridge=bridge,
        table=table,
        priority=priority,
        match=tuple(sorted(fields.items())),
        actions=actions,
        cookie=cookie,
        idle_timeout=idle,
        hard_timeout=hard,
    )


def _set_field(fields: dict[str, str], name: str, value: str, line: str) -> None:
    try:
        canon = canonical_value(name, value)
    except (ValueError, ipaddress.AddressValueError) as exc:
        raise FlowSyntaxError(f"bad value for {name} in {line!r}: {exc}") from None
    old = fields.get(name)
    if old is not None and old != canon:
        raise FlowSyntaxError(f"conflicting values for {name} in {line!r}")
    fields[name] = canon


def _split_match(head: str) -> list[str]:
    """Split the part before actions= on commas and spaces, keeping quoted names whole."""
    tokens: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in head:
        if ch == '"':
            quoted = not quoted
            current.append(ch)
        elif ch in ", " and not quoted:
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        tokens.append("".join(current))
    return tokens


def parse_dump(text: str, bridge: str) -> list[Flow]:
    """Parse `ovs-ofctl dump-flows` output (reply header lines are skipped)."""
    flows = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("OFPST_FLOW", "NXST_FLOW", "OFPT_", "NXT_")):
            continue
        flows.append(parse_flow(line, bridge))
    return flows


def parse_rendered(line: str, bridge: str) -> Flow:
    """Fast inverse of Flow.render() for lines flowkeeper wrote itself (already canonical).

    Used on the restore path, where snapshot lines (checksummed, written by us) must become
    records again quickly; anything else goes through parse_flow.
    """
    head, sep, actions = line.partition(",actions=")
    parts = head.split(",")
    if not sep or len(parts) < 3 or not parts[0].startswith("cookie="):
        raise FlowSyntaxError(f"not a rendered flow line: {line!r}")
    cookie = int(parts[0][len("cookie=") :], 16)
    table = int(parts[1][len("table=") :])
    priority = int(parts[2][len("priority=") :])
    idle = hard = 0
    match: list[tuple[str, str]] = []
    for part in parts[3:]:
        name, _, value = part.partition("=")
        if name == "idle_timeout":
            idle = int(value)
        elif name == "hard_timeout":
            hard = int(value)
        else:
            match.append((name, value.strip('"')))
    return Flow(bridge, table, priority, tuple(match), actions, cookie, idle, hard)
