"""What a snapshot holds, and how journal deltas and partitions encode it; pure."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flowkeeper.flows.ports import ports_named
from flowkeeper.flows.record import Flow

# Flows are kept as the exact text `ovs-ofctl add-flows` takes (canonical, ports by name),
# keyed by the flow's identity text: restore sends the bytes as they are.
FlowLines = dict[str, dict[str, str]]  # bridge -> {key text: flow line}


def flow_line(flow: Flow) -> tuple[str, str]:
    """(key text, full line) of a flow, both in canonical form."""
    return flow.render_key(), flow.render()


@dataclass
class SnapshotData:
    """The last installed flows plus the HostView inputs and the revision they reflect."""

    revision: int = 0
    generation: int = 0
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    ports: dict[str, dict[str, Any]] = field(default_factory=dict)
    vlans: dict[str, int] = field(default_factory=dict)
    tunnels: list[tuple[str, str]] = field(default_factory=list)
    flows: FlowLines = field(default_factory=dict)
    port_refs: dict[str, set[str]] = field(default_factory=dict)  # bridge -> ports named
    cluster_id: str = ""  # the server store the inputs came from ("" if not known)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # security groups by id
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # by member_key

    def flow_count(self) -> int:
        return sum(len(lines) for lines in self.flows.values())

    def meta(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "generation": self.generation,
            "networks": self.networks,
            "ports": self.ports,
            "vlans": self.vlans,
            "tunnels": [list(t) for t in self.tunnels],
            "cluster_id": self.cluster_id,
            "security_groups": self.groups,
            "members": self.members,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> SnapshotData:
        return cls(
            revision=int(meta["revision"]),
            generation=int(meta["generation"]),
            networks=dict(meta["networks"]),
            ports=dict(meta["ports"]),
            vlans={k: int(v) for k, v in meta["vlans"].items()},
            tunnels=[(str(k), str(ip)) for k, ip in meta["tunnels"]],
            cluster_id=str(meta.get("cluster_id", "")),
            # a snapshot written before security groups has neither
            groups=dict(meta.get("security_groups", {})),
            members=dict(meta.get("members", {})),
        )


def member_key(member: dict[str, Any]) -> str:
    """A group member's key in a snapshot: group id and port id ('/' is in no id)."""
    return f"{member['group_id']}/{member['port_id']}"


@dataclass
class JournalDelta:
    """One applied change: flows added/replaced and deleted, and the inputs that led there."""

    revision: int
    generation: int
    add: dict[str, list[str]] = field(default_factory=dict)  # bridge -> flow lines
    delete: dict[str, list[str]] = field(default_factory=dict)  # bridge -> key texts
    events: list[dict[str, Any]] = field(default_factory=list)  # watch events applied
    vlans: dict[str, int] | None = None
    tunnels: list[tuple[str, str]] | None = None

    def encode(self) -> bytes:
        body = {
            "revision": self.revision,
            "generation": self.generation,
            "add": self.add,
            "delete": self.delete,
            "events": self.events,
            "vlans": self.vlans,
            "tunnels": None if self.tunnels is None else [list(t) for t in self.tunnels],
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> JournalDelta:
        """The delta, checked so that apply_delta cannot fail on it (else ValueError,
        KeyError or TypeError)."""
        body = json.loads(payload)
        tunnels = body.get("tunnels")
        delta = cls(
            revision=int(body["revision"]),
            generation=int(body["generation"]),
            add={str(b): list(v) for b, v in body["add"].items()},
            delete={str(b): list(v) for b, v in body["delete"].items()},
            events=list(body["events"]),
            vlans=None if body.get("vlans") is None else dict(body["vlans"]),
            tunnels=None if tunnels is None else [(str(k), str(ip)) for k, ip in tunnels],
        )
        lines = [x for v in delta.add.values() for x in v]
        if not all(isinstance(x, str) and ",actions=" in x for x in lines):
            raise ValueError("a flow line without actions")
        if not all(isinstance(k, str) for v in delta.delete.values() for k in v):
            raise ValueError("a flow key that is not text")
        for event in delta.events:
            obj = event["object"]
            if event["kind"] not in EVENT_KINDS or not isinstance(obj, dict):
                raise ValueError(f"bad event {event!r:.80}")
            if event["kind"] == "member":
                if not isinstance(obj["group_id"], str) or not isinstance(obj["port_id"], str):
                    raise ValueError(f"bad event object {obj!r:.80}")
            elif not isinstance(obj["id"], str) or (
                event["kind"] == "port" and event["op"] != "delete" and "network_id" not in obj
            ):
                raise ValueError(f"bad event object {obj!r:.80}")
        if delta.vlans is not None:
            delta.vlans = {str(k): int(v) for k, v in delta.vlans.items()}
        return delta


def key_of_line(line: str) -> str:
    """The key text of a canonical flow line (cookie=..,KEY,actions=...)."""
    head = line[line.index(",") + 1 : line.index(",actions=")]
    if "timeout=" not in head:
        return head
    # Timeouts are part of the line but not of the key.
    return ",".join(
        p for p in head.split(",") if not p.startswith(("idle_timeout=", "hard_timeout="))
    )


def apply_delta(data: SnapshotData, delta: JournalDelta) -> None:
    """Replay one journal record onto snapshot data (idempotent)."""
    for bridge, keys in delta.delete.items():
        lines = data.flows.get(bridge, {})
        for key in keys:
            lines.pop(key, None)
    for bridge, added in delta.add.items():
        lines = data.flows.setdefault(bridge, {})
        for line in added:
            lines[key_of_line(line)] = line
        if bridge in data.port_refs:
            data.port_refs[bridge] |= ports_named("\n".join(added))
    for event in delta.events:
        apply_event(data, event)
    if delta.vlans is not None:
        data.vlans = dict(delta.vlans)
    if delta.tunnels is not None:
        data.tunnels = list(delta.tunnels)
    data.revision = max(data.revision, delta.revision)
    data.generation = delta.generation


EVENT_KINDS = ("network", "port", "security_group", "member")


def apply_event(data: SnapshotData, event: dict[str, Any]) -> None:
    kind, op, obj = event["kind"], event["op"], event["object"]
    if kind == "member":
        if op == "delete":
            data.members.pop(member_key(obj), None)
        else:
            data.members[member_key(obj)] = obj
        return
    tables = {"network": data.networks, "security_group": data.groups}
    table = tables.get(kind, data.ports)
    if op == "delete":
        table.pop(obj["id"], None)
        if kind == "network":
            data.ports = {k: p for k, p in data.ports.items() if p.get("network_id") != obj["id"]}
    else:
        table[obj["id"]] = obj
