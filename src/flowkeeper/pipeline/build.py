"""The pipeline: a pure function HostView -> FlowSet (Neutron's br-int/br-tun layout).

No I/O, no clock, no randomness. Ports are named, never numbered: OVS resolves names
to the current ofports when flows are installed.

Twin switch slots (HostView.slot_link): two br-ints with the same flows, joined by the
slot link L (naming.SLOT_LINK), each VIF's device in one of them. Both slots get every
frame from the tunnels (the host NIC is mirrored), so only what a local port sends needs
copying to the other slot: a frame switched to a local port also goes out L still tagged
(the slot without the port's device drops its copy), except when it came from patch-tun
(a flow one priority higher without the copy); a flood from a local port also goes out L,
and a flood that came from patch-tun or L goes to the local ports only. Without the slot
link every flow is what it was before slots existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter

from flowkeeper.flows.actions import canonical_actions
from flowkeeper.flows.fields import FIELD_ALIASES, PROTOCOL_SHORTHANDS, canonical_value
from flowkeeper.flows.flowset import FlowSet
from flowkeeper.flows.record import Flow
from flowkeeper.naming import BR_INT, BR_TUN, PATCH_INT, PATCH_TUN, SLOT_LINK, tunnel_port_name
from flowkeeper.pipeline import firewall as fw
from flowkeeper.pipeline import tables as t
from flowkeeper.pipeline.view import HostView, LocalPort, NetworkView, RemotePort, tunnel_peers

UNICAST = "00:00:00:00:00:00/01:00:00:00:00:00"
MULTICAST = "01:00:00:00:00:00/01:00:00:00:00:00"
BROADCAST = "ff:ff:ff:ff:ff:ff"


class _Flows:
    """Collects canonical flows with one cookie."""

    def __init__(self, cookie: int) -> None:
        self.cookie = cookie
        self.flows: list[Flow] = []

    def add(self, bridge: str, table: int, priority: int, match: str, actions: str) -> None:
        fields: dict[str, str] = {}
        for token in match.split(",") if match else ():
            name, eq, value = token.partition("=")
            if not eq:
                fields.update(PROTOCOL_SHORTHANDS[name])
                continue
            name = FIELD_ALIASES.get(name, name)
            fields[name] = canonical_value(name, value)
        self.fast(
            bridge, table, priority, tuple(sorted(fields.items())), canonical_actions(actions)
        )

    def fast(
        self,
        bridge: str,
        table: int,
        priority: int,
        match: tuple[tuple[str, str], ...],
        actions: str,
    ) -> None:
        """Append a flow whose match and actions are already canonical (hot path)."""
        self.flows.append(Flow(bridge, table, priority, match, actions, self.cookie))


@dataclass(frozen=True)
class Options:
    """The host-wide settings every network's flows depend on."""

    l2pop: bool
    arp_responder: bool
    cookie: int
    firewall: bool = False  # switching in table 94, table 60 dispatches (firewall.py)
    slot_link: bool = False  # local traffic copied to the other slot (see the module doc)

    @classmethod
    def of(cls, view: HostView) -> Options:
        return cls(
            view.l2pop,
            view.arp_responder and view.l2pop,
            view.cookie,
            view.firewall,
            view.slot_link,
        )


@dataclass(frozen=True)
class NetworkInputs:
    """Everything one network's flows are made from: equal inputs, equal flows."""

    options: Options
    network: NetworkView
    local: tuple[LocalPort, ...]  # sorted
    remote: tuple[RemotePort, ...]  # sorted; reached through a tunnel
    # (port id, reg5) of the local ports with port security, firewall on (else empty)
    protected: tuple[tuple[str, int], ...] = ()


def build_flows(view: HostView) -> FlowSet:
    """Every flow of br-int and br-tun for this host."""
    flows = base_flows(view)
    firewall = fw.plan(view)
    for inputs in by_network(view, firewall.numbers):
        flows += network_flows(inputs)
    for port in firewall.ports.values():
        flows += fw.port_flows(port)
    for rules in firewall.rules.values():
        flows += fw.rule_flows(rules)
    for members in firewall.members.values():
        flows += fw.member_flows(members)
    return FlowSet(flows)


def by_network(view: HostView, numbers: Mapping[str, int] | None = None) -> list[NetworkInputs]:
    """The view cut into one NetworkInputs per network (ports of absent networks left out).

    `numbers`: reg5 of the ports with port security (fw.plan), when the firewall is on.
    """
    options = Options.of(view)
    local: dict[str, list[LocalPort]] = {n.id: [] for n in view.networks}
    remote: dict[str, list[RemotePort]] = {n.id: [] for n in view.networks}
    # Ports are ordered by id (unique in a view): a C-level key, not dataclass ordering.
    for port in sorted(view.local_ports, key=_by_id):
        if port.network_id in local:
            local[port.network_id].append(port)
    for rport in sorted(view.remote_ports, key=_by_id):
        if rport.network_id in remote and rport.tunnel_ip != view.tunnel_ip:
            remote[rport.network_id].append(rport)
    if not numbers:
        return [
            NetworkInputs(options, net, tuple(local[net.id]), tuple(remote[net.id]))
            for net in view.networks
        ]
    return [
        NetworkInputs(
            options,
            net,
            tuple(local[net.id]),
            tuple(remote[net.id]),
            tuple((p.id, numbers[p.id]) for p in local[net.id] if p.id in numbers),
        )
        for net in view.networks
    ]


_by_id = attrgetter("id")


def base_flows(view: HostView) -> list[Flow]:
    """The flows that belong to no network: table defaults and one dispatch per tunnel."""
    out = _Flows(view.cookie)
    add = out.add
    add(BR_INT, t.INT_DISPATCH, 0, "", "drop")
    add(BR_INT, t.INT_DISPATCH, 10, f"in_port={PATCH_TUN}", f"resubmit(,{t.INT_SWITCH})")
    if view.slot_link:
        add(BR_INT, t.INT_DISPATCH, 10, f"in_port={SLOT_LINK}", f"resubmit(,{t.INT_SWITCH})")
    if view.firewall:
        # Table 60 dispatches to the firewall; what it lets through is switched in 94.
        add(BR_INT, t.FW_DISPATCH, 0, "", f"resubmit(,{t.ACCEPTED_EGRESS_SWITCH})")
        out.flows += fw.base_flows(view.cookie)
    else:
        add(BR_INT, t.INT_SWITCH, 0, "", "drop")
    add(BR_TUN, t.TUN_DISPATCH, 0, "", "drop")
    add(BR_TUN, t.TUN_DISPATCH, 1, f"in_port={PATCH_INT}", f"resubmit(,{t.FROM_INT})")
    for kind, ip in sorted(tunnel_peers(view)):
        add(
            BR_TUN,
            t.TUN_DISPATCH,
            1,
            f"in_port={tunnel_port_name(kind, ip)}",
            f"resubmit(,{t.FROM_TUNNEL[kind]})",
        )
    add(BR_TUN, t.FROM_INT, 0, f"dl_dst={UNICAST}", f"resubmit(,{t.UCAST_TO_TUN})")
    add(BR_TUN, t.FROM_INT, 0, f"dl_dst={MULTICAST}", f"resubmit(,{t.FLOOD_TO_TUN})")
    if view.arp_responder and view.l2pop:
        add(BR_TUN, t.FROM_INT, 1, f"arp,dl_dst={BROADCAST}", f"resubmit(,{t.ARP_RESPONDER})")
        add(BR_TUN, t.ARP_RESPONDER, 0, "", f"resubmit(,{t.FLOOD_TO_TUN})")
    add(BR_TUN, t.FROM_GRE, 0, "", "drop")
    add(BR_TUN, t.FROM_VXLAN, 0, "", "drop")
    add(BR_TUN, t.LEARN, 1, "", f"{_learn()},output:{PATCH_INT}")
    add(BR_TUN, t.UCAST_TO_TUN, 0, "", f"resubmit(,{t.FLOOD_TO_TUN})")
    add(BR_TUN, t.FLOOD_TO_TUN, 0, "", "drop")
    return out.flows


def network_flows(inputs: NetworkInputs) -> list[Flow]:
    """One network's flows on both bridges."""
    opts, net = inputs.options, inputs.network
    out = _Flows(opts.cookie)
    vlan = str(net.vlan)
    # With the firewall on, the switching flows are those of table 94 (accepted traffic).
    switch = t.ACCEPTED_EGRESS_SWITCH if opts.firewall else t.INT_SWITCH
    for port in inputs.local:
        out.add(
            BR_INT,
            t.INT_DISPATCH,
            10,
            f"in_port={port.device}",
            f"mod_vlan_vid:{vlan},resubmit(,{t.INT_SWITCH})",
        )
        to_port = f"strip_vlan,output:{port.device}"
        to_mac = f"dl_vlan={vlan},dl_dst={port.mac}"
        if opts.slot_link:
            out.add(BR_INT, switch, 20, to_mac, f"output:{SLOT_LINK},{to_port}")
            out.add(BR_INT, switch, 21, f"in_port={PATCH_TUN},{to_mac}", to_port)
        else:
            out.add(BR_INT, switch, 20, to_mac, to_port)
    local = ",".join(f"output:{port.device}" for port in inputs.local)
    to_locals = f",strip_vlan,{local}" if local else ""
    if opts.slot_link:
        flood = f"output:{PATCH_TUN},output:{SLOT_LINK}{to_locals}"
        out.add(BR_INT, switch, 5, f"dl_vlan={vlan}", flood)
        for came_from in (PATCH_TUN, SLOT_LINK):
            back = f"in_port={came_from},dl_vlan={vlan}"  # from the tunnels or the other slot
            out.add(BR_INT, switch, 6, back, to_locals[1:] or "drop")
    else:
        out.add(BR_INT, switch, 5, f"dl_vlan={vlan}", f"output:{PATCH_TUN}{to_locals}")
    to_tun = f"output:{PATCH_TUN}"
    seg = net.segmentation_id
    tunnels: set[str] = set()
    for rport in inputs.remote:
        tunnel = tunnel_port_name(net.type, rport.tunnel_ip)
        tunnels.add(tunnel)
        dst = (("dl_dst", rport.mac), ("dl_vlan", vlan))
        if opts.l2pop:
            set_tun = f"pop_vlan,set_field:{seg:#x}->tun_id,output:{tunnel}"
            out.fast(BR_INT, switch, 10, dst, to_tun)
            out.fast(BR_TUN, t.UCAST_TO_TUN, 2, dst, set_tun)
        if opts.arp_responder:
            for ip in rport.ips:
                match = (("arp_tpa", ip), ("dl_type", "0x806"), ("dl_vlan", vlan))
                out.fast(BR_TUN, t.ARP_RESPONDER, 1, match, _arp_reply(rport.mac, ip))
    if inputs.protected:
        ports = {p.id: p for p in inputs.local}
        protected = ((ports[pid], number) for pid, number in inputs.protected)
        out.flows += fw.dispatch_flows(opts.cookie, net.vlan, protected, slot_link=opts.slot_link)
    out.add(
        BR_TUN,
        t.FROM_TUNNEL[net.type],
        1,
        f"tun_id={seg}",
        f"mod_vlan_vid:{vlan},resubmit(,{t.LEARN})",
    )
    if tunnels:
        outs = ",".join(f"output:{p}" for p in sorted(tunnels))
        out.add(
            BR_TUN,
            t.FLOOD_TO_TUN,
            1,
            f"dl_vlan={vlan}",
            f"strip_vlan,set_field:{seg}->tun_id,{outs}",
        )
    return out.flows


def _learn() -> str:
    """Neutron's table-10 learn action: remember which tunnel a source MAC came from."""
    return (
        f"learn(table={t.UCAST_TO_TUN},hard_timeout={t.LEARN_HARD_TIMEOUT},priority=1,"
        f"cookie={t.LEARNED_COOKIE:#x},NXM_OF_VLAN_TCI[0..11],"
        "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
        "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[])"
    )


def _arp_reply(mac: str, ip: str) -> str:
    """Neutron's ARP responder: turn the request into the reply in place, send it back.

    Written as OVS prints it back (Neutron writes mod_dl_src and load:, same actions).
    """
    return (
        "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],"
        f"set_field:{mac}->dl_src,"
        "set_field:2->arp_op,"
        "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
        "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],"
        f"set_field:{mac}->arp_sha,"
        f"set_field:{ip}->arp_spa,"
        "IN_PORT"
    )
