"""Per-host lab plumbing: OVS boot, VM NICs and VIF plugging, power loss and restarts."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flowkeeper.lab import hypervisor, ovsproc, procs, services
from flowkeeper.lab.plan import VM_MTU
from flowkeeper.lab.run import run
from flowkeeper.lab.state import HostState, LabState, VmState
from flowkeeper.lab.supervise import hold, vswitchd_pid
from flowkeeper.naming import BR_INT, BR_PHY, BR_TUN, PATCH_INT, PATCH_TUN
from flowkeeper.ovs.ovsdb import Ovsdb

BRIDGES = [BR_PHY, BR_INT, BR_TUN]


def start_ovs(host: HostState, *, flow_restore_wait: bool = False) -> float:
    """Start the host's ovsdb-server and ovs-vswitchd; returns the time vswitchd started.

    With flow_restore_wait, other_config:flow-restore-wait=true is set first, as ovs-ctl
    does when it restarts OVS with saved flows: vswitchd then waits for the flows.
    """
    host.pids["ovsdb-server"] = ovsproc.start_ovsdb(host)
    if flow_restore_wait:
        ovsproc.vsctl(
            host, "--no-wait", "set", "Open_vSwitch", ".", "other_config:flow-restore-wait=true"
        )
    started = time.time()
    host.pids["ovs-vswitchd"] = ovsproc.start_vswitchd(host)
    return started


def setup_bridges(host: HostState) -> None:
    """Bridges, patch ports and the underlay port: what the host's network config makes."""
    with Ovsdb(f"unix:{host.db_sock}") as db:
        db.ensure_bridge(BR_PHY, datapath_type="netdev", fail_mode="standalone")
        # A NIC keeps its MAC across reboots; br-phy's tap would get a new one each time and
        # peers' tunnel neighbour caches would point at a MAC that no longer exists.
        db.api.db_set(
            "Bridge", BR_PHY, ("other_config", {"hwaddr": underlay_mac(host.index)})
        ).execute(check_error=True)
        db.ensure_bridge(BR_INT, datapath_type="netdev")
        db.ensure_bridge(BR_TUN, datapath_type="netdev")
        db.ensure_port(BR_PHY, "eth0")
        db.ensure_patch_port(BR_INT, PATCH_TUN, PATCH_INT)
        db.ensure_patch_port(BR_TUN, PATCH_INT, PATCH_TUN)
    bring_up_underlay(host)


def underlay_mac(index: int) -> str:
    return f"02:fc:00:00:{(index >> 8) & 255:02x}:{index & 255:02x}"


def bring_up_underlay(host: HostState) -> None:
    """br-phy's tap exists only while vswitchd runs: give it the tunnel IP (again)."""
    with Ovsdb(f"unix:{host.db_sock}") as db:
        db.wait_ofports([PATCH_TUN, PATCH_INT, "eth0", *BRIDGES])
    run(["ip", "addr", "replace", f"{host.tunnel_ip}/16", "dev", BR_PHY], ns=host.ns)
    run(["ip", "link", "set", BR_PHY, "up"], ns=host.ns)
    ovsproc.wait_bridge_sockets(host, BRIDGES)


def make_vm_nic(host: HostState, vm: VmState) -> None:
    """The VM's NIC: a veth whose host end is the tap, configured inside the VM.

    With the steer handover (the host has a hypervisor namespace) the VM's eth0 leads to
    the hypervisor namespace, and there is a tap in each slot (lab/hypervisor.py),
    steered to slot a."""
    if host.hv_ns:
        hypervisor.make_nic(host, vm)
        vm.slot = "a"
    else:
        run(
            ["ip", "link", "add", vm.tap, "type", "veth", "peer", "name", "eth0", "netns", vm.ns],
            ns=host.ns,
        )
    ns = vm.ns
    run(["ip", "link", "set", "eth0", "address", vm.mac, "mtu", str(VM_MTU)], ns=ns)
    run(["ip", "addr", "add", f"{vm.ip}/24", "dev", "eth0"], ns=ns)
    run(["ip", "link", "set", "eth0", "up"], ns=ns)
    # The userspace datapath does not fill in offloaded checksums of veth traffic.
    run(["ethtool", "-K", "eth0", "tx", "off"], ns=ns, check=False)


def plug_vif(host: HostState, vms: Sequence[VmState], *, renumber: bool = False) -> None:
    """Plug taps into br-int as Nova/os-vif does (iface-id, attached-mac), in this order.

    With renumber (a re-plug after a reboot), each port is replaced in ONE transaction, so
    OVSDB never shows the VIF missing, and asks for a new ofport (ofport_request): the
    ofports differ from before the reboot, as they may on a real host.
    """
    base = _next_ofport_base(host) if renumber else 0
    for i, vm in enumerate(vms):
        run(["ip", "link", "set", vm.tap, "up"], ns=host.ns)
        argv = ["--", "--if-exists", "del-port", BR_INT, vm.tap] if renumber else []
        argv += ["--", *add_vif_args(vm)]
        if renumber:
            argv.append(f"ofport_request={base + i}")
        ovsproc.vsctl(host, *argv)
    with Ovsdb(f"unix:{host.db_sock}") as db:
        db.wait_ofports([vm.tap for vm in vms])


def add_vif_args(vm: VmState) -> list[str]:
    """ovs-vsctl arguments adding the VM's tap to br-int as Nova/os-vif does."""
    return [
        "--may-exist",
        "add-port",
        BR_INT,
        vm.tap,
        "--",
        "set",
        "Interface",
        vm.tap,
        f"external_ids:iface-id={vm.iface_id}",
        f"external_ids:attached-mac={vm.mac}",
        "external_ids:iface-status=active",
        f"external_ids:vm-id={vm.name}",
    ]


def _next_ofport_base(host: HostState) -> int:
    """100, 200, 300, ... 900, 100: a range the host's taps did not use last time."""
    path = Path(host.dir) / "ofport-base"
    try:
        last = int(path.read_text())
    except (OSError, ValueError):
        last = 0
    base = last % 900 + 100
    path.write_text(str(base))
    return base


@dataclass
class RebootTimes:
    ovs_started: float  # unix time ovs-vswitchd was started again
    vifs_plugged: float  # unix time the last VIF was re-plugged
    agent_started: float | None


def power_loss(state: LabState, host: HostState) -> None:
    """kill -9 the host's agent and OVS daemons; its VMs' NICs vanish with them.

    With twin slots, both slots' daemons, and first their supervisors (or one would start
    a vswitchd on a host that is off)."""
    for slot in host.slots().values():
        services.stop_supervisor(slot, hard=True)
    for slot in host.slots().values():
        for key in ("agent", "ovs-vswitchd", "ovsdb-server"):
            pid = slot.pids.pop(key, None)
            if pid:
                procs.stop(pid, slot.dir, hard=True)
        ovsproc.stop_daemons(slot, hard=True)
    for vm in state.vms:
        if vm.host == host.name:
            if host.hv_ns:  # steered: a tap in each slot and the hypervisor's wires
                hypervisor.remove_nic(host, vm)
            else:
                run(["ip", "link", "del", vm.tap], ns=state.vif_netns(vm), check=False)
            run(["ip", "link", "del", "eth0"], ns=vm.ns, check=False)
    state.save()


def reboot(
    state: LabState, host: HostState, *, agent: bool = True, seed: int | None = None
) -> RebootTimes:
    """Power loss, then boot: OVS from its conf.db, VIFs re-plugged in a new order, agent."""
    power_loss(state, host)
    return boot(state, host, agent=agent, seed=seed)


def boot(
    state: LabState, host: HostState, *, agent: bool = True, seed: int | None = None
) -> RebootTimes:
    """Boot a powered-off host: OVS from its conf.db, VIFs re-plugged in a new order, agent.

    With twin slots both slots boot (slot a first) with their supervisors, and every VM's
    NIC comes back in slot a (with the steer handover: a tap in each slot again, the NIC
    steered to slot a)."""
    started = start_ovs(host)
    state.save()
    bring_up_underlay(host)
    if host.standby is not None:
        start_ovs(host.standby)
        state.save()
        bring_up_underlay(host.standby)
        for name, slot in host.slots().items():
            services.start_supervisor(state, slot, name)
    agent_at = None
    if agent and state.server_url:
        # As at boot: the agent's service starts with OVS, before the VMs come back.
        agent_at = time.time()
        services.start_agent(state, host)
    vms = [vm for vm in state.vms if vm.host == host.name]
    random.Random(seed).shuffle(vms)  # noqa: S311 - an order, not a secret
    for vm in vms:
        vm.slot = "a"
        make_vm_nic(host, vm)
    plug_vif(host, vms, renumber=True)
    return RebootTimes(started, time.time(), agent_at)


def restart_agent(state: LabState, host: HostState, *, hard: bool = False) -> None:
    services.stop_agent(host, hard=hard)
    services.start_agent(state, host)


@dataclass
class OvsRestartTimes:
    stopped: float  # unix time the old ovs-vswitchd was told to stop
    started: float  # unix time the new one was started
    ready: float  # bridges and underlay up again


def restart_ovs(
    state: LabState, host: HostState, *, hard: bool = False, flow_restore_wait: bool = True
) -> OvsRestartTimes:
    """Restart (or upgrade: the same binary here) the host's ovs-vswitchd under traffic.

    ovsdb-server and the VMs stay up; VIF taps keep their ofports (OVSDB keeps them).
    With flow_restore_wait, as `ovs-ctl restart` does: save every bridge's flows, set
    other_config:flow-restore-wait=true, start the new vswitchd (it forwards nothing
    meanwhile), put the saved flows back and clear the key. Without it, the new vswitchd
    starts with empty tables and the agent puts its flows back from its snapshot.
    """
    saved = ovsproc.save_flows(host) if flow_restore_wait else {}
    if flow_restore_wait:
        ovsproc.flow_restore_wait(host)
    # With twin slots the vswitchd is supervised: the supervisor leaves this one to us.
    with hold(host.dir):
        stopped = time.time()
        for pid in {host.pids.pop("ovs-vswitchd", None), vswitchd_pid(host.dir)} - {None}:
            procs.stop(pid, host.dir, hard=hard)  # type: ignore[arg-type]
        started = time.time()
        host.pids["ovs-vswitchd"] = ovsproc.start_vswitchd(host)
        state.save()
        bring_up_underlay(host)
    if flow_restore_wait:
        ovsproc.restore_flows(host, saved)
        ovsproc.flow_restore_complete(host)
    return OvsRestartTimes(stopped, started, time.time())
