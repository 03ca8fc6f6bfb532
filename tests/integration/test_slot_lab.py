"""Twin switch slots in the real lab (`lab up --standby`), without the agent: the plumbing.

Both slots run, the slot link is on both br-ints at 65000, the host's one NIC feeds both
slots (both answer for the tunnel IP), the supervisor restarts a killed vswitchd,
`lab upgrade-ovs` refuses in one line while the agent has not prepared the slots, and
`lab down` leaves nothing behind (the lab_factory fixture checks that after each test).
The upgrade and the failover with the agent: test_twin_slots.py.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from flowkeeper.lab import ovsproc, procs, slots, slotupgrade, supervise
from flowkeeper.lab.hostops import underlay_mac
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.run import LabError, list_netns, run
from flowkeeper.lab.state import HostState, LabState, VmState
from flowkeeper.naming import BR_INT, BR_PHY, BR_TUN, PATCH_INT, PATCH_TUN, SLOT_LINK
from flowkeeper.ovs.ovsdb import Ovsdb
from tests.conftest import LabFactory, leftovers, wait_for

pytestmark = pytest.mark.lab

RESTART_BOUND = 10.0  # seconds for the supervisor to have a killed vswitchd running again


def _up(lab_factory: LabFactory, **kwargs: Any) -> tuple[Lab, LabState]:
    opts: dict[str, Any] = {"hosts": 2, "vms_per_host": 1, "static_flows": True, "agents": False}
    opts.update(kwargs)
    return lab_factory(standby=True, **opts)


def link_stats(ns: str, dev: str) -> dict[str, int]:
    """rx/tx packet counts of a device (`ip -s -j link show`)."""
    out = json.loads(run(["ip", "-s", "-j", "link", "show", "dev", dev], ns=ns).stdout)
    stats = out[0]["stats64"]
    return {"rx": int(stats["rx"]["packets"]), "tx": int(stats["tx"]["packets"])}


def _ofports(slot: HostState) -> dict[str, int | None]:
    with Ovsdb(f"unix:{slot.db_sock}") as db:
        return {i.name: i.ofport for i in db.interfaces()}


def _ping_tunnel_ip(lab: Lab, src: HostState, dst: HostState, count: int) -> tuple[int, int]:
    """Pings from `src`'s slot-a namespace to `dst`'s tunnel IP: (received, duplicates)."""
    out = run(
        ["ping", "-c", str(count), "-i", "0.02", "-W", "1", dst.tunnel_ip],
        ns=src.ns,
        check=False,
        timeout=count * 0.02 + 10,
    ).stdout
    got = re.search(r"(\d+) received(?:, \+(\d+) duplicates)?", out)
    assert got, out
    return int(got.group(1)), int(got.group(2) or 0)


def _wait_reaches(lab: Lab, vm: VmState, peer: VmState, where: str = "") -> None:
    wait_for(
        lambda: lab.ping(vm.name, peer.name, count=3, interval=0.05).lost == 0,
        what=f"{vm.name} to reach {peer.name}{where}",
    )


def _wait_tunnel_ip_answers(lab: Lab, src: HostState, dst: HostState) -> None:
    """Until both slots of `dst` answer (bounded): the first probes may wait for ARP."""
    wait_for(
        lambda: _ping_tunnel_ip(lab, src, dst, 3)[1] >= 1,
        timeout=20,
        what=f"both slots of {dst.name} to answer for {dst.tunnel_ip}",
    )


def test_both_slots_run_with_the_same_bridges_and_the_slot_link(
    lab_factory: LabFactory,
) -> None:
    lab, state = _up(lab_factory)
    for host in state.hosts:
        b = host.standby
        assert b is not None and b.ns == f"{state.name}-{host.name}-b"
        assert b.ns in state.namespaces and b.ns in list_netns()
        assert (b.name, b.index, b.tunnel_ip) == (host.name, host.index, host.tunnel_ip)
        for slot in (host, b):
            for daemon in ("ovsdb-server", "ovs-vswitchd", "supervise"):
                assert procs.is_ours(slot.pids[daemon], slot.dir), (slot.ns, daemon)
        a_ports, b_ports = _ofports(host), _ofports(b)
        # Same creation order, same numbers; the slot link at 65000 in both.
        for name in (BR_PHY, BR_INT, BR_TUN, "eth0", PATCH_TUN, PATCH_INT):
            assert a_ports[name] == b_ports[name] is not None, name
        assert a_ports[SLOT_LINK] == b_ports[SLOT_LINK] == 65000
        for slot in (host, b):
            hwaddr = ovsproc.vsctl(slot, "get", "Bridge", BR_PHY, "other_config:hwaddr")
            assert hwaddr.strip().strip('"') == underlay_mac(host.index)
            addrs = run(["ip", "-o", "-4", "addr", "show", "dev", BR_PHY], ns=slot.ns).stdout
            assert f"{host.tunnel_ip}/16" in addrs
        # slot b's underlay veth is not a member of the underlay bridge.
        ul = run(["ip", "-o", "link", "show", "dev", f"{host.name}b"], ns=state.underlay_ns)
        assert "master" not in ul.stdout
    # Static flows are on slot a: the VMs reach each other through it as without slots.
    a, b_vm = state.vms
    _wait_reaches(lab, a, b_vm, " through slot a")


def test_the_host_nic_feeds_both_slots_and_both_answer_for_the_tunnel_ip(
    lab_factory: LabFactory,
) -> None:
    lab, state = _up(lab_factory, vms_per_host=0, static_flows=False)
    h1, h2 = state.hosts
    assert h1.standby is not None
    _wait_tunnel_ip_answers(lab, h2, h1)
    before = {s: link_stats(slot.ns, "eth0") for s, slot in h1.slots().items()}
    count = 30
    received, dups = _ping_tunnel_ip(lab, h2, h1, count)
    after = {s: link_stats(slot.ns, "eth0") for s, slot in h1.slots().items()}
    # Every request reached both slots (the mirror), and both replied through the
    # host's one underlay port (slot b's via the redirect): one copy each, as duplicates.
    assert received == count and dups >= count - 2, (received, dups)
    for s in ("a", "b"):
        assert after[s]["rx"] - before[s]["rx"] >= count, (s, before, after)
        assert after[s]["tx"] - before[s]["tx"] >= count, (s, before, after)


def _wait_new_vswitchd(slot: HostState, old: int, what: str) -> None:
    """Until a new vswitchd runs and the supervisor has logged its restart (it does once
    br-phy has its tunnel IP again)."""
    wait_for(
        lambda: (
            supervise.vswitchd_pid(slot.dir) not in (None, old)
            and any(e["old_pid"] == old for e in slots.restarts(slot))
        ),
        timeout=RESTART_BOUND,
        what=what,
    )


def test_the_supervisor_restarts_a_killed_vswitchd(lab_factory: LabFactory) -> None:
    lab, state = _up(lab_factory, vms_per_host=0, static_flows=False)
    h1, h2 = state.hosts
    for name in ("b", "a"):
        slot = h1.slot(name)
        old = supervise.vswitchd_pid(slot.dir)
        assert old is not None and old == slot.pids["ovs-vswitchd"]  # the one the lab started
        assert procs.stop(old, slot.dir, hard=True)  # kill -9, by its PID
        killed = time.monotonic()
        _wait_new_vswitchd(slot, old, f"the supervisor to restart slot {name}'s vswitchd")
        took = time.monotonic() - killed
        events = slots.restarts(slot)
        assert events and events[-1]["old_pid"] == old, events
        assert events[-1]["pid"] == supervise.vswitchd_pid(slot.dir)
        assert "restart 1/" in Path(slot.path(supervise.LOG_FILE)).read_text()
        assert took < RESTART_BOUND
        # Restarted with the slot's bridges, the slot link at its number, the tunnel IP.
        assert _ofports(slot)[SLOT_LINK] == 65000
        _wait_tunnel_ip_answers(lab, h2, h1)
    status = lab.status()
    entry = next(h for h in status["hosts"] if h["name"] == "h1")  # type: ignore[attr-defined]
    assert entry["supervisor_restarts"] == {"a": 1, "b": 1}
    assert all(entry["daemons"].values()) and all(entry["standby"]["daemons"].values())


def test_lab_down_stops_the_supervisors_first_and_leaves_nothing(
    lab_factory: LabFactory,
) -> None:
    lab, state = _up(lab_factory, hosts=1, vms_per_host=1)
    supervisors = [s.pids["supervise"] for s in state.hosts[0].slots().values()]
    done = lab.down()
    assert done[:2] == [f"stopped supervisor pid {p}" for p in sorted(supervisors)]
    assert leftovers(state.name, lab.dir) == []


def test_upgrade_ovs_says_what_is_not_prepared_and_moves_nothing(
    lab_factory: LabFactory,
) -> None:
    lab, _state = _up(lab_factory, hosts=1, vms_per_host=1)
    with pytest.raises(LabError, match=r"slots\.json does not exist after 1 s") as err:
        slotupgrade.upgrade_ovs(lab, "h1", timeout=1)
    assert "\n" not in str(err.value)
    assert [vm.slot for vm in lab.state().vms] == ["a"]


def test_restart_ovs_and_reboot_of_a_host_with_twin_slots(lab_factory: LabFactory) -> None:
    lab, state = _up(lab_factory, vms_per_host=1)
    h1, h2 = state.hosts
    assert h1.standby is not None
    # The lab's own restart of slot a: under the supervisor's hold, so no second start.
    old = supervise.vswitchd_pid(h1.dir)
    lab.restart_ovs("h1")
    new = supervise.vswitchd_pid(h1.dir)
    assert new not in (None, old) and lab.state().host("h1").pids["ovs-vswitchd"] == new
    time.sleep(0.5)
    assert slots.restarts(h1) == [] and supervise.vswitchd_pid(h1.dir) == new
    assert not Path(supervise.hold_path(h1.dir)).exists()
    # A power loss takes both slots and their supervisors; boot brings all of it back.
    before = {s: slot.pids["supervise"] for s, slot in h1.slots().items()}
    lab.reboot("h1", agent=False)
    after = lab.state().host("h1")
    for name, slot in after.slots().items():
        assert not procs.alive(before[name])
        for daemon in ("ovsdb-server", "ovs-vswitchd", "supervise"):
            assert procs.is_ours(slot.pids[daemon], slot.dir), (name, daemon)
        assert _ofports(slot)[SLOT_LINK] == 65000
    assert [vm.slot for vm in lab.state().vms] == ["a", "a"]
    _wait_tunnel_ip_answers(lab, h2, after)
