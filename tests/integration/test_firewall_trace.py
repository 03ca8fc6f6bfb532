"""Real OVS (userspace datapath): the firewall's flows are accepted as generated, read
back unchanged, and give Neutron's verdicts under ofproto/trace."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from flowkeeper.flows.flowset import FlowSet, diff
from flowkeeper.lab import ovsproc
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.state import HostState, LabState, VmState
from flowkeeper.naming import BR_INT, PATCH_TUN
from flowkeeper.pipeline.build import build_flows
from flowkeeper.pipeline.tables import FIREWALL_TABLES, cookie_for
from flowkeeper.pipeline.view import (
    GroupView,
    HostView,
    LocalPort,
    NetworkView,
    RemotePort,
    RuleView,
)
from tests.conftest import LabFactory

pytestmark = pytest.mark.lab

VLAN = 1
NET = NetworkView("net-1", "vxlan", 1001, VLAN)
WEB, PEER = "sg-web", "sg-peer"
OUTSIDE_MAC, OUTSIDE_IP = "fa:16:3e:0e:0e:0e", "198.18.9.9"
MEMBER_IP = "198.18.7.7"
PAIR_IP = "198.19.200.0/24"
WEB_RULES = (
    RuleView("egress", "IPv4"),
    RuleView("ingress", "IPv4", "tcp", 22, 22),
    RuleView("ingress", "IPv4", "icmp", remote_group=PEER),
    RuleView("ingress", "IPv4", "tcp", 5000, 5999, remote_group=PEER),
)
PEER_RULES = (RuleView("ingress", "IPv4", "tcp", 80, 80),)


def _view(state: LabState, *, ports: bool = True) -> HostView:
    a, b = state.vms[:2]
    return HostView(
        state.hosts[0].tunnel_ip,
        cookie=cookie_for(1),
        networks=(NET,),
        local_ports=(
            LocalPort(
                "port-a",
                NET.id,
                a.tap,
                a.mac,
                (a.ip,),
                port_security=True,
                security_groups=(WEB,),
                allowed_pairs=((a.mac, PAIR_IP),),
            ),
            LocalPort("port-b", NET.id, b.tap, b.mac, (b.ip,), True, (PEER,)),
        )
        if ports
        else (),
        # The outside host: a port on another host, reached through the tunnel.
        remote_ports=(RemotePort("port-x", NET.id, OUTSIDE_MAC, "198.18.0.99", (OUTSIDE_IP,)),),
        firewall=True,
        groups=(GroupView(PEER, PEER_RULES), GroupView(WEB, WEB_RULES)),
        members=((PEER, (b.ip, MEMBER_IP)),),
    )


class Tracer:
    def __init__(self, host: HostState) -> None:
        self.host = host
        self.dp: dict[str, str] = {}
        for line in ovsproc.appctl(host, "dpif/show").splitlines():
            m = re.match(r"\s+(\S+) \d+/(\d+):", line)
            if m:
                self.dp[m.group(1)] = m.group(2)

    def outputs(self, flow: str, *ct: str) -> set[str]:
        """The ports a packet ends on (its last recirculation's datapath actions)."""
        args = ["ofproto/trace", BR_INT, flow]
        for states in ct:
            args += ["--ct-next", states]
        out = ovsproc.appctl(self.host, *args)
        print(f"----- trace {flow} {' '.join(ct)} -----\n{out}")  # shown on failure
        last = out.split("resume conntrack")[-1]
        actions = re.findall(r"^Datapath actions: (.*)$", last, re.M)[-1]
        names = {v: k for k, v in self.dp.items()}
        ports = {names[a] for a in _split(actions) if a.isdigit()}
        # br-tun has no flows here: a frame sent to patch-tun shows as br-tun's trace.
        return ports | ({PATCH_TUN} if 'bridge("br-tun")' in last else set())


def _split(actions: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in actions:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur]


def _inbound(vm: VmState, proto: str, src_ip: str = OUTSIDE_IP) -> str:
    """A frame from a tunnel (br-tun tags it with the local VLAN) to a VM."""
    return (
        f"in_port={PATCH_TUN},dl_vlan={VLAN},dl_src={OUTSIDE_MAC},dl_dst={vm.mac},"
        f"{proto},nw_src={src_ip},nw_dst={vm.ip}"
    )


def _outbound(vm: VmState, proto: str, *, mac: str = "", ip: str = "", dst: str = "") -> str:
    return (
        f"in_port={vm.tap},dl_src={mac or vm.mac},dl_dst={dst or OUTSIDE_MAC},"
        f"{proto},nw_src={ip or vm.ip},nw_dst={OUTSIDE_IP}"
    )


def _lab(lab_factory: LabFactory) -> tuple[Lab, LabState, HostState]:
    lab, state = lab_factory(hosts=1, vms_per_host=2, static_flows=False, agents=False)
    return lab, state, state.hosts[0]


def test_firewall_flows_install_and_trace(lab_factory: LabFactory) -> None:
    lab, state, host = _lab(lab_factory)
    a, b = state.vms[:2]
    flows = build_flows(_view(state)).for_bridge(BR_INT)
    bridge = lab.bridge(host, BR_INT)
    bridge.replace_flows(flows)  # ovs-ofctl refuses the whole set if one flow is bad
    installed = FlowSet(bridge.dump_flows())
    assert not diff(flows, installed), "OVS read back other flows than were written"
    trace = Tracer(host)
    new, est_reply, est = "trk,new", "trk,est,rpl", "trk,est"

    # Ingress: tcp/22 from anywhere, tcp/5000-5999 and icmp from members of sg-peer.
    assert trace.outputs(_inbound(a, "tcp,tp_src=40000,tp_dst=22"), new) == {a.tap}
    assert trace.outputs(_inbound(a, "tcp,tp_src=40000,tp_dst=23"), new) == set()
    assert trace.outputs(_inbound(a, "tcp,tp_dst=5500", MEMBER_IP), new) == {a.tap}
    assert trace.outputs(_inbound(a, "tcp,tp_dst=6000", MEMBER_IP), new) == set()
    assert trace.outputs(_inbound(a, "tcp,tp_dst=5500"), new) == set()  # not a member
    assert trace.outputs(_inbound(a, "icmp,icmp_type=8", MEMBER_IP), new) == {a.tap}
    assert trace.outputs(_inbound(a, "icmp,icmp_type=8"), new) == set()
    # The reply of a connection the VM opened passes; the same packet as new does not.
    reply = _inbound(a, "tcp,tp_src=443,tp_dst=41000")
    assert trace.outputs(reply, est_reply) == {a.tap}
    assert trace.outputs(reply, new) == set()
    # Established, but its rule is gone (no rule for tcp/23): marked and dropped.
    assert trace.outputs(_inbound(a, "tcp,tp_src=40000,tp_dst=23"), est) == set()
    assert trace.outputs(_inbound(a, "tcp,tp_src=40000,tp_dst=23"), "trk,inv") == set()
    # ARP and DHCP offers reach the VM.
    arp = f"in_port={PATCH_TUN},dl_vlan={VLAN},dl_src={OUTSIDE_MAC},dl_dst={a.mac},arp"
    assert trace.outputs(f"{arp},arp_spa={OUTSIDE_IP},arp_tpa={a.ip},arp_op=1") == {a.tap}
    assert trace.outputs(_inbound(a, "udp,udp_src=67,udp_dst=68")) == {a.tap}

    # Egress: anything from the VM's own MAC and IP (or an allowed pair) leaves ...
    assert trace.outputs(_outbound(a, "tcp,tp_dst=443"), new) == {PATCH_TUN}
    assert trace.outputs(_outbound(a, "tcp,tp_dst=443", ip="198.19.200.7"), new) == {PATCH_TUN}
    # ... a spoofed MAC or IP does not, tracked or not.
    assert trace.outputs(_outbound(a, "tcp,tp_dst=443", mac="fa:16:3e:66:66:66"), new) == set()
    assert trace.outputs(_outbound(a, "tcp,tp_dst=443", ip="198.19.201.1"), new) == set()
    assert trace.outputs(_outbound(a, "tcp,tp_dst=443", ip="198.19.201.1")) == set()
    spoofed_arp = f"in_port={a.tap},dl_src={a.mac},dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_op=1"
    assert trace.outputs(f"{spoofed_arp},arp_spa=198.19.201.1,arp_tpa={b.ip}") == set()
    assert PATCH_TUN in trace.outputs(f"{spoofed_arp},arp_spa={a.ip},arp_tpa={b.ip}")
    # DHCP: the client's discover goes out, a DHCP server in the VM is cut off.
    discover = (
        f"in_port={a.tap},dl_src={a.mac},dl_dst=ff:ff:ff:ff:ff:ff,udp,nw_src=0.0.0.0,"
        "nw_dst=255.255.255.255,udp_src=68,udp_dst=67"
    )
    assert PATCH_TUN in trace.outputs(discover)
    offer = _outbound(a, "udp,udp_src=67,udp_dst=68")
    assert trace.outputs(offer) == set()

    # VM to VM on this host: through a's egress, then b's ingress (tcp/80 only).
    local = f"in_port={a.tap},dl_src={a.mac},dl_dst={b.mac},tcp,nw_src={a.ip},nw_dst={b.ip}"
    assert trace.outputs(f"{local},tp_dst=80", new) == {b.tap}
    assert trace.outputs(f"{local},tp_dst=81", new) == set()


def test_no_firewall_flow_is_left_once_the_ports_are_gone(lab_factory: LabFactory) -> None:
    lab, state, host = _lab(lab_factory)
    bridge = lab.bridge(host, BR_INT)
    bridge.replace_flows(build_flows(_view(state)).for_bridge(BR_INT))
    empty = build_flows(_view(state, ports=False)).for_bridge(BR_INT)
    bridge.apply(diff(empty, FlowSet(bridge.dump_flows())))
    left = FlowSet(bridge.dump_flows())
    assert not diff(empty, left)
    assert not [f for f in left if "reg5" in dict(f.match) or "conjunction(" in f.actions]
    # The host-wide firewall tables stay (defaults), without a per-port flow.
    assert {f.table for f in left} >= set(FIREWALL_TABLES)
    # Firewall off: every firewall table is empty again.
    off = build_flows(replace(_view(state), firewall=False)).for_bridge(BR_INT)
    bridge.apply(diff(off, FlowSet(bridge.dump_flows())))
    assert not [f for f in bridge.dump_flows() if f.table in FIREWALL_TABLES]
