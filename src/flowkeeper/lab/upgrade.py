"""Hot OVS upgrade, VM by VM: a new switch beside the old one, VIFs moved one at a time.

This is the DiDi design in the lab. A restart of the userspace datapath stops every VM
for as long as the new ovs-vswitchd takes to start and get its flows (about a second at
20,000 flows); moving VMs one at a time to an already running, already synced switch
costs each VM only its own cut-over.

The new switch is a second OVS instance (its own ovsdb-server and ovs-vswitchd, the new
binary in a real upgrade) in a sibling "slot" of the host, with its own agent and its own
tunnel IP (DiDi's second VF). Its agent runs with `--standby-for OLD`: the server gives it
the old slot's networks, so tunnels, flood, ARP and FDB flows are all in place before the
first VM moves, and a cut-over changes only that VM's few flows. Per VM:

1. the VIF's host end moves from the old switch to the new one (a netns move of the veth
   here; DiDi switches QEMU's vhost-user connection); every VIF was described in the new
   switch's OVSDB before the first cut, so it opens the device the moment it appears;
2. the port's binding moves to the new slot through the API, so the new agent installs
   its local flows and every peer points its tunnel flows at the new tunnel IP;
3. the VIF is removed from the old switch's OVSDB.

When every VM has moved, the old slot's agent and OVS stop and its namespace goes. The
slots alternate: `hN` upgrades to `hNb`, `hNb` back to `hN`.

This is the upgrade of a lab made without --standby. With --standby (twin switch slots:
both slots always up, one agent for both, no server involved in a cut-over), see
flowkeeper.lab.slotupgrade.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flowkeeper.errors import FlowkeeperError
from flowkeeper.lab import hostops, ovsproc, procs, services
from flowkeeper.lab.plan import tunnel_ip
from flowkeeper.lab.run import LabError, del_netns, run
from flowkeeper.lab.state import HostState, LabState, VmState
from flowkeeper.naming import BR_INT

if TYPE_CHECKING:
    from flowkeeper.lab.lab import Lab

SLOT_OFFSET = 100  # slot b of host i has index i + 100: its own tunnel IP and underlay MAC


@dataclass
class VmMove:
    vm: str
    started: float  # unix time the cut-over began
    moved_ms: float  # the VIF's device is in the new switch's namespace, up
    bound_ms: float  # the control plane has the new binding


@dataclass
class UpgradeReport:
    old: str
    new: str
    ready_s: float  # new slot up and its agent in sync, before any VM moved
    moves: list[VmMove] = field(default_factory=list)
    total_s: float = 0.0  # the cut-over: first VM moved to old slot retired


def slot_peer(host: HostState) -> tuple[str, int]:
    """The other slot of a host: (name, index)."""
    if host.index > SLOT_OFFSET:
        return host.name.removesuffix("b"), host.index - SLOT_OFFSET
    return f"{host.name}b", host.index + SLOT_OFFSET


def hot_upgrade(
    lab: Lab,
    host_name: str,
    *,
    settle: float = 0.2,
    progress: Callable[[str], None] = lambda _m: None,
) -> UpgradeReport:
    """Move every VM of `host_name` to a new OVS slot, one at a time; retire the old slot."""
    report = prepare(lab, host_name, progress=progress)
    cut_over(lab, report, settle=settle, progress=progress)
    return report


def prepare(
    lab: Lab, host_name: str, *, progress: Callable[[str], None] = lambda _m: None
) -> UpgradeReport:
    """Start the new slot's OVS and agent beside the old one; return once it is in sync."""
    state = lab.state()
    if not state.server_url:
        raise LabError("a hot upgrade needs the lab's server and agents (lab up without --static)")
    old = state.host(host_name)
    if old.standby is not None:
        raise LabError(
            f"{host_name} has twin switch slots (lab up --standby): its upgrade moves VMs "
            "between them (flowkeeper.lab.slotupgrade)"
        )
    new_name, new_index = slot_peer(old)
    if any(h.name == new_name for h in state.hosts):
        raise LabError(f"slot {new_name} of {host_name} exists already")
    began = time.monotonic()
    progress(f"upgrade {host_name}: starting the new switch in slot {new_name}")
    lab.make_host(state, new_name, new_index, tunnel_ip(new_index))
    new = state.host(new_name)
    new.standby_for = host_name  # its agent holds the old slot's networks before VMs move
    services.start_agent(state, new)
    _wait_in_sync(lab, state, new_name)
    return UpgradeReport(host_name, new_name, time.monotonic() - began)


def cut_over(
    lab: Lab,
    report: UpgradeReport,
    *,
    settle: float = 0.2,
    progress: Callable[[str], None] = lambda _m: None,
) -> None:
    """Move the VMs one at a time (`settle` seconds apart), then retire the old slot."""
    began = time.monotonic()
    state = lab.state()
    old, new = state.host(report.old), state.host(report.new)
    vms = [vm for vm in state.vms if vm.host == old.name]
    # Every VIF is described in the new switch first, as Nova's pre-plug would: the new
    # agent takes note of them all before the first cut, not once per cut.
    for vm in vms:
        _describe_vif(new, vm)
    time.sleep(settle)
    for vm in vms:
        report.moves.append(move_vm(lab, state, vm, old, new))
        progress(f"upgrade {old.name}: {vm.name} moved to {new.name}")
        time.sleep(settle)
    lab.wait_ports_active(state)
    new.standby_for = ""  # the running agent keeps the flag; a restarted one needs none
    retire(state, old)
    progress(f"upgrade {old.name}: old slot stopped; {len(vms)} VMs on {new.name}")
    report.total_s = time.monotonic() - began


def move_vm(lab: Lab, state: LabState, vm: VmState, old: HostState, new: HostState) -> VmMove:
    """One VM's cut-over from the old switch to the new one (see the module docstring).
    Its VIF must be described in the new switch already (see cut_over)."""
    started = time.time()
    t0 = time.monotonic()
    # One netlink request: the device changes namespace and comes up there.
    run(["ip", "-n", old.ns, "link", "set", "dev", vm.tap, "netns", new.ns, "up"])
    moved = time.monotonic()
    # The new agent waits for the port's ofport itself: binding now keeps the (slow, here:
    # process-spawning) ofport check off the cut-over's critical path.
    lab.client(state).bind_port(vm.iface_id, new.name)
    bound = time.monotonic()
    _wait_ofport(new, vm.tap)
    ovsproc.vsctl(old, "--if-exists", "del-port", BR_INT, vm.tap)
    vm.host = new.name
    state.save()
    return VmMove(vm.name, started, (moved - t0) * 1000, (bound - t0) * 1000)


def _describe_vif(host: HostState, vm: VmState) -> None:
    """The VIF's Interface row, as Nova writes it, before the device exists."""
    ovsproc.vsctl(host, "--no-wait", *hostops.add_vif_args(vm))


def _wait_ofport(host: HostState, device: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        out = ovsproc.vsctl(host, "--no-wait", "get", "Interface", device, "ofport").strip()
        if out.lstrip("-").isdigit() and int(out) > 0:
            return
        if time.monotonic() > deadline:
            raise LabError(f"{host.name}: {device} got no ofport within {timeout:.0f}s")
        time.sleep(0.005)


def _wait_in_sync(lab: Lab, state: LabState, host: str, timeout: float = 120.0) -> None:
    client = lab.client(state)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.get_host(host).state == "in-sync":
                return
        except FlowkeeperError:
            pass  # not registered yet
        if time.monotonic() > deadline:
            raise LabError(f"the agent of {host} was not in sync within {timeout:.0f}s")
        time.sleep(0.1)


def retire(state: LabState, host: HostState) -> None:
    """Stop the emptied slot's agent and OVS, delete its namespace; keep its logs."""
    for key in ("agent", "ovs-vswitchd", "ovsdb-server"):
        pid = host.pids.pop(key, None)
        if pid:
            procs.stop(pid, host.dir)
    state.save()
    del_netns(host.ns)
    state.namespaces = [ns for ns in state.namespaces if ns != host.ns]
    state.hosts = [h for h in state.hosts if h.name != host.name]
    state.save()
    retired = Path(state.dir) / "retired" / f"{host.name}-{int(time.time() * 1000)}"
    retired.mkdir(parents=True)
    for log in Path(host.dir).glob("*.log"):
        shutil.move(str(log), retired / log.name)
    shutil.rmtree(host.dir, ignore_errors=True)
