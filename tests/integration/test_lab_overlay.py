"""Real OVS, real packets: flows installed through flowkeeper.ovs carry VXLAN between hosts."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from flowkeeper.flows.flowset import FlowSet, diff
from flowkeeper.flows.record import parse_flow
from flowkeeper.lab.lab import Lab, UpOptions
from flowkeeper.lab.run import LabError, add_netns, del_netns, list_netns
from flowkeeper.lab.staticflows import static_flows, tunnel_peers
from flowkeeper.naming import BR_INT, BR_TUN, tunnel_port_name
from flowkeeper.ovs.errors import OpenFlowError
from flowkeeper.ovs.ovsdb import InterfaceInfo, Ovsdb
from tests.conftest import LabFactory, require_lab, wait_for

pytestmark = pytest.mark.lab


def test_vxlan_flows_in_bundles_carry_pings_and_deleting_them_cuts_traffic(
    lab_factory: LabFactory,
) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=1, static_flows=False, agents=False)
    a, b = state.vms
    # Empty tables (fail_mode=secure, no NORMAL): nothing crosses.
    assert lab.ping(a.name, b.name, count=3, interval=0.05).received == 0

    desired: dict[str, FlowSet] = {}
    for host in state.hosts:
        with Ovsdb(f"unix:{host.db_sock}") as db:
            for ip in tunnel_peers(host, state.hosts, state.vms):
                port = tunnel_port_name("vxlan", ip)
                db.ensure_tunnel_port(BR_TUN, port, "vxlan", ip, host.tunnel_ip)
                db.wait_ofports([port])
        flows = FlowSet(static_flows(host, state.hosts, state.vms))
        assert not any("NORMAL" in f.actions for f in flows)
        desired[host.name] = flows
        for bridge in (BR_INT, BR_TUN):
            ofb = lab.bridge(host, bridge)
            delta = diff(flows.for_bridge(bridge), FlowSet(ofb.dump_flows()))
            assert delta.add and not delta.modify and not delta.delete
            ofb.apply(delta)
            # What OVS holds now is, in canonical form, exactly what we asked for.
            assert FlowSet(ofb.dump_flows()) == flows.for_bridge(bridge)
            assert not diff(flows.for_bridge(bridge), FlowSet(ofb.dump_flows()))

    # The pings into empty tables left each VM's neighbour entry of the other failed, and
    # the kernel waits before it asks again: start the VMs afresh, as a new VM would.
    for vm in (a, b):
        lab.run_in(vm.name, ["ip", "neigh", "flush", "all"])
    res = lab.ping(a.name, b.name, count=20, interval=0.02)
    assert res.lost <= 1, res  # the very first packet may wait for the underlay ARP
    assert lab.ping(b.name, a.name, count=10, interval=0.02).lost == 0

    # Delete every flow on h1's br-tun in one bundle: traffic stops.
    h1 = state.hosts[0]
    tun = lab.bridge(h1, BR_TUN)
    tun.apply(diff(FlowSet(), FlowSet(tun.dump_flows())))
    assert tun.dump_flows() == []
    assert lab.ping(a.name, b.name, count=10, interval=0.02).received == 0

    # Put them back: traffic resumes.
    tun.apply(diff(desired[h1.name].for_bridge(BR_TUN), FlowSet()))
    # Packets of the cut keep hitting the datapath's drop entries until its revalidators
    # see the new table (longer on a busy machine): wait, bounded, for traffic to resume.
    wait_for(
        lambda: lab.ping(a.name, b.name, count=10, interval=0.02).lost == 0,
        timeout=10,
        what="traffic to resume once the flows are back",
    )


def test_a_bundle_with_one_bad_flow_changes_nothing(lab_factory: LabFactory) -> None:
    lab, state = lab_factory(hosts=1, vms_per_host=0, static_flows=False, agents=False)
    int_br = lab.bridge(state.hosts[0], BR_INT)
    good = parse_flow("table=0,priority=1,dl_vlan=7,actions=drop", BR_INT)
    int_br.apply(diff(FlowSet([good]), FlowSet()))
    new = [parse_flow(f"table=5,priority=1,dl_vlan={v},actions=drop", BR_INT) for v in range(50)]
    bad = parse_flow("table=5,priority=9,actions=group:99", BR_INT)  # no such group
    with pytest.raises(OpenFlowError):
        int_br.apply(diff(FlowSet([*new, bad]), FlowSet()))
    assert int_br.dump_flows() == [good]


def test_ovsdb_interfaces_other_config_and_watch(lab_factory: LabFactory) -> None:
    _lab, state = lab_factory(hosts=1, vms_per_host=1, static_flows=False, agents=False)
    host, vm = state.hosts[0], state.vms[0]
    with Ovsdb(f"unix:{host.db_sock}") as db:
        ifaces = {i.name: i for i in db.interfaces()}
        tap = ifaces[vm.tap]
        assert tap.iface_id == vm.iface_id
        assert tap.external_ids["attached-mac"] == vm.mac
        assert tap.ofport is not None and tap.ofport > 0

        db.set_port_other_config(vm.tap, {"net_uuid": "n1", "tag": "5"})
        db.set_port_other_config(vm.tap, {"segmentation_id": "1001"})
        assert db.port_other_config(vm.tap) == {
            "net_uuid": "n1",
            "tag": "5",
            "segmentation_id": "1001",
        }

        seen: list[tuple[str, InterfaceInfo]] = []
        got = threading.Event()

        def on_change(event: str, info: InterfaceInfo) -> None:
            if info.name == "gre-c6120099":
                seen.append((event, info))
                got.set()

        cancel = db.watch_interfaces(on_change)
        db.ensure_tunnel_port(BR_TUN, "gre-c6120099", "gre", "198.18.0.99", host.tunnel_ip)
        assert got.wait(10)
        assert seen[0][1].type == "gre"
        assert seen[0][1].options["remote_ip"] == "198.18.0.99"
        got.clear()
        db.delete_port(BR_TUN, "gre-c6120099")
        assert got.wait(10)
        assert any(event == "delete" for event, _ in seen)
        cancel()
        assert "gre-c6120099" not in db.bridge_ports(BR_TUN)


def test_a_lab_up_that_meets_another_labs_namespace_leaves_that_lab_alone(
    tmp_path: Path,
) -> None:
    """A name clash fails `lab up`, whose clean-up removes only what it made: the other
    lab's NAME-* namespaces stay."""
    require_lab()
    name = f"fkc{uuid.uuid4().hex[:5]}"
    theirs = [f"{name}-h1", f"{name}-zz"]  # the other lab's, made before ours
    for ns in theirs:
        add_netns(ns)
    try:
        lab = Lab(tmp_path / "lab")
        lab.up(UpOptions(name=name, hosts=1, vms_per_host=0, static_flows=True, agents=False))
        pytest.fail("lab up went through a namespace clash")
    except LabError as exc:
        assert f"namespace {name}-h1 already exists" in str(exc)
    finally:
        left = [ns for ns in list_netns() if ns.startswith(f"{name}-")]
        for ns in theirs:
            del_netns(ns)
    assert sorted(left) == sorted(theirs)  # the underlay ours made went, theirs stayed
