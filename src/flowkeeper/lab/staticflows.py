"""Fixed VXLAN overlay flows for a lab without agents: a test harness, not the pipeline."""

from __future__ import annotations

from collections.abc import Sequence

from flowkeeper.flows.record import Flow, parse_flow
from flowkeeper.lab.state import HostState, VmState
from flowkeeper.naming import BR_INT, BR_TUN, PATCH_INT, PATCH_TUN, tunnel_port_name

VNI_BASE = 1000


def static_flows(host: HostState, hosts: Sequence[HostState], vms: Sequence[VmState]) -> list[Flow]:
    """Flows for `host`: local VLAN n for network n, VNI 1000+n, full-mesh VXLAN."""
    ip_of = {h.name: h.tunnel_ip for h in hosts}
    local = [v for v in vms if v.host == host.name]
    networks = sorted({v.network for v in local})
    lines: list[tuple[str, str]] = [
        (BR_INT, "table=0,priority=0,actions=drop"),
        (BR_INT, f"table=0,priority=10,in_port={PATCH_TUN},actions=resubmit(,60)"),
        (BR_TUN, "table=0,priority=0,actions=drop"),
        (BR_TUN, f"table=0,priority=1,in_port={PATCH_INT},actions=resubmit(,20)"),
    ]
    peers = sorted({v.host for v in vms if v.host != host.name and v.network in networks})
    for peer in peers:
        port = tunnel_port_name("vxlan", ip_of[peer])
        lines.append((BR_TUN, f"table=0,priority=1,in_port={port},actions=resubmit(,4)"))
    for vm in local:
        lines.append(
            (
                BR_INT,
                f"table=0,priority=10,in_port={vm.tap},"
                f"actions=mod_vlan_vid:{vm.network},resubmit(,60)",
            )
        )
        lines.append(
            (
                BR_INT,
                f"table=60,priority=20,dl_vlan={vm.network},dl_dst={vm.mac},"
                f"actions=strip_vlan,output:{vm.tap}",
            )
        )
    for net in networks:
        vni = VNI_BASE + net
        here = [v.tap for v in local if v.network == net]
        flood = ",".join(f"output:{tap}" for tap in here)
        lines.append(
            (
                BR_INT,
                f"table=60,priority=5,dl_vlan={net},actions=output:{PATCH_TUN},strip_vlan,{flood}",
            )
        )
        lines.append(
            (
                BR_TUN,
                f"table=4,priority=1,tun_id={vni},actions=mod_vlan_vid:{net},output:{PATCH_INT}",
            )
        )
        remote = [v for v in vms if v.network == net and v.host != host.name]
        ports = sorted({tunnel_port_name("vxlan", ip_of[v.host]) for v in remote})
        for vm in remote:
            port = tunnel_port_name("vxlan", ip_of[vm.host])
            lines.append(
                (
                    BR_INT,
                    f"table=60,priority=10,dl_vlan={net},dl_dst={vm.mac},"
                    f"actions=output:{PATCH_TUN}",
                )
            )
            lines.append(
                (
                    BR_TUN,
                    f"table=20,priority=2,dl_vlan={net},dl_dst={vm.mac},"
                    f"actions=strip_vlan,set_field:{vni}->tun_id,output:{port}",
                )
            )
        if ports:
            outs = ",".join(f"output:{p}" for p in ports)
            lines.append(
                (
                    BR_TUN,
                    f"table=20,priority=1,dl_vlan={net},"
                    f"actions=strip_vlan,set_field:{vni}->tun_id,{outs}",
                )
            )
    return [parse_flow(text, bridge) for bridge, text in lines]


def tunnel_peers(host: HostState, hosts: Sequence[HostState], vms: Sequence[VmState]) -> list[str]:
    """Tunnel IPs of the hosts that share a network with `host`."""
    nets = {v.network for v in vms if v.host == host.name}
    names = {v.host for v in vms if v.network in nets and v.host != host.name}
    return sorted(h.tunnel_ip for h in hosts if h.name in names)
