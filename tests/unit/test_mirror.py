"""The agent's mirror of the control plane, and the HostView it assembles."""

from __future__ import annotations

from flowkeeper.agent.mirror import LocalVif, Mirror, assemble, bound_ports, vlan_records
from flowkeeper.model import Network, Port, PortStatus
from flowkeeper.pipeline.view import HostView

NET_A = Network("11111111-1111-1111-1111-111111111111", "a", "vxlan", 101)
NET_B = Network("22222222-2222-2222-2222-222222222222", "b", "gre", 202)


def port(pid: str, net: Network, host: str, tunnel_ip: str, status: PortStatus = "ACTIVE") -> Port:
    mac = f"fa:16:3e:00:00:{int(pid[-1]):02x}"
    return Port(pid, net.id, host, mac, (), status, tunnel_ip=tunnel_ip)


def mirror() -> Mirror:
    m = Mirror()
    m.load(
        7,
        [NET_A, NET_B],
        [
            port("p1", NET_A, "h1", "198.18.0.1"),
            port("p2", NET_B, "h2", "198.18.0.2"),
            port("p3", NET_A, "h2", "198.18.0.2", status="DOWN"),
        ],
    )
    return m


def view(vlans: dict[str, int]) -> tuple[Mirror, dict[str, str], HostView]:
    m = mirror()
    bound = bound_ports(m, "h1", [LocalVif("tap1", "p1"), LocalVif("tapX", "p2")])
    assert bound == {"p1": "tap1"}  # p2 is bound to another host
    v = assemble(
        m,
        host="h1",
        tunnel_ip="198.18.0.1",
        l2pop=True,
        arp_responder=True,
        cookie=1,
        bound=bound,
        vlans=vlans,
    )
    return m, bound, v


def test_every_network_with_a_local_vlan_is_in_the_view() -> None:
    """A network with a local VLAN but no bound VIF (before the first sync) gets its flows."""
    _m, _bound, v = view({NET_A.id: 1, NET_B.id: 2})
    assert [(n.id, n.vlan) for n in v.networks] == [(NET_A.id, 1), (NET_B.id, 2)]
    assert [p.id for p in v.local_ports] == ["p1"]
    assert [p.id for p in v.remote_ports] == ["p2"]  # p3 is DOWN


def test_a_network_without_a_vlan_is_left_out() -> None:
    m, bound, v = view({NET_A.id: 1, "33333333-3333-3333-3333-333333333333": 3})
    assert [n.id for n in v.networks] == [NET_A.id]
    assert not v.remote_ports
    assert [(dev, net.vlan) for dev, net in vlan_records(v, bound, m)] == [("tap1", 1)]
