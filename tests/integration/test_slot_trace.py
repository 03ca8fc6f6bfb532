"""Real OVS (userspace datapath): the slot link's flows (HostView.slot_link) are accepted as
generated, read back unchanged, and copy to fk-slot exactly what the other slot needs."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import pytest

from flowkeeper.flows.flowset import FlowSet, diff
from flowkeeper.lab import ovsproc
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.run import run
from flowkeeper.lab.state import HostState, LabState, VmState
from flowkeeper.naming import BR_INT, BR_TUN, PATCH_TUN, SLOT_LINK, SLOT_LINK_OFPORT
from flowkeeper.ovs.ofwire import WireBridge
from flowkeeper.pipeline.build import build_flows
from flowkeeper.pipeline.tables import cookie_for
from flowkeeper.pipeline.view import GroupView, HostView, LocalPort, NetworkView, RuleView
from tests.conftest import LabFactory

pytestmark = pytest.mark.lab

VLAN = 1
NET = NetworkView("net-1", "vxlan", 1001, VLAN)
SG = "sg-web"
RULES = (RuleView("egress", "IPv4"), RuleView("ingress", "IPv4", "tcp", 80, 80))
BROADCAST = "ff:ff:ff:ff:ff:ff"
UNKNOWN_MAC = "fa:16:3e:0e:0e:0e"
TUN = "br-tun"  # what `Trace.outputs` names a frame sent to patch-tun (br-tun's trace)


def _view(vms: list[VmState], *, secure: tuple[bool, ...] = (), firewall: bool = False) -> HostView:
    secure = secure or (False,) * len(vms)
    return HostView(
        "198.18.0.1",
        cookie=cookie_for(1),
        networks=(NET,),
        local_ports=tuple(
            LocalPort(
                f"port-{i}",
                NET.id,
                vm.tap,
                vm.mac,
                (vm.ip,),
                port_security=on,
                security_groups=(SG,) if on else (),
            )
            for i, (vm, on) in enumerate(zip(vms, secure, strict=True))
        ),
        firewall=firewall,
        groups=(GroupView(SG, RULES),) if firewall else (),
        slot_link=True,
    )


@dataclass(frozen=True)
class Out:
    port: str
    vlan: int | None  # the frame's VLAN tag as it leaves, None: untagged


class Trace:
    """ofproto/trace of br-int: where a frame goes, and tagged how."""

    def __init__(self, host: HostState) -> None:
        self.host = host
        self.dp: dict[str, str] = {}
        for line in ovsproc.appctl(host, "dpif/show").splitlines():
            m = re.match(r"\s+(\S+) \d+/(\d+):", line)
            if m:
                self.dp[m.group(2)] = m.group(1)

    def outputs(self, flow: str, *ct: str) -> set[Out]:
        """Every port the frame is output to (over all its recirculations), with its tag."""
        args = ["ofproto/trace", BR_INT, flow]
        for states in ct:
            args += ["--ct-next", states]
        text = ovsproc.appctl(self.host, *args)
        print(f"----- trace {flow} {' '.join(ct)} -----\n{text}")  # shown on failure
        m = re.search(r"dl_vlan=(\d+)", flow)
        vlan = int(m.group(1)) if m else None
        outs: set[Out] = set()
        for line in re.findall(r"^Datapath actions: (.*)$", text, re.M):
            for action in _split(line):
                if action.isdigit():
                    outs.add(Out(self.dp[action], vlan))
                elif action.startswith("push_vlan("):
                    vid = re.search(r"vid=(\d+)", action)
                    assert vid, action
                    vlan = int(vid.group(1))
                elif action == "pop_vlan":
                    vlan = None
        # A frame sent to patch-tun goes on through br-tun: name it by that.
        if 'bridge("br-tun")' in text:
            outs.add(Out(TUN, VLAN))
        return outs


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


def _lab(lab_factory: LabFactory, vms: int) -> tuple[Lab, LabState, HostState]:
    lab, state = lab_factory(hosts=1, vms_per_host=vms, static_flows=False, agents=False)
    host = state.hosts[0]
    # The slot link as the lab makes it for twin slots: a veth end on br-int, ofport 65000
    # (its peer stays unused here: the other slot is not needed to trace this one).
    run(
        ["ip", "link", "add", SLOT_LINK, "type", "veth", "peer", "name", "fk-slot-peer"], ns=host.ns
    )
    for dev in (SLOT_LINK, "fk-slot-peer"):
        run(["ip", "link", "set", dev, "up"], ns=host.ns)
    ovsproc.vsctl(
        host,
        "add-port",
        BR_INT,
        SLOT_LINK,
        "--",
        "set",
        "Interface",
        SLOT_LINK,
        f"ofport_request={SLOT_LINK_OFPORT}",
    )
    assert ovsproc.vsctl(host, "get", "Interface", SLOT_LINK, "ofport").strip() == "65000"
    return lab, state, host


def _install(lab: Lab, host: HostState, view: HostView) -> Trace:
    flows = build_flows(view)
    for name in (BR_INT, BR_TUN):
        bridge = lab.bridge(host, name)
        bridge.replace_flows(flows.for_bridge(name))  # refused whole if one flow is bad
        assert not diff(flows.for_bridge(name), FlowSet(bridge.dump_flows())), name
    return Trace(host)


def _frame(in_port: str, src: VmState | str, dst: str, extra: str = "") -> str:
    """A frame into br-int: from a VIF untagged, from patch-tun or fk-slot tagged."""
    mac = src if isinstance(src, str) else src.mac
    tag = "" if in_port.startswith("tap") else f",dl_vlan={VLAN}"
    return f"in_port={in_port}{tag},dl_src={mac},dl_dst={dst}{',' + extra if extra else ''}"


def test_slot_link_switching_and_flooding(lab_factory: LabFactory) -> None:
    lab, state, host = _lab(lab_factory, 2)
    a, b = state.vms[:2]
    trace = _install(lab, host, _view([a, b]))
    slot, to_a, to_b = Out(SLOT_LINK, VLAN), Out(a.tap, None), Out(b.tap, None)
    tun = Out(TUN, VLAN)

    # Unicast from a local VIF to a local MAC: the copy goes out fk-slot still tagged (the
    # other slot delivers it if it has b's device), and to b.
    assert trace.outputs(_frame(a.tap, a, b.mac)) == {slot, to_b}
    # The same frame from the tunnels: b only (the other slot got it from the host NIC).
    assert trace.outputs(_frame(PATCH_TUN, UNKNOWN_MAC, b.mac)) == {to_b}
    # From the other slot: b only, never back out fk-slot.
    assert trace.outputs(_frame(SLOT_LINK, a, b.mac)) == {to_b}

    # A broadcast from a local VIF: the tunnels, the other slot (tagged), the other locals.
    assert trace.outputs(_frame(a.tap, a, BROADCAST)) == {tun, slot, to_b}
    # A broadcast from the tunnels or from the other slot: the locals only.
    assert trace.outputs(_frame(PATCH_TUN, UNKNOWN_MAC, BROADCAST)) == {to_a, to_b}
    assert trace.outputs(_frame(SLOT_LINK, a, BROADCAST)) == {to_a, to_b}
    # An unknown unicast floods the same way.
    assert trace.outputs(_frame(a.tap, a, UNKNOWN_MAC)) == {tun, slot, to_b}
    assert trace.outputs(_frame(SLOT_LINK, a, UNKNOWN_MAC)) == {to_a, to_b}
    # The other network's VLAN (none here) is not switched at all.
    assert trace.outputs(f"in_port={SLOT_LINK},dl_vlan=7,dl_dst={BROADCAST}") == set()


def test_slot_link_with_the_firewall(lab_factory: LabFactory) -> None:
    lab, state, host = _lab(lab_factory, 3)
    a, b, c = state.vms[:3]
    # a and b have port security (ingress: tcp/80 only), c has not.
    trace = _install(lab, host, _view([a, b, c], secure=(True, True, False), firewall=True))
    slot, to_a, to_c = Out(SLOT_LINK, VLAN), Out(a.tap, None), Out(c.tap, None)
    new = "trk,new"

    def tcp(vm: VmState, port: int, src: VmState | None = None) -> str:
        ip = src.ip if src else "198.18.9.9"
        return f"tcp,nw_src={ip},nw_dst={vm.ip},tp_src=40000,tp_dst={port}"

    # To a firewalled port from an unprotected local VIF (table 60's dispatch): copied to
    # the other slot before a's ingress, which admits tcp/80 ...
    assert trace.outputs(_frame(c.tap, c, a.mac, tcp(a, 80, c)), new) == {slot, to_a}
    # ... and not tcp/81 (the copy has gone, tagged: the other slot's firewall decides).
    assert trace.outputs(_frame(c.tap, c, a.mac, tcp(a, 81, c)), new) == {slot}
    # From the tunnels: a's ingress only, no copy.
    assert trace.outputs(_frame(PATCH_TUN, UNKNOWN_MAC, a.mac, tcp(a, 80)), new) == {to_a}
    assert trace.outputs(_frame(PATCH_TUN, UNKNOWN_MAC, a.mac, tcp(a, 81)), new) == set()
    # From the other slot (its copy): a's ingress, not back out fk-slot.
    assert trace.outputs(_frame(SLOT_LINK, c, a.mac, tcp(a, 80, c)), new) == {to_a}
    # Firewalled to firewalled (table 73's dispatch, after b's egress): copied too.
    assert trace.outputs(_frame(b.tap, b, a.mac, tcp(a, 80, b)), new) == {slot, to_a}
    # To the unprotected port (table 94): copied, except from the tunnels.
    assert trace.outputs(_frame(b.tap, b, c.mac, tcp(c, 22, b)), new) == {slot, to_c}
    assert trace.outputs(_frame(PATCH_TUN, UNKNOWN_MAC, c.mac, tcp(c, 22))) == {to_c}
    # A broadcast ARP from a firewalled port: the tunnels, the other slot, the locals.
    arp = f"arp,arp_op=1,arp_spa={b.ip},arp_tpa={a.ip}"
    outs = trace.outputs(_frame(b.tap, b, BROADCAST, arp))
    assert outs == {Out(TUN, VLAN), slot, to_a, to_c}
    # And from the other slot: the locals only.
    outs = trace.outputs(_frame(SLOT_LINK, b, BROADCAST, arp))
    assert outs == {to_a, Out(b.tap, None), to_c}


def test_the_flows_without_the_slot_link_install_unchanged(lab_factory: LabFactory) -> None:
    """Turning the slot link off on a switch that had it leaves the flows of before."""
    lab, state, host = _lab(lab_factory, 2)
    on = _view(state.vms[:2])
    _install(lab, host, on)
    bridge = lab.bridge(host, BR_INT)
    off = build_flows(replace(on, slot_link=False)).for_bridge(BR_INT)
    bridge.apply(diff(off, FlowSet(bridge.dump_flows())))
    left = FlowSet(bridge.dump_flows())
    assert not diff(off, left)
    assert not [f for f in left if SLOT_LINK in f.render()]


@pytest.mark.parametrize("firewall", [False, True])
def test_the_slot_flows_install_through_the_wire(lab_factory: LabFactory, firewall: bool) -> None:
    """The agent's OpenFlow path (no ovs-ofctl) takes them as they are, too."""
    lab, state, host = _lab(lab_factory, 2)
    view = _view(state.vms[:2], secure=(firewall, False), firewall=firewall)
    flows = build_flows(view).for_bridge(BR_INT)
    lab.bridge(host, BR_INT).replace_flows([])
    with WireBridge(BR_INT, host.mgmt(BR_INT)) as wire:
        assert wire.port_numbers()[SLOT_LINK] == SLOT_LINK_OFPORT
        wire.add_flows(flows)
        assert FlowSet(lab.bridge(host, BR_INT).dump_flows()) == flows
        assert wire.fallbacks == 0
