"""The agent on real OVS: server + one agent per lab host, real VMs, real packets."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flowkeeper.flows.record import Flow
from flowkeeper.lab import ovsproc
from flowkeeper.lab.hostops import add_vif_args
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.state import HostState, LabState
from flowkeeper.naming import BR_INT, BR_TUN, tunnel_port_name
from flowkeeper.pipeline.tables import INT_DISPATCH, LEARNED_COOKIE, UCAST_TO_TUN
from tests.conftest import LabFactory, wait_for

pytestmark = pytest.mark.lab


def flows_mentioning(lab: Lab, state: LabState, host: str, text: str) -> list[str]:
    h = state.host(host)
    out = []
    for bridge in (BR_INT, BR_TUN):
        out += [f.render() for f in lab.bridge(h, bridge).dump_flows() if text in f.render()]
    return out


def _flows_for_mac(lab: Lab, host: HostState, mac: str) -> list[Flow]:
    return [f for f in lab.bridge(host, BR_TUN).dump_flows() if dict(f.match).get("dl_dst") == mac]


def pings(lab: Lab, a: str, b: str, count: int = 10) -> bool:
    """All replies but at most the first: OVS's userspace tunnel drops the first packet to
    an underlay neighbour it has not resolved yet (tnl/neigh), as on a real host."""
    res = lab.ping(a, b, count=count, interval=0.02)
    return res.lost == 0 or (res.lost == 1 and res.timeline[0][1] is None)


def test_vms_talk_within_a_network_and_networks_are_isolated(lab_factory: LabFactory) -> None:
    lab, state = lab_factory(hosts=3, vms_per_host=2, networks=2, network_type="mixed")
    by_net: dict[int, list[str]] = {}
    for vm in state.vms:
        by_net.setdefault(vm.network, []).append(vm.name)
    # Same network, different hosts: vxlan (net1) and gre (net2).
    for names in by_net.values():
        first = names[0]
        for other in names[1:]:
            assert lab.ping(first, other, count=10, interval=0.02).lost <= 1, (first, other)
    # A VM of net1 cannot reach a VM of net2 on the same or another host.
    n1, n2 = state.vm(by_net[1][0]), state.vm(by_net[2][0])
    res = lab.run_in(n1.name, ["ping", "-c", "3", "-i", "0.1", "-W", "1", n2.ip], check=False)
    assert res.returncode != 0

    # Two networks with the SAME subnet stay apart: a third network reusing 198.19.1.0/24.
    client = lab.client(state)
    twin = client.create_network("twin", "vxlan", segmentation_id=1777, cidr="198.19.1.0/24")
    a = lab.add_vm("t1", "h1", twin.id, "198.19.1.200", "fa:16:3e:77:00:01")
    b = lab.add_vm("t2", "h2", twin.id, "198.19.1.201", "fa:16:3e:77:00:02")
    clash = lab.add_vm("t3", "h3", state.networks["1"], "198.19.1.201", "fa:16:3e:77:00:03")
    assert pings(lab, a.name, b.name)
    # t1 asks for 198.19.1.201: only t2 (same network) may answer, never t3 (net1).
    lab.run_in(a.name, ["ip", "neigh", "flush", "all"])
    assert pings(lab, a.name, b.name)
    neigh = lab.run_in(a.name, ["ip", "neigh", "show", "198.19.1.201"]).stdout
    assert "fa:16:3e:77:00:02" in neigh and clash.mac not in neigh


def _capture_tunnelled_arps(lab: Lab, state: LabState, action: Callable[[], None]) -> int:
    """Count ARP frames inside VXLAN on the underlay while `action` runs."""
    argv = [
        "ip",
        "netns",
        "exec",
        state.underlay_ns,
        "timeout",
        "8",
        "tcpdump",
        "-i",
        "ul",
        "-nn",
        "-l",
        "udp port 4789 and udp[28:2] = 0x0806",
    ]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as cap:
        assert cap.stderr is not None and cap.stdout is not None
        cap.stderr.readline()  # "listening on ul ..."
        time.sleep(0.3)
        action()
        time.sleep(0.5)
        cap.terminate()
        out = cap.stdout.read()
    return sum(1 for line in out.splitlines() if "ARP" in line)


def test_arp_for_a_known_ip_is_answered_locally(lab_factory: LabFactory) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=1)
    a, b = state.vms

    def arp_then_ping() -> None:
        lab.run_in(a.name, ["ip", "neigh", "flush", "all"])
        assert pings(lab, a.name, b.name, count=5)

    assert _capture_tunnelled_arps(lab, state, arp_then_ping) == 0
    neigh = lab.run_in(a.name, ["ip", "neigh", "show", b.ip]).stdout
    assert b.mac in neigh


def test_without_l2pop_flooding_reaches_every_host_and_macs_are_learned(
    lab_factory: LabFactory,
) -> None:
    lab, state = lab_factory(hosts=3, vms_per_host=1, l2pop=False)
    a, b, c = state.vms

    def arp_then_ping() -> None:
        lab.run_in(a.name, ["ip", "neigh", "flush", "all"])
        assert pings(lab, a.name, b.name, count=5)

    # The ARP request is flooded over the tunnels to both other hosts.
    assert _capture_tunnelled_arps(lab, state, arp_then_ping) >= 2
    assert pings(lab, a.name, c.name)
    h1 = state.host("h1")
    learned = [
        f
        for f in lab.bridge(h1, BR_TUN).dump_flows()
        if f.cookie == LEARNED_COOKIE and f.table == UCAST_TO_TUN
    ]
    assert {dict(f.match).get("dl_dst") for f in learned} >= {b.mac, c.mac}
    # No l2pop unicast flows: only learned ones.
    static_ucast = [
        f
        for f in lab.bridge(h1, BR_TUN).dump_flows()
        if f.table == UCAST_TO_TUN and f.priority == 2
    ]
    assert static_ucast == []


def test_deleting_a_port_removes_its_flows_everywhere_and_unused_tunnels(
    lab_factory: LabFactory,
) -> None:
    lab, state = lab_factory(hosts=3, vms_per_host=1)
    a, b, c = state.vms
    h1, h2 = state.host("h1"), state.host("h2")
    tun_to_h2 = tunnel_port_name("vxlan", h2.tunnel_ip)
    wait_for(lambda: bool(flows_mentioning(lab, state, "h1", b.mac)), what="b's flows on h1")
    assert tun_to_h2 in lab.bridge_ports(h1, BR_TUN)
    # Traffic from b over the tunnel makes h1's table 10 learn a flow for b's MAC: when b
    # goes, that learned flow (towards a tunnel port about to be deleted) must go too.
    assert pings(lab, a.name, b.name)
    assert any(f.cookie == LEARNED_COOKIE for f in _flows_for_mac(lab, h1, b.mac))

    def dispatch_on_h2() -> list[Flow]:
        flows = lab.bridge(h2, BR_INT).dump_flows()
        return [f for f in flows if (f.table, f.priority) == (INT_DISPATCH, 10)]

    assert len(dispatch_on_h2()) == 2  # from patch-tun, and from b's VIF
    lab.delete_vm(b.name)  # unplugged first (OVS forgets its port), then the port deleted
    for host in ("h1", "h2", "h3"):
        wait_for(
            lambda host=host: not flows_mentioning(lab, state, host, b.mac),  # type: ignore[misc]
            what=f"{b.mac} gone from {host}",
        )
    # b's in_port flow went too, by the number the port had: OVS no longer knows its name.
    wait_for(lambda: len(dispatch_on_h2()) == 1, what="b's in_port flow gone from h2")
    assert "reconcile failed" not in (Path(h2.dir) / "agent.log").read_text()
    # h1 and h2 share no network any more: the tunnel port goes, with every flow naming it.
    wait_for(lambda: tun_to_h2 not in lab.bridge_ports(h1, BR_TUN), what="tunnel removal")
    assert not flows_mentioning(lab, state, "h1", tun_to_h2)
    assert pings(lab, a.name, c.name)


def test_a_deleted_remote_port_takes_its_learned_flow_while_the_tunnel_stays(
    lab_factory: LabFactory,
) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=2)
    h1 = state.host("h1")
    a = next(vm for vm in state.vms if vm.host == "h1")
    b, b2 = [vm for vm in state.vms if vm.host == "h2"]
    assert pings(lab, a.name, b.name)
    assert any(f.cookie == LEARNED_COOKIE for f in _flows_for_mac(lab, h1, b.mac))
    lab.delete_vm(b.name)
    wait_for(lambda: not _flows_for_mac(lab, h1, b.mac), what=f"{b.mac} gone from h1's br-tun")
    # b2 still lives on h2: the tunnel and b2's forwarding stay.
    assert pings(lab, a.name, b2.name)


def test_a_vif_replugged_with_another_ofport_gets_its_flows_back(lab_factory: LabFactory) -> None:
    """OVS keeps the number a flow was installed with. A VIF re-plugged under the same name
    but with another number (as after a reboot) needs its flows installed again."""
    lab, state = lab_factory(hosts=2, vms_per_host=1)
    a = next(v for v in state.vms if v.host == "h1")
    b = next(v for v in state.vms if v.host == "h2")
    h1 = state.host("h1")
    assert pings(lab, a.name, b.name)
    old = int(ovsproc.vsctl(h1, "get", "Interface", a.tap, "ofport"))
    new = old + 40
    # One OVSDB transaction: the agent never sees the VIF missing, only its new number.
    ovsproc.vsctl(h1, "del-port", BR_INT, a.tap, "--", *add_vif_args(a), f"ofport_request={new}")
    wait_for(
        lambda: ovsproc.vsctl(h1, "get", "Interface", a.tap, "ofport").strip() == str(new),
        what="the new ofport",
    )
    wait_for(lambda: pings(lab, a.name, b.name), what="a reachable again")
    # No flow is left on the old number.
    stale = [f for f in lab.bridge(h1, BR_INT).dump_flows() if ("in_port", str(old)) in f.match]
    assert stale == []
