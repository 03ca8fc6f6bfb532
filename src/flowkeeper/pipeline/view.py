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
class LocalPort:
    """A VIF on this host's br-int, bound to a control-plane port."""

    id: str
    network_id: str
    device: str  # the OVS port name, e.g. tapXXXXXXXXXXX (never an ofport number)
    mac: str
    ips: tuple[str, ...] = ()


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
