"""MAC-learned flows that a change makes stale, as non-strict delete specs.

Table 10 of br-tun learns a table-20 flow (cookie LEARNED_COOKIE, hard timeout) for every
source MAC that arrives over a tunnel. OVS owns those flows, so the agent's diff leaves
them alone; but when the control plane says a remote MAC is gone, or a network leaves the
host, the learned flows for it must go too. Otherwise a stale flow keeps sending frames to a
tunnel port that may be deleted, and whose OpenFlow port number may later be reused by a
tunnel to another host, or (after the local VLAN is reused) into another network's segment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flowkeeper.flows.record import Flow
from flowkeeper.naming import BR_TUN
from flowkeeper.pipeline.tables import FROM_TUNNEL, LEARNED_COOKIE, UCAST_TO_TUN

# The local VLAN a from-tunnel flow tags frames with, as built or as OVS prints it back.
_SETS_VLAN = re.compile(r"mod_vlan_vid:(\d+)|set_field:(0x[0-9a-fA-F]+|\d+)->vlan_vid")
_VID_MASK = 0x0FFF


def learned_spec(
    vlan: int | None = None, mac: str | None = None, out_port: int | None = None
) -> str:
    """A non-strict match selecting learned flows (by local VLAN, MAC and/or output port).

    Learned flows match `vlan_tci=<vid>/0x0fff` (the learn action copies only the VID bits).
    """
    parts = [f"cookie={LEARNED_COOKIE:#x}/-1", f"table={UCAST_TO_TUN}"]
    if vlan is not None:
        parts.append(f"vlan_tci={vlan:#06x}/{_VID_MASK:#06x}")
    if mac is not None:
        parts.append(f"dl_dst={mac}")
    if out_port is not None:
        parts.append(f"out_port={out_port}")
    return ",".join(parts)


def vlan_set_by(actions: str) -> int | None:
    """The VLAN ID an action list tags frames with, if any."""
    found = _SETS_VLAN.search(actions)
    if found is None:
        return None
    if found.group(1) is not None:
        return int(found.group(1)) & _VID_MASK
    return int(found.group(2), 0) & _VID_MASK


def stale_learned(deleted: Iterable[Flow]) -> list[str]:
    """Delete specs for the learned flows made stale by deleting these br-tun flows.

    - a remote MAC's unicast flow (table 20, dl_vlan + dl_dst) goes: its learned flow too;
    - a network's from-tunnel flow (table 3/4, tun_id -> VLAN) goes: the network has left
      this host, so every flow learned in its local VLAN goes.
    """
    specs: set[str] = set()
    from_tunnel = set(FROM_TUNNEL.values())
    for flow in deleted:
        if flow.bridge != BR_TUN:
            continue
        match = dict(flow.match)
        if flow.table == UCAST_TO_TUN and "dl_dst" in match and "dl_vlan" in match:
            specs.add(learned_spec(vlan=int(match["dl_vlan"], 0), mac=match["dl_dst"]))
        elif flow.table in from_tunnel and "tun_id" in match:
            vlan = vlan_set_by(flow.actions)
            if vlan is not None:
                specs.add(learned_spec(vlan=vlan))
    return sorted(specs)
