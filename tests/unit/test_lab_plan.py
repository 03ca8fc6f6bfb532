"""The lab's address plan, static harness flows and probe summary (pure parts of the lab)."""

from __future__ import annotations

import ipaddress

from flowkeeper.lab.plan import plan_hosts, plan_vms, tunnel_ip
from flowkeeper.lab.probe import (
    LAB_RANGE,
    Command,
    echo_request,
    outages,
    parse_command,
    parse_reply,
    summarize,
)
from flowkeeper.lab.state import HostState, VmState
from flowkeeper.lab.staticflows import static_flows, tunnel_peers
from flowkeeper.naming import tunnel_port_name


def test_addresses_stay_in_the_benchmark_range() -> None:
    hosts = plan_hosts(300)
    vms = plan_vms("fk", hosts[:20], 4, 3)
    addrs = [h.tunnel_ip for h in hosts] + [v.ip for v in vms]
    assert all(ipaddress.IPv4Address(a) in LAB_RANGE for a in addrs)
    assert len(set(addrs)) == len(addrs)
    assert all(
        ipaddress.IPv4Address(h.tunnel_ip) in ipaddress.IPv4Network("198.18.0.0/16") for h in hosts
    )
    assert len({v.mac for v in vms}) == len(vms)
    assert all(len(v.tap) <= 15 for v in vms)
    assert tunnel_ip(1) == "198.18.0.2"


def test_tunnel_port_name_is_neutron_style() -> None:
    assert tunnel_port_name("vxlan", "198.18.0.2") == "vxlan-c6120002"
    assert tunnel_port_name("gre", "198.18.1.10") == "gre-c612010a"


def _lab(nets: int) -> tuple[list[HostState], list[VmState]]:
    hosts = [
        HostState(p.name, p.index, f"fk-{p.name}", p.tunnel_ip, f"/x/{p.name}")
        for p in plan_hosts(3)
    ]
    vms = [VmState.from_plan(v, f"fk-{v.name}") for v in plan_vms("fk", plan_hosts(3), 2, nets)]
    return hosts, vms


def test_static_flows_never_use_normal_and_reach_every_peer() -> None:
    hosts, vms = _lab(1)
    for host in hosts:
        flows = static_flows(host, hosts, vms)
        assert not any("NORMAL" in f.actions for f in flows)
        peers = tunnel_peers(host, hosts, vms)
        assert len(peers) == 2
        flood = [f for f in flows if f.bridge == "br-tun" and f.table == 20 and f.priority == 1]
        assert all(tunnel_port_name("vxlan", ip) in flood[0].actions for ip in peers)


def test_static_flows_isolate_networks() -> None:
    hosts, vms = _lab(2)
    h1 = hosts[0]
    flows = static_flows(h1, hosts, vms)
    for f in flows:
        if f.bridge == "br-tun" and f.table == 20 and f.priority == 2:
            mac = dict(f.match)["dl_dst"]
            vlan = int(dict(f.match)["dl_vlan"])
            owner = next(v for v in vms if v.mac == mac)
            assert owner.network == vlan


def test_summarize_counts_loss_and_longest_gap() -> None:
    sends = [i * 0.01 for i in range(10)]
    replies = {i: t + 0.001 for i, t in enumerate(sends) if i not in (3, 4, 5)}
    res = summarize("198.19.1.10", sends, replies, 0.01, end_time=0.1)
    assert (res.sent, res.received, res.lost) == (10, 7, 3)
    assert res.longest_loss_run == 3
    assert 39 < res.max_gap_ms < 41  # reply 2 at 21 ms, reply 6 at 61 ms
    assert abs(res.max_outage_ms - 40) < 1e-6  # sent: answered 20 ms, next answered 60 ms
    assert res.timeline[3] == (0.03, None)


def test_a_late_reply_is_a_gap_but_not_an_outage() -> None:
    sends = [i * 0.01 for i in range(10)]
    replies = {i: t + 0.001 for i, t in enumerate(sends)}
    replies[4] = replies[5] = replies[6] = 0.065  # the machine held three replies 25 ms
    res = summarize("198.19.1.10", sends, replies, 0.01, end_time=0.1)
    assert res.lost == 0 and res.max_outage_ms == 0.0
    assert res.max_gap_ms > 30


def test_outages_span_from_the_last_answered_to_the_next_answered_probe() -> None:
    sends = [0.0, 0.001, 0.002, 0.003, 0.004, 0.014, 0.015]
    answered = [True, False, False, True, True, False, False]
    assert outages(sends, answered, end_time=0.02) == [(0.0, 0.003), (0.004, 0.02)]
    assert outages([0.0, 0.01], [False, True], end_time=0.02) == [(0.0, 0.01)]
    assert outages([0.0], [True], end_time=0.01) == []


def test_control_lines_change_the_interval_only_within_bounds() -> None:
    assert parse_command("interval 0.001\n") == Command("interval", 0.001)
    assert parse_command("interval 0.01 3") == Command("interval", 0.01, 3)
    assert parse_command("interval 0.0001") is None  # below the probe's floor
    assert parse_command("interval 99") is None
    assert parse_command("interval x") is None
    assert parse_command("interval 0.01 -1") is None
    assert parse_command("interval 0.01 2 3") is None
    assert parse_command("stop") == Command("stop")
    assert parse_command("stop 7") == Command("stop", None, 7)
    assert parse_command("stop now") is None
    assert parse_command("halt") is None and parse_command("") is None


def test_summarize_all_lost() -> None:
    sends = [0.0, 0.01]
    res = summarize("198.19.1.10", sends, {}, 0.01, end_time=0.02)
    assert res.lost == 2 and res.first_reply_ms is None
    assert abs(res.max_gap_ms - 20) < 1e-6


def test_echo_reply_is_recognised() -> None:
    req = echo_request(0x1234, 77)
    reply = bytes([0x45]) + bytes(19) + bytes([0]) + req[1:]
    assert parse_reply(reply, 0x1234) == 77
    assert parse_reply(reply, 0x9999) is None
    assert parse_reply(b"\x45" + bytes(10), 0x1234) is None
