"""Names that flowkeeper gives to OVS objects (Neutron's conventions)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

BR_INT = "br-int"
BR_TUN = "br-tun"
BR_PHY = "br-phy"
PATCH_TUN = "patch-tun"  # on br-int, towards br-tun
SLOT_LINK = "fk-slot"  # on br-int of each of two switch slots, joining them (the lab's)
SLOT_LINK_OFPORT = 65000
PATCH_INT = "patch-int"  # on br-tun, towards br-int
# Twin switch slots: the veth between the two slots' br-ints (both ends have this name and
# this ofport). The lab adds it, never the agent; it carries local-VLAN-tagged frames.
SLOT_LINK = "fk-slot"
SLOT_LINK_OFPORT = 65000


@lru_cache(maxsize=65536)  # called per remote port on every rebuild: parse each IP once
def tunnel_port_name(kind: str, remote_ip: str) -> str:
    """'vxlan-c6120002' for a VXLAN tunnel to 198.18.0.2, as the Neutron agent names it."""
    packed = int(ipaddress.IPv4Address(remote_ip))
    return f"{kind}-{packed:08x}"
