"""Hot OVS upgrade VM by VM on real OVS: a new switch slot beside the old one, each VM's
VIF moved over on its own, the old slot retired, every VM reachable throughout."""

from __future__ import annotations

import os
import time

import pytest

from flowkeeper.lab.lab import Lab
from flowkeeper.lab.procs import is_ours
from flowkeeper.lab.run import LabError, list_netns
from flowkeeper.lab.state import HostState
from flowkeeper.lab.upgrade import cut_over, hot_upgrade, prepare, slot_peer
from flowkeeper.naming import BR_TUN, tunnel_port_name
from flowkeeper.pipeline.tables import FROM_VXLAN, UCAST_TO_TUN
from tests.conftest import LabFactory
from tests.integration.test_restarts import probe, result

pytestmark = pytest.mark.lab


def test_hot_upgrade_moves_every_vm_to_a_new_switch_one_at_a_time(
    lab_factory: LabFactory,
) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=2)
    old = state.host("h1")
    old_pids = dict(old.pids)
    src = next(vm for vm in state.vms if vm.host == "h2")
    targets = [vm for vm in state.vms if vm.host == "h1"]
    probes = [probe(lab, state, src.name, vm.name, seconds=8.0) for vm in targets]

    report = hot_upgrade(lab, "h1", settle=0.3)

    assert report.new == "h1b" and [m.vm for m in report.moves] == [vm.name for vm in targets]
    after = lab.state()
    assert {vm.host for vm in after.vms if vm.name in {t.name for t in targets}} == {"h1b"}
    client = lab.client(after)
    for vm in targets:
        port = client.get_port(vm.iface_id)
        assert (port.host, port.status) == ("h1b", "ACTIVE")
    # The old slot is gone: its namespace, its daemons (by the PIDs the lab recorded).
    assert old.ns not in list_netns()
    assert "h1" not in [h.name for h in after.hosts]
    assert not any(is_ours(pid, old.dir) for pid in old_pids.values())
    # Peers tunnel to the new slot only.
    h2_tunnels = lab.bridge_ports(after.host("h2"), BR_TUN)
    new_ip, old_ip = after.host("h1b").tunnel_ip, old.tunnel_ip
    assert tunnel_port_name("vxlan", new_ip) in h2_tunnels
    assert tunnel_port_name("vxlan", old_ip) not in h2_tunnels
    # Every VM answered before its move and again after it (the probes ran throughout).
    for proc in probes:
        res = result(proc)
        answered = [offset for offset, rtt in res.timeline if rtt is not None]
        assert answered, res
        assert answered[0] < 0.5 and answered[-1] > res.timeline[-1][0] - 0.5, res
    # A plain ping from a VM on the new slot works too.
    assert lab.ping(targets[0].name, src.name, count=3, interval=0.05).lost == 0


def test_the_new_slot_holds_every_network_and_tunnel_before_any_vm_moves(
    lab_factory: LabFactory,
) -> None:
    """So that a cut-over changes only the moving VM's own flows."""
    lab, state = lab_factory(hosts=2, vms_per_host=1)
    report = prepare(lab, "h1")
    new = lab.state().host(report.new)
    vm = next(vm for vm in state.vms if vm.host == "h1")
    peer = next(vm for vm in state.vms if vm.host == "h2")
    tun = lab.bridge(new, BR_TUN).dump_flows()
    # The network's decapsulation, and unicast to the peer VM through its host's tunnel.
    assert [f for f in tun if f.table == FROM_VXLAN and f.priority == 1], tun
    to_peer = [
        f for f in tun if f.table == UCAST_TO_TUN and dict(f.match).get("dl_dst") == peer.mac
    ]
    assert to_peer and tunnel_port_name("vxlan", state.host("h2").tunnel_ip) in to_peer[0].actions
    # Not one VM moved yet; the cut-over then completes as usual.
    assert all(vm.host != report.new for vm in lab.state().vms)
    cut_over(lab, report, settle=0.0)
    _wait_unicast(lab, lab.state().host("h2"), vm.mac, new.tunnel_ip)
    assert lab.ping(vm.name, peer.name, count=3, interval=0.05).lost == 0


def test_a_second_upgrade_goes_back_to_the_first_slot(lab_factory: LabFactory) -> None:
    lab, _state = lab_factory(hosts=2, vms_per_host=1)
    hot_upgrade(lab, "h1", settle=0.0)
    back = hot_upgrade(lab, "h1b", settle=0.0)
    assert back.new == "h1"
    after = lab.state()
    a = next(vm for vm in after.vms if vm.host == "h1")
    b = next(vm for vm in after.vms if vm.host == "h2")
    # The cut-over returns once the ports are ACTIVE; h2 learns through the server that
    # a sits behind h1's tunnel again (the wait that issue 12's local cut-over removes).
    _wait_unicast(lab, after.host("h2"), a.mac, after.host("h1").tunnel_ip)
    _wait_forwarding(lab, a.name, b.name)
    assert lab.ping(a.name, b.name, count=3, interval=0.05).lost == 0
    assert slot_peer(after.host("h1")) == ("h1b", after.host("h1").index + 100)


def _wait_unicast(lab: Lab, host: HostState, mac: str, tunnel_ip: str) -> None:
    """Until `host`'s br-tun sends `mac` through the tunnel to `tunnel_ip` (bounded)."""
    tunnel = tunnel_port_name("vxlan", tunnel_ip)
    deadline = time.monotonic() + 20.0
    while True:
        flows = lab.bridge(host, BR_TUN).dump_flows()
        if any(
            f.table == UCAST_TO_TUN and dict(f.match).get("dl_dst") == mac and tunnel in f.actions
            for f in flows
        ):
            return
        assert time.monotonic() < deadline, f"{host.name} never sent {mac} to {tunnel}"
        time.sleep(0.05)


def _wait_forwarding(lab: Lab, src: str, dst: str) -> None:
    """Until one ping from `src` to `dst` is answered (bounded): the cut-over returns
    when the ports are ACTIVE, not when every agent has applied its last bundle."""
    deadline = time.monotonic() + 20.0
    while lab.ping(src, dst, count=1, interval=0.05).received == 0:
        assert time.monotonic() < deadline, f"{src} never reached {dst} after the cut-over"


def test_upgrade_refuses_a_lab_without_agents(lab_factory: LabFactory) -> None:
    lab, _state = lab_factory(hosts=1, vms_per_host=1, agents=False)
    with pytest.raises(LabError, match="needs the lab's server and agents"):
        hot_upgrade(lab, "h1")
    assert os.path.isdir(lab.dir)
