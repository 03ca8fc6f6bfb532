"""The lab: simulated hosts (namespaces with their own OVS), VMs, an underlay; up and down."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flowkeeper.flows.flowset import FlowSet
from flowkeeper.lab import ovsproc, procs
from flowkeeper.lab.plan import VM_MTU, plan_hosts, plan_vms
from flowkeeper.lab.probe import ProbeResult
from flowkeeper.lab.run import LabError, add_netns, del_netns, list_netns, run
from flowkeeper.lab.state import HostState, LabState, VmState
from flowkeeper.lab.staticflows import static_flows, tunnel_peers
from flowkeeper.naming import BR_INT, BR_PHY, BR_TUN, PATCH_INT, PATCH_TUN, tunnel_port_name
from flowkeeper.ovs.ofctl import OfctlBridge
from flowkeeper.ovs.ovsdb import Ovsdb

DEFAULT_LAB_DIR = "/var/tmp/flowkeeper-lab"
UNDERLAY_BRIDGE = "ul"
MAX_HOSTS = 64
MAX_VMS_PER_HOST = 32

Progress = Callable[[str], None]


def default_lab_dir() -> Path:
    return Path(os.environ.get("FLOWKEEPER_LAB_DIR", DEFAULT_LAB_DIR))


def _quiet(_msg: str) -> None:
    pass


@dataclass
class UpOptions:
    hosts: int = 2
    vms_per_host: int = 1
    networks: int = 1
    name: str = "fk"
    static_flows: bool = True


def validate(opts: UpOptions) -> None:
    if not 1 <= opts.hosts <= MAX_HOSTS:
        raise LabError(f"--hosts must be 1..{MAX_HOSTS}, got {opts.hosts}")
    if not 0 <= opts.vms_per_host <= MAX_VMS_PER_HOST:
        raise LabError(f"--vms-per-host must be 0..{MAX_VMS_PER_HOST}, got {opts.vms_per_host}")
    if not 1 <= opts.networks <= 200:
        raise LabError(f"--networks must be 1..200, got {opts.networks}")
    if not opts.name.isalnum() or len(opts.name) > 8:
        raise LabError(f"lab name must be 1-8 letters or digits, got {opts.name!r}")


class Lab:
    """One lab, recorded in DIR/lab.json; every namespace and PID it makes is written there."""

    def __init__(self, lab_dir: Path | None = None, progress: Progress = _quiet) -> None:
        self.dir = (lab_dir or default_lab_dir()).resolve()
        self.progress = progress

    def state(self) -> LabState:
        state = LabState.load(self.dir)
        if state is None:
            raise LabError(f"no lab is up in {self.dir} (run 'flowkeeper lab up')")
        return state

    # --- up -----------------------------------------------------------------
    def up(self, opts: UpOptions) -> LabState:
        validate(opts)
        if LabState.load(self.dir) is not None:
            raise LabError(f"a lab is already up in {self.dir}; run 'flowkeeper lab down' first")
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        state = LabState(name=opts.name, dir=str(self.dir), underlay_ns=f"{opts.name}-ul")
        state.save()
        try:
            self._make_underlay(state)
            for plan in plan_hosts(opts.hosts):
                self._make_host(state, plan.name, plan.index, plan.tunnel_ip)
            for vm in plan_vms(opts.name, plan_hosts(opts.hosts), opts.vms_per_host, opts.networks):
                self._make_vm(state, VmState.from_plan(vm, f"{opts.name}-{vm.name}"))
            if opts.static_flows:
                self.install_static_flows(state)
        except BaseException:
            self.progress("lab up failed; cleaning up")
            self.down()
            raise
        return state

    def _add_ns(self, state: LabState, ns: str) -> None:
        if ns in list_netns():
            raise LabError(
                f"namespace {ns} already exists: another lab named "
                f"{state.name!r} is up; use --name or 'lab down'"
            )
        state.namespaces.append(ns)
        state.save()
        add_netns(ns)

    def _make_underlay(self, state: LabState) -> None:
        self._add_ns(state, state.underlay_ns)
        run(["ip", "link", "add", UNDERLAY_BRIDGE, "type", "bridge"], ns=state.underlay_ns)
        run(["ip", "link", "set", UNDERLAY_BRIDGE, "up"], ns=state.underlay_ns)

    def _make_host(self, state: LabState, name: str, index: int, tunnel_ip: str) -> None:
        self.progress(f"host {name}: namespace, ovsdb-server, ovs-vswitchd, {tunnel_ip}")
        host = HostState(
            name=name,
            index=index,
            ns=f"{state.name}-{name}",
            tunnel_ip=tunnel_ip,
            dir=str(self.dir / "hosts" / name),
        )
        state.hosts.append(host)
        self._add_ns(state, host.ns)
        Path(host.dir).mkdir(parents=True, exist_ok=True)
        host.pids["ovsdb-server"] = ovsproc.start_ovsdb(host)
        state.save()
        host.pids["ovs-vswitchd"] = ovsproc.start_vswitchd(host)
        state.save()
        ul = state.underlay_ns
        run(
            ["ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", host.ns],
            ns=ul,
        )
        run(["ip", "link", "set", name, "master", UNDERLAY_BRIDGE, "up"], ns=ul)
        run(["ip", "link", "set", "eth0", "up"], ns=host.ns)
        with Ovsdb(f"unix:{host.db_sock}") as db:
            db.ensure_bridge(BR_PHY, fail_mode="standalone")
            db.ensure_bridge(BR_INT)
            db.ensure_bridge(BR_TUN)
            db.ensure_port(BR_PHY, "eth0")
            db.ensure_patch_port(BR_INT, PATCH_TUN, PATCH_INT)
            db.ensure_patch_port(BR_TUN, PATCH_INT, PATCH_TUN)
            db.wait_ofports([PATCH_TUN, PATCH_INT, "eth0", BR_PHY, BR_INT, BR_TUN])
        run(["ip", "addr", "add", f"{tunnel_ip}/16", "dev", BR_PHY], ns=host.ns)
        run(["ip", "link", "set", BR_PHY, "up"], ns=host.ns)
        ovsproc.wait_bridge_sockets(host, [BR_INT, BR_TUN, BR_PHY])

    def _make_vm(self, state: LabState, vm: VmState) -> None:
        self.progress(f"vm {vm.name} on {vm.host}: {vm.ip} {vm.mac}")
        host = state.host(vm.host)
        state.vms.append(vm)
        self._add_ns(state, vm.ns)
        run(
            ["ip", "link", "add", vm.tap, "type", "veth", "peer", "name", "eth0", "netns", vm.ns],
            ns=host.ns,
        )
        self.configure_vm_nic(vm)
        self.plug_vif(host, vm)

    @staticmethod
    def configure_vm_nic(vm: VmState) -> None:
        ns = vm.ns
        run(["ip", "link", "set", "eth0", "address", vm.mac, "mtu", str(VM_MTU)], ns=ns)
        run(["ip", "addr", "add", f"{vm.ip}/24", "dev", "eth0"], ns=ns)
        run(["ip", "link", "set", "eth0", "up"], ns=ns)
        # The userspace datapath does not fill in offloaded checksums of veth traffic.
        run(["ethtool", "-K", "eth0", "tx", "off"], ns=ns, check=False)

    @staticmethod
    def plug_vif(host: HostState, vm: VmState) -> None:
        """Plug the VM's tap into br-int the way Nova/os-vif does (iface-id, attached-mac)."""
        run(["ip", "link", "set", vm.tap, "up"], ns=host.ns)
        ids = {
            "iface-id": vm.iface_id,
            "attached-mac": vm.mac,
            "iface-status": "active",
            "vm-id": vm.name,
        }
        with Ovsdb(f"unix:{host.db_sock}") as db:
            db.ensure_port(BR_INT, vm.tap, external_ids=ids)
            db.wait_ofports([vm.tap])

    def install_static_flows(self, state: LabState) -> None:
        """Tunnel ports and fixed VXLAN flows on every host (the lab without agents)."""
        for host in state.hosts:
            peers = tunnel_peers(host, state.hosts, state.vms)
            with Ovsdb(f"unix:{host.db_sock}") as db:
                for ip in peers:
                    db.ensure_tunnel_port(
                        BR_TUN, tunnel_port_name("vxlan", ip), "vxlan", ip, host.tunnel_ip
                    )
                db.wait_ofports([tunnel_port_name("vxlan", ip) for ip in peers])
            flows = FlowSet(static_flows(host, state.hosts, state.vms))
            for bridge in (BR_INT, BR_TUN):
                self.bridge(host, bridge).replace_flows(flows.for_bridge(bridge))
            self.progress(f"host {host.name}: {len(flows)} static flows, {len(peers)} tunnels")

    @staticmethod
    def bridge(host: HostState, name: str) -> OfctlBridge:
        return OfctlBridge(name, host.mgmt(name))

    # --- down ---------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove everything the lab made, even after a crash. Safe to run twice."""
        done: list[str] = []
        try:
            state = LabState.load(self.dir)
        except LabError:
            state = None
        marker = str(self.dir)
        pids: set[int] = set()
        if state is not None:
            pids |= set(state.pids.values())
            for host in state.hosts:
                pids |= set(host.pids.values())
        for pidfile in self.dir.glob("**/*.pid") if self.dir.exists() else []:
            pid = procs.read_pidfile(pidfile)
            if pid:
                pids.add(pid)
        for pid in sorted(pids):
            if procs.stop(pid, marker):
                done.append(f"stopped pid {pid}")
        namespaces = set(state.namespaces) if state else set()
        name = state.name if state else None
        if name:
            namespaces |= {ns for ns in list_netns() if ns.startswith(f"{name}-")}
        for ns in sorted(namespaces):
            if ns in list_netns():
                del_netns(ns)
                done.append(f"deleted namespace {ns}")
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
            done.append(f"removed {self.dir}")
        return done

    # --- use ----------------------------------------------------------------
    def ping(self, src: str, dst: str, count: int = 5, interval: float = 0.2) -> ProbeResult:
        state = self.state()
        a, b = state.vm(src), state.vm(dst)
        proc = run(
            self.probe_argv(a, b.ip, count, interval, timeline=False),
            ns=a.ns,
            timeout=count * interval + 15,
        )
        data = json.loads(proc.stdout)
        data.setdefault("timeline", [])
        return ProbeResult(**data)

    @staticmethod
    def probe_argv(
        vm: VmState, dst_ip: str, count: int, interval: float, timeline: bool = True
    ) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "flowkeeper.lab.probe",
            "--dst",
            dst_ip,
            "--count",
            str(count),
            "--interval",
            str(interval),
        ]
        return argv if timeline else [*argv, "--no-timeline"]

    def namespace_of(self, target: str) -> str:
        state = self.state()
        for vm in state.vms:
            if vm.name == target:
                return vm.ns
        for host in state.hosts:
            if host.name == target:
                return host.ns
        raise LabError(f"no VM or host named {target!r} in the lab")

    def status(self) -> dict[str, object]:
        state = self.state()
        hosts = []
        for host in state.hosts:
            daemons = {d: bool(p and procs.is_ours(p, host.dir)) for d, p in host.pids.items()}
            hosts.append(
                {
                    "name": host.name,
                    "namespace": host.ns,
                    "tunnel_ip": host.tunnel_ip,
                    "daemons": daemons,
                }
            )
        vms = [
            {
                "name": v.name,
                "host": v.host,
                "network": v.network,
                "ip": v.ip,
                "mac": v.mac,
                "iface_id": v.iface_id,
                "tap": v.tap,
            }
            for v in state.vms
        ]
        return {"lab": state.name, "dir": state.dir, "hosts": hosts, "vms": vms}
