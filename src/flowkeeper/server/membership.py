"""Who uses and who is a member of a security group; pure.

A port with port security on USES each of its groups and is a MEMBER of each of them (for
rules whose remote_group_id names the group), with its fixed IPs and the IPs or networks
of its allowed address pairs, as Neutron has it. A port without port security is neither.
"""

from __future__ import annotations

from flowkeeper.model import GroupMember, Port


def member_groups(port: Port | None) -> tuple[str, ...]:
    """The groups the port uses and is a member of (none without port security)."""
    if port is None or not port.port_security_enabled:
        return ()
    return port.security_groups


def as_member(group_id: str, port: Port) -> GroupMember:
    return GroupMember(group_id, port.id, port.member_ips())
