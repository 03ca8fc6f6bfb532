"""Which partition a flow belongs to: its bridge and network, or the bridge's shared part."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from flowkeeper.snapshot.content import FlowLines

SHARED = "shared"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_VLAN = re.compile(r"(?:^|,)dl_vlan=(\d+)(?:,|$)")
_TUN_ID = re.compile(r"(?:^|,)tun_id=(0x[0-9a-f]+)(?:,|$)")
_IN_PORT = re.compile(r'(?:^|,)in_port="?([^,"]+)"?(?:,|$)')


@dataclass(frozen=True)
class PartitionIndex:
    """How to tell a flow's network from its match: local VLAN, tunnel id or VIF name."""

    by_vlan: Mapping[int, str] = field(default_factory=dict)
    by_segment: Mapping[int, str] = field(default_factory=dict)
    by_device: Mapping[str, str] = field(default_factory=dict)

    def network_of(self, key: str) -> str | None:
        m = _VLAN.search(key)
        if m and int(m.group(1)) in self.by_vlan:
            return self.by_vlan[int(m.group(1))]
        m = _TUN_ID.search(key)
        if m and int(m.group(1), 16) in self.by_segment:
            return self.by_segment[int(m.group(1), 16)]
        m = _IN_PORT.search(key)
        if m and m.group(1) in self.by_device:
            return self.by_device[m.group(1)]
        return None


def partition_name(bridge: str, network: str | None) -> str:
    return f"{bridge}.{_SAFE.sub('_', network) if network else SHARED}"


def split(flows: FlowLines, index: PartitionIndex) -> dict[str, tuple[str, list[str]]]:
    """partition name -> (bridge, sorted flow lines)."""
    parts: dict[str, tuple[str, list[str]]] = {}
    for bridge, lines in flows.items():
        for key, line in lines.items():
            name = partition_name(bridge, index.network_of(key))
            parts.setdefault(name, (bridge, []))[1].append(line)
    for _bridge, part_lines in parts.values():
        part_lines.sort()
    return parts
