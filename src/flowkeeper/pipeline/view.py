"""HostView: everything the pipeline needs to know about one host, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class NetworkView:
    """A network present on this host, with the local VLAN the agent gave it."""

    id: str
    type: str  # "vxlan" or "gre"
    segmentation_id: int
    vlan: int


@dataclass(frozen=True, order=True)
class RuleView:
    """One security group rule, as the firewall pipeline sees it."""

    direction: str  # "ingress" | "egress"
    ethertype: str  # "IPv4" | "IPv6"
    protocol: str = ""  # "" any | "tcp" | "udp" | "icmp" | "icmpv6"
    port_min: int | None = None  # tcp/udp port range; icmp type
    port_max: int | None = None  # tcp/udp; icmp code
    remote_ip_prefix: str = ""  # "" any
    remote_group: str = ""  # "" none


@dataclass(frozen=True, order=True)
class GroupView:
    """A security group used by a port of this host, with its rules (sorted)."""

    id: str
    rules: tuple[RuleView, ...] = ()


@dataclass(frozen=True, order=True)
class LocalPort:
    """A VIF on this host's br-int, bound to a control-plane port."""

    id: str
    network_id: str
    device: str  # the OVS port name, e.g. tapXXXXXXXXXXX (never an ofport number)
    mac: str
    ips: tuple[str, ...] = ()
    port_security: bool = False
    security_groups: tuple[str, ...] = ()  # sorted group ids
    allowed_pairs: tuple[tuple[str, str], ...] = ()  # (mac, ip or CIDR), sorted


@dataclass(frozen=True, order=True)
class RemotePort:
    """An active port on another host, reached through a tunnel (an FDB entry)."""

    id: str
    network_id: str
    mac: str
    tunnel_ip: str
    ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostView:
    """The pipeline's whole input. Equal views give equal FlowSets."""

    tunnel_ip: str
    l2pop: bool = True
    arp_responder: bool = True
    cookie: int = 0
    networks: tuple[NetworkView, ...] = ()
    local_ports: tuple[LocalPort, ...] = ()
    remote_ports: tuple[RemotePort, ...] = field(default=())
    firewall: bool = False  # the agent's --firewall: openvswitch (True) | noop
    groups: tuple[GroupView, ...] = ()  # used groups, sorted by id
    members: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (group id, sorted IPs/CIDRs)
    # Twin switch slots: br-int has the slot link (naming.SLOT_LINK) to the other slot's
    # br-int; frames to local ports and floods from local ports are copied onto it.
    slot_link: bool = False

    def network(self, network_id: str) -> NetworkView | None:
        for net in self.networks:
            if net.id == network_id:
                return net
        return None


def tunnel_peers(view: HostView) -> set[tuple[str, str]]:
    """(tunnel type, remote IP) of every tunnel this host needs."""
    kinds = {n.id: n.type for n in view.networks}
    return {
        (kinds[p.network_id], p.tunnel_ip)
        for p in view.remote_ports
        if p.network_id in kinds and p.tunnel_ip != view.tunnel_ip
    }
