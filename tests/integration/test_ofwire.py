"""Real OVS: flows installed by WireBridge (no ovs-ofctl) dump back exactly as desired."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from flowkeeper.flows.flowset import FlowDelta, FlowSet, diff
from flowkeeper.flows.record import parse_flow
from flowkeeper.lab import hostops
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.state import HostState, LabState, VmState
from flowkeeper.lab.staticflows import static_flows
from flowkeeper.naming import BR_INT, BR_TUN, tunnel_port_name
from flowkeeper.ovs.errors import OpenFlowError
from flowkeeper.ovs.ofencode import ADD, MODIFY_STRICT, FlowModEncoder, encode_flow_mod
from flowkeeper.ovs.ofwire import WireBridge
from flowkeeper.ovs.ovsdb import Ovsdb
from flowkeeper.pipeline.build import build_flows
from flowkeeper.pipeline.tables import cookie_for
from flowkeeper.pipeline.view import HostView, LocalPort, NetworkView, RemotePort, tunnel_peers
from tests.conftest import LabFactory
from tests.integration import ofcapture
from tests.unit import fwshapes

pytestmark = pytest.mark.lab

EXTRA_TAP = "tapfk2"  # a second local port (internal), on the gre network
NETWORKS = (
    NetworkView("net-a", "vxlan", 1001, 1),
    NetworkView("net-b", "gre", 1002, 2),
    NetworkView("net-c", "vxlan", 5000, 3),
)
REMOTES = (
    RemotePort("r1", "net-a", "fa:16:3e:00:01:01", "198.18.0.5", ("198.19.1.11", "198.19.1.12")),
    RemotePort("r2", "net-a", "fa:16:3e:00:01:02", "198.18.0.6", ("198.19.1.13",)),
    RemotePort("r3", "net-b", "fa:16:3e:00:02:01", "198.18.0.5", ("198.19.2.11",)),
    RemotePort("r4", "net-b", "fa:16:3e:00:02:02", "198.18.0.7", ("198.19.2.12",)),
    RemotePort("r5", "net-c", "fa:16:3e:00:03:01", "198.18.0.7", ("198.19.3.11",)),
)


def _view(state: LabState, *, l2pop: bool = True, generation: int = 1) -> HostView:
    host, vm = state.hosts[0], state.vms[0]
    return HostView(
        tunnel_ip=host.tunnel_ip,
        l2pop=l2pop,
        arp_responder=True,
        cookie=cookie_for(generation),
        networks=NETWORKS,
        local_ports=(
            LocalPort("p1", "net-a", vm.tap, vm.mac, (vm.ip,)),
            LocalPort("p2", "net-b", EXTRA_TAP, "fa:16:3e:00:00:02", ("198.19.2.10",)),
        ),
        remote_ports=REMOTES,
    )


def _lab(lab_factory: LabFactory) -> tuple[Lab, LabState, HostState]:
    lab, state = lab_factory(hosts=1, vms_per_host=1, static_flows=False, agents=False)
    host = state.hosts[0]
    peers = tunnel_peers(_view(state))
    assert {kind for kind, _ in peers} == {"vxlan", "gre"}
    with Ovsdb(f"unix:{host.db_sock}") as db:
        db.ensure_port(BR_INT, EXTRA_TAP, iface_type="internal")
        for kind, ip in peers:
            db.ensure_tunnel_port(BR_TUN, tunnel_port_name(kind, ip), kind, ip, host.tunnel_ip)
        db.wait_ofports([EXTRA_TAP, *(tunnel_port_name(k, ip) for k, ip in peers)])
    return lab, state, host


def _installed(lab: Lab, host: HostState, bridge: str) -> FlowSet:
    return FlowSet(lab.bridge(host, bridge).dump_flows())


def test_pipeline_flows_and_deltas_through_the_wire(lab_factory: LabFactory) -> None:
    lab, state, host = _lab(lab_factory)
    first = build_flows(_view(state))
    second = build_flows(_view(state, l2pop=False, generation=2))
    for bridge in (BR_INT, BR_TUN):
        with WireBridge(bridge, host.mgmt(bridge)) as wire:
            wire.add_flows(first.for_bridge(bridge))
            assert _installed(lab, host, bridge) == first.for_bridge(bridge)

            # l2pop off and a new generation: deletes, re-cookied flows (modifies), adds.
            delta = diff(second.for_bridge(bridge), _installed(lab, host, bridge))
            assert delta.modify and delta.delete
            wire.apply(delta)
            assert _installed(lab, host, bridge) == second.for_bridge(bridge)

            # Back to the first view (the l2pop flows are added again), except: one flow's
            # cookie changed only, one flow's actions changed only, one flow left out.
            flows = list(first.for_bridge(bridge))
            installed = _installed(lab, host, bridge)
            same = dataclasses.replace(flows[1], cookie=cookie_for(2))
            assert installed.get(flows[0].key) == dataclasses.replace(
                flows[0], cookie=cookie_for(2)
            )
            assert installed.get(flows[1].key) == same
            assert installed.get(flows[2].key) is not None
            target = [
                dataclasses.replace(flows[0], cookie=cookie_for(77)),
                dataclasses.replace(same, actions="drop"),
                *flows[3:],
            ]
            delta = diff(FlowSet(target), installed)
            assert delta.add and delta.modify and delta.delete
            wire.apply(delta)
            assert _installed(lab, host, bridge) == FlowSet(target)
            assert wire.fallbacks == 0


def test_modify_strict_keeps_the_cookie_add_replaces_it(lab_factory: LabFactory) -> None:
    lab, _state, host = _lab(lab_factory)
    old = parse_flow("cookie=0x1,table=7,priority=5,dl_vlan=3,actions=drop", BR_TUN)
    new = dataclasses.replace(old, cookie=0x2, actions="output:patch-int")
    with WireBridge(BR_TUN, host.mgmt(BR_TUN)) as wire:
        ports = wire.port_numbers()
        wire.add_flows([old])
        _packet_out(host, table=7, count=3)
        wire.conn.bundle([encode_flow_mod(new, MODIFY_STRICT, ports)])
        [after_modify] = lab.bridge(host, BR_TUN).dump_flows()
        # OpenFlow 1.5: MODIFY_STRICT changes the actions, never the cookie.
        assert after_modify == dataclasses.replace(new, cookie=0x1)
        wire.conn.bundle([encode_flow_mod(new, ADD, ports)])
        assert lab.bridge(host, BR_TUN).dump_flows() == [new]
        assert "n_packets=3," in _stats(host, table=7)  # ADD replaced it, counters kept
        wire.apply(FlowDelta(modify=[dataclasses.replace(new, cookie=0x3)]))
        assert lab.bridge(host, BR_TUN).dump_flows()[0].cookie == 0x3


def test_a_bad_flow_leaves_the_table_unchanged(lab_factory: LabFactory) -> None:
    lab, state, host = _lab(lab_factory)
    flows = build_flows(_view(state)).for_bridge(BR_TUN)
    with WireBridge(BR_TUN, host.mgmt(BR_TUN)) as wire:
        wire.add_flows(flows)
        more = [
            parse_flow(f"table=30,priority=1,dl_vlan={v},actions=output:patch-int", BR_TUN)
            for v in range(1, 51)
        ]
        victim = next(iter(flows))
        gone = FlowDelta(add=more, delete=[victim])

        unknown = parse_flow("table=30,priority=9,actions=output:vxlan-nowhere", BR_TUN)
        with pytest.raises(OpenFlowError, match="vxlan-nowhere"):  # ovs-ofctl's verdict
            wire.apply(dataclasses.replace(gone, add=[*more, unknown]))
        assert wire.fallbacks == 1

        group = parse_flow("table=30,priority=9,actions=group:99", BR_TUN)  # no such group
        with pytest.raises(OpenFlowError, match="BAD_OUT_GROUP"):
            wire.apply(dataclasses.replace(gone, add=[*more, group]))
        assert wire.fallbacks == 1  # encoded fine, refused by OVS inside the bundle
        assert _installed(lab, host, BR_TUN) == flows

        wire.apply(gone)  # the connection is still usable
        expected = FlowSet([*more, *flows])
        expected.discard(victim.key)
        assert _installed(lab, host, BR_TUN) == expected


def test_ovs_restart_reconnects_and_new_port_numbers_are_used(lab_factory: LabFactory) -> None:
    lab, state, host = _lab(lab_factory)
    flows = build_flows(_view(state)).for_bridge(BR_INT)
    with WireBridge(BR_INT, host.mgmt(BR_INT)) as wire:
        wire.add_flows(flows)
        before = wire.port_numbers()
        hostops.reboot(state, host, agent=False, seed=1)  # OVS killed and started again
        assert _installed(lab, host, BR_INT) == FlowSet()
        with Ovsdb(f"unix:{host.db_sock}") as db:
            db.ensure_port(BR_INT, EXTRA_TAP, iface_type="internal")
            db.wait_ofports([EXTRA_TAP])
        wire.add_flows(flows)
        assert wire.conn.reconnects == 1
        assert _installed(lab, host, BR_INT) == flows
        after = wire.port_numbers()
    # The re-plugged tap got a new number (OVS does not reuse one at once): a port map
    # cached from before the restart would have sent its flows to a port that is gone.
    tap = state.vms[0].tap
    assert set(before) == set(after) and before[tap] != after[tap]


def _packet_out(host: HostState, table: int, count: int) -> None:
    frame = "fffffffffffffa163e000009810000030800" + "45" + "00" * 19
    for _ in range(count):
        subprocess.run(
            ["ovs-ofctl", "-O", "OpenFlow15", "packet-out", f"unix:{host.mgmt(BR_TUN)}",
             f"in_port=LOCAL packet={frame} actions=resubmit(,{table})"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip


def _stats(host: HostState, table: int) -> str:
    argv = ["ovs-ofctl", "-O", "OpenFlow15", "dump-flows", f"unix:{host.mgmt(BR_TUN)}"]
    out = subprocess.run([*argv, f"table={table}"], check=True, capture_output=True, text=True)
    return out.stdout


def test_cached_port_map_is_refreshed_for_a_new_port(lab_factory: LabFactory) -> None:
    lab, _state, host = _lab(lab_factory)
    first = parse_flow("table=40,priority=1,actions=output:patch-int", BR_TUN)
    later = parse_flow("table=40,priority=2,actions=output:gre-c6120063", BR_TUN)
    with WireBridge(BR_TUN, host.mgmt(BR_TUN), cache_ports=True) as wire:
        wire.add_flows([first])
        with Ovsdb(f"unix:{host.db_sock}") as db:
            db.ensure_tunnel_port(BR_TUN, "gre-c6120063", "gre", "198.18.0.99", host.tunnel_ip)
            db.wait_ofports(["gre-c6120063"])
        wire.add_flows([later])  # unknown to the cached map: one PORT_DESC, then encoded
        assert wire.fallbacks == 0
    assert _installed(lab, host, BR_TUN) == FlowSet([first, later])


def test_static_lab_flows_through_the_wire(lab_factory: LabFactory) -> None:
    lab, state, host = _lab(lab_factory)
    # A second host that only exists on paper: its VM makes h1 flood and tunnel to it.
    other = HostState("h9", 9, "none", "198.18.0.9", "/nonexistent")
    vm = state.vms[0]
    remote = VmState("h9-vm1", "h9", "none", vm.network, "fa:16:3e:09:09:09", "1.2.3.4", "x", "t")
    with Ovsdb(f"unix:{host.db_sock}") as db:
        port = tunnel_port_name("vxlan", other.tunnel_ip)
        db.ensure_tunnel_port(BR_TUN, port, "vxlan", other.tunnel_ip, host.tunnel_ip)
        db.wait_ofports([port])
    flows = FlowSet(static_flows(host, [host, other], [vm, remote]))
    for bridge in (BR_INT, BR_TUN):
        with WireBridge(bridge, host.mgmt(bridge)) as wire:
            wire.apply(diff(flows.for_bridge(bridge), FlowSet()))
            assert wire.fallbacks == 0
        assert _installed(lab, host, bridge) == flows.for_bridge(bridge)


def _firewall_lab(lab_factory: LabFactory) -> tuple[Lab, HostState]:
    """A host whose br-int has the firewall view's VIFs (peerless patch ports, as the bench)."""
    lab, state = lab_factory(hosts=1, vms_per_host=0, static_flows=False, agents=False)
    host = state.hosts[0]
    with Ovsdb(f"unix:{host.db_sock}") as db:
        for name in fwshapes.DEVICES:
            db.ensure_port(BR_INT, name, iface_type="internal")
        db.wait_ofports(list(fwshapes.DEVICES))
    return lab, host


def test_firewall_flows_encode_as_ovs_ofctl_sends_them(lab_factory: LabFactory) -> None:
    """Every firewall flow shape: the encoder's FLOW_MOD is byte for byte what ovs-ofctl
    sends, the wire install dumps back exactly as ovs-ofctl's, and nothing falls back."""
    lab, host = _firewall_lab(lab_factory)
    flows = fwshapes.br_int_flows()
    mgmt = host.mgmt(BR_INT)
    ofctl = lab.bridge(host, BR_INT)
    sent = ofcapture.ofctl_flow_mods(mgmt, [f.render() for f in flows])
    by_ofctl = ofctl.dump_flows()
    assert FlowSet(by_ofctl) == FlowSet(flows)
    ofctl.delete_all()
    with WireBridge(BR_INT, mgmt) as wire:
        encoder = FlowModEncoder(wire.port_numbers())
        mine = [encoder.flow_mod(f, ADD) for f in flows]
        assert len(sent) == len(mine) == len(flows) > 400
        differ = [f.render() for f, a, b in zip(flows, mine, sent, strict=True) if a != b]
        assert differ == []
        wire.add_flows(flows)
        assert wire.fallbacks == 0
        assert sorted(f.render() for f in ofctl.dump_flows()) == sorted(
            f.render() for f in by_ofctl
        )
        # Deletes too: every other flow removed in one delta through the wire.
        gone = flows[::2]
        wire.apply(FlowDelta(delete=gone))
        assert wire.fallbacks == 0
    assert _installed(lab, host, BR_INT) == FlowSet(flows[1::2])
