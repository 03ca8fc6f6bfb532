"""Local VLAN allocation: stable across restarts, lowest free id for a new network."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

MIN_VLAN, MAX_VLAN = 1, 4094


class VlansExhausted(RuntimeError):
    """More networks on one host than local VLAN ids."""


def allocate(current: Mapping[str, int], needed: Iterable[str]) -> dict[str, int]:
    """Keep every still-needed network's VLAN; give new ones the lowest free ids.

    Networks no longer needed lose their VLAN, which becomes free again.
    """
    wanted = sorted(set(needed))
    result = {net: vlan for net, vlan in current.items() if net in wanted}
    used = set(result.values())
    if len(used) != len(result):
        # Two networks claimed the same VLAN (a damaged record): keep the first by id.
        seen: dict[int, str] = {}
        for net in sorted(result):
            vlan = result[net]
            if vlan in seen:
                del result[net]
            else:
                seen[vlan] = net
        used = set(result.values())
    candidate = MIN_VLAN
    for net in wanted:
        if net in result:
            continue
        while candidate in used:
            candidate += 1
        if candidate > MAX_VLAN:
            raise VlansExhausted(f"no free local VLAN for network {net}")
        result[net] = candidate
        used.add(candidate)
    return result
