"""Neutron's OVS agent table numbers and flowkeeper's cookie layout."""

from __future__ import annotations

# br-int
INT_DISPATCH = 0
INT_SWITCH = 60  # forwarding; with the firewall on, dispatch (Neutron's TRANSIENT_TABLE)

# br-int, the openvswitch firewall (neutron-lib's ovs_constants)
FW_DISPATCH = 60
BASE_EGRESS = 71
RULES_EGRESS = 72
ACCEPT_OR_INGRESS = 73
BASE_INGRESS = 81
RULES_INGRESS = 82
ACCEPTED_EGRESS = 91
ACCEPTED_INGRESS = 92
DROPPED = 93
ACCEPTED_EGRESS_SWITCH = 94  # Neutron's NORMAL table; here the explicit MAC switching
FIREWALL_TABLES = (
    BASE_EGRESS,
    RULES_EGRESS,
    ACCEPT_OR_INGRESS,
    BASE_INGRESS,
    RULES_INGRESS,
    ACCEPTED_EGRESS,
    ACCEPTED_INGRESS,
    DROPPED,
    ACCEPTED_EGRESS_SWITCH,
)

# br-tun (the numbers of Neutron's ovs agent, see PRODUCT.md)
TUN_DISPATCH = 0
FROM_INT = 2
FROM_GRE = 3
FROM_VXLAN = 4
LEARN = 10
UCAST_TO_TUN = 20
ARP_RESPONDER = 21
FLOOD_TO_TUN = 22

FROM_TUNNEL = {"gre": FROM_GRE, "vxlan": FROM_VXLAN}

# Cookies: 0xF10C in the top 16 bits marks flowkeeper's flows; the low 32 bits carry the
# agent's generation (persisted in OVSDB). MAC-learned flows carry LEARNED_COOKIE and are
# owned by OVS (hard timeout), so the agent's diff leaves them alone.
COOKIE_TAG = 0xF10C << 48
LEARNED_COOKIE = COOKIE_TAG | (1 << 47)
LEARN_HARD_TIMEOUT = 300


def cookie_for(generation: int) -> int:
    if not 0 <= generation < 1 << 32:
        raise ValueError(f"generation {generation} out of range")
    return COOKIE_TAG | generation
