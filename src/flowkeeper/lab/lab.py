"""The lab: simulated hosts (namespaces with their own OVS), VMs, an underlay; up and down."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flowkeeper.client import Client
from flowkeeper.flows.flowset import FlowSet
from flowkeeper.lab import hostops, hypervisor, ovsproc, procs, services, slots
from flowkeeper.lab.etcdcluster import EtcdCluster, EtcdError
from flowkeeper.lab.plan import plan_hosts, plan_vms
from flowkeeper.lab.probe import ProbeResult
from flowkeeper.lab.run import LabError, add_netns, del_netns, list_netns, run
from flowkeeper.lab.state import HostState, LabState, VmState
from flowkeeper.lab.staticflows import static_flows, tunnel_peers
from flowkeeper.lab.tls import make_tls
from flowkeeper.naming import BR_INT, BR_TUN, SLOT_LINK, tunnel_port_name
from flowkeeper.ovs.ofctl import OfctlBridge
from flowkeeper.ovs.ovsdb import Ovsdb

DEFAULT_LAB_DIR = "/var/tmp/flowkeeper-lab"
UNDERLAY_BRIDGE = "ul"
MAX_HOSTS = 64
MAX_VMS_PER_HOST = 32
MAX_SERVERS = 5
ETCD_MEMBERS = 3

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
    static_flows: bool = False  # True: fixed flows, no server and no agents
    agents: bool = True
    l2pop: bool = True
    network_type: str = "vxlan"  # vxlan, gre, or mixed (odd networks vxlan, even gre)
    virtual_hosts: int = 0  # control-plane-only hosts, bound by simulated agents
    virtual_ports: int = 0  # ports on them, spread over the lab's networks
    tls: bool = False  # the server speaks HTTPS with a CA made for the lab
    store: str = "sqlite"  # the servers' store: the lab's SQLite file, or etcd
    servers: int = 1  # flowkeeper servers on that one store
    watch_log: bool = False  # agents run with --watch-log HOSTDIR/watch.ndjson
    # Every agent's --firewall. The lab's default is noop (the agent's is openvswitch): the
    # lab tests and benchmarks made before security groups measure the L2 pipeline, and
    # the firewall's own tests and bench ask for it.
    firewall: str = "noop"
    # Twin switch slots: every host also gets slot b (its own OVS in NAME-hN-b, the NIC
    # mirrored to both, the fk-slot link), and each slot's vswitchd runs supervised.
    standby: bool = False
    # With standby, how a VM's NIC changes slot: "netns" (its tap moves between the slots'
    # namespaces) or "steer" (a tap in each slot, joined to the VM in a hypervisor
    # namespace NAME-hN-hv that steers the NIC to one of them; lab/hypervisor.py).
    vif_handover: str = "netns"


def validate(opts: UpOptions) -> None:
    if not 1 <= opts.hosts <= MAX_HOSTS:
        raise LabError(f"--hosts must be 1..{MAX_HOSTS}, got {opts.hosts}")
    if not 0 <= opts.vms_per_host <= MAX_VMS_PER_HOST:
        raise LabError(f"--vms-per-host must be 0..{MAX_VMS_PER_HOST}, got {opts.vms_per_host}")
    if opts.network_type not in ("vxlan", "gre", "mixed"):
        raise LabError(f"--network-type must be vxlan, gre or mixed, got {opts.network_type!r}")
    if not 0 <= opts.virtual_hosts <= 2000 or not 0 <= opts.virtual_ports <= 20000:
        raise LabError("--virtual-hosts must be 0..2000 and --virtual-ports 0..20000")
    if opts.virtual_ports and not opts.virtual_hosts:
        raise LabError("--virtual-ports needs --virtual-hosts")
    if not 1 <= opts.networks <= 200:
        raise LabError(f"--networks must be 1..200, got {opts.networks}")
    if opts.store not in ("sqlite", "etcd"):
        raise LabError(f"--store must be sqlite or etcd, got {opts.store!r}")
    if not 1 <= opts.servers <= MAX_SERVERS:
        raise LabError(f"--servers must be 1..{MAX_SERVERS}, got {opts.servers}")
    if (opts.store != "sqlite" or opts.servers != 1) and (opts.static_flows or not opts.agents):
        raise LabError("--store and --servers need the control plane (--flows agents)")
    if opts.firewall not in ("openvswitch", "noop"):
        raise LabError(f"--firewall must be openvswitch or noop, got {opts.firewall!r}")
    if opts.vif_handover not in hypervisor.HANDOVERS:
        raise LabError(f"--vif-handover must be netns or steer, got {opts.vif_handover!r}")
    if opts.vif_handover != "netns" and not opts.standby:
        raise LabError("--vif-handover steer needs --standby (twin switch slots)")
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
        state = LabState(
            name=opts.name,
            dir=str(self.dir),
            underlay_ns=f"{opts.name}-ul",
            l2pop=opts.l2pop,
            watch_log=opts.watch_log,
            firewall=opts.firewall,
            vif_handover=opts.vif_handover if opts.standby else "netns",
        )
        state.save()
        control = opts.agents and not opts.static_flows
        try:
            self._make_underlay(state)
            for plan in plan_hosts(opts.hosts):
                self.make_host(state, plan.name, plan.index, plan.tunnel_ip)
                if opts.standby:
                    self.make_standby(state, state.host(plan.name))
            if control:
                if opts.tls:
                    state.ca = str(make_tls(self.dir / "tls").ca)
                    state.save()
                if opts.store == "etcd":
                    self._make_etcd(state)
                for index in range(1, opts.servers + 1):
                    if index == 2:
                        self._make_tokens(state, opts)
                    self.progress(
                        f"server {index}: starting on 127.0.0.1"
                        f"{' (TLS)' if opts.tls else ''}, store {opts.store}"
                    )
                    services.start_server(state, index)
                self._make_networks(state, opts)
                for host in state.hosts:
                    services.start_agent(state, host)
                self.progress(f"agents: started on {len(state.hosts)} hosts")
            vms = plan_vms(opts.name, plan_hosts(opts.hosts), opts.vms_per_host, opts.networks)
            for vm in vms:
                vmstate = VmState.from_plan(vm, f"{opts.name}-{vm.name}")
                if control:
                    vmstate = self._create_port(state, vmstate)
                self._make_vm(state, vmstate)
            if opts.static_flows:
                self.install_static_flows(state)
            if control and opts.virtual_hosts:
                self._make_virtual(state, opts)
            if control:
                self.wait_ports_active(state)
        except BaseException:
            kept = self.keep_logs()
            self.progress(f"lab up failed; its logs are in {kept}; cleaning up")
            # Only what it recorded: a name clash means another lab's NAME-* namespaces.
            self.down(sweep=False)
            raise
        return state

    def keep_logs(self) -> Path:
        """A failed `lab up` goes down again: its logs first go to LABDIR.failed/ (also for a
        test whose lab goes down after a failure)."""
        keep = self.dir.with_name(self.dir.name + ".failed")
        shutil.rmtree(keep, ignore_errors=True)
        for log in self.dir.glob("**/*.log"):
            target = keep / log.relative_to(self.dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copy2(log, target)
        return keep

    def _make_etcd(self, state: LabState) -> None:
        self.progress(f"etcd: {ETCD_MEMBERS} members on 127.0.0.1 in {self.dir / 'etcd'}")
        cluster = EtcdCluster.create(self.dir / "etcd", ETCD_MEMBERS)
        state.store = "etcd"
        state.store_url = cluster.url
        state.save()
        cluster.start_all()

    def etcd(self) -> EtcdCluster:
        """The lab's etcd cluster (LABDIR/etcd)."""
        if self.state().store != "etcd":
            raise LabError("this lab's store is SQLite: no etcd (lab up --store etcd)")
        return EtcdCluster.load(self.dir / "etcd")

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

    def make_host(self, state: LabState, name: str, index: int, tunnel_ip: str) -> None:
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
        hostops.start_ovs(host)
        state.save()
        ul = state.underlay_ns
        run(
            ["ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", host.ns],
            ns=ul,
        )
        run(["ip", "link", "set", name, "master", UNDERLAY_BRIDGE, "up"], ns=ul)
        run(["ip", "link", "set", "eth0", "up"], ns=host.ns)
        hostops.setup_bridges(host)

    def make_standby(self, state: LabState, host: HostState) -> HostState:
        """Slot b of `host` beside its slot a, the NIC mirror, the slot link, and a
        supervisor for each slot's vswitchd (see slots.py)."""
        standby = slots.standby_of(state, host)
        self.progress(f"host {host.name}: slot b in {standby.ns}, NIC mirror, {SLOT_LINK}")
        host.standby = standby
        self._add_ns(state, standby.ns)
        Path(standby.dir).mkdir(parents=True, exist_ok=True)
        hostops.start_ovs(standby)
        state.save()
        slots.make_nic_mirror(state, host, standby)
        hostops.setup_bridges(standby)
        slots.make_slot_link(host, standby)
        for name, slot in host.slots().items():
            services.start_supervisor(state, slot, name)
        if state.vif_handover == "steer":
            hv = hypervisor.hv_name(state.name, host)
            self.progress(f"host {host.name}: hypervisor namespace {hv} (VM NICs in both slots)")
            host.hv_ns = hv
            self._add_ns(state, hv)
            hypervisor.make_hv(hv)
        return standby

    def _make_vm(self, state: LabState, vm: VmState) -> None:
        self.progress(f"vm {vm.name} on {vm.host}: {vm.ip} {vm.mac}")
        host = state.host(vm.host)
        state.vms.append(vm)
        self._add_ns(state, vm.ns)
        hostops.make_vm_nic(host, vm)
        hostops.plug_vif(host, [vm])

    def client(self, state: LabState) -> Client:
        """A client with the lab's admin token (and CA, with TLS)."""
        return services.admin_client(state)

    def _make_networks(self, state: LabState, opts: UpOptions) -> None:
        client = self.client(state)
        for n in range(1, opts.networks + 1):
            kind = opts.network_type
            if kind == "mixed":
                kind = "vxlan" if n % 2 else "gre"
            net = client.create_network(
                f"net{n}", kind, segmentation_id=1000 + n, cidr=f"198.19.{n}.0/24"
            )
            state.networks[str(n)] = net.id
        state.save()
        self.progress(f"server: {opts.networks} {opts.network_type} networks")

    @staticmethod
    def _make_tokens(state: LabState, opts: UpOptions) -> None:
        """Every host token the lab will use, made through server 1 before the other
        servers start, which read them as they start: no agent's first request meets a
        server that has not re-read the store's tokens yet (each does every second)."""
        from flowkeeper.lab.simhosts import virtual_host_name

        for host in state.hosts:
            services.host_token(state, host)
        if opts.virtual_hosts:
            services.simhost_tokens(
                state, [virtual_host_name(i) for i in range(opts.virtual_hosts)]
            )

    def _make_virtual(self, state: LabState, opts: UpOptions) -> None:
        """Virtual hosts (one simulated-agent process per server) and their ports."""
        from flowkeeper.lab.simhosts import virtual_host_name

        feed = Path(state.dir) / "simhosts.ndjson"
        services.start_simhosts(state, opts.virtual_hosts, feed, spread=True)
        client = self.client(state)
        limit = 60 + opts.virtual_hosts / 10
        deadline = time.monotonic() + limit
        while len(client.list_hosts()) < len(state.hosts) + opts.virtual_hosts:
            if time.monotonic() > deadline:
                raise LabError(f"virtual hosts did not register within {limit:.0f}s")
            time.sleep(0.2)
        nets = [state.networks[k] for k in sorted(state.networks, key=int)]
        # Ports get port security (and their project's default group) only when the
        # agents filter: with --firewall noop they would cost member messages for nothing.
        secured = state.firewall == "openvswitch"
        for i in range(opts.virtual_ports):
            net = nets[i % len(nets)]
            host = virtual_host_name(i % opts.virtual_hosts)
            mac = f"fa:16:3e:f0:{(i >> 8) & 255:02x}:{i & 255:02x}"
            client.create_port(net, host, mac, name=f"vport{i}", port_security_enabled=secured)
        self.progress(f"virtual: {opts.virtual_hosts} hosts, {opts.virtual_ports} ports")

    def _create_port(self, state: LabState, vm: VmState) -> VmState:
        port = self.client(state).create_port(
            state.networks[str(vm.network)],
            vm.host,
            vm.mac,
            [vm.ip],
            name=vm.name,
            port_security_enabled=state.firewall == "openvswitch",
        )
        vm.iface_id = port.id
        vm.tap = f"tap{port.id[:11]}"
        return vm

    def add_vm(
        self, name: str, host: str, network_id: str, ip: str, mac: str, *, wait: bool = True
    ) -> VmState:
        """A new VM on a running lab: port through the API, then plugged into br-int."""
        state = self.state()
        if any(v.name == name for v in state.vms):
            raise LabError(f"a VM named {name!r} exists already")
        port = self.client(state).create_port(
            network_id,
            host,
            mac,
            [ip],
            name=name,
            port_security_enabled=state.firewall == "openvswitch",
        )
        vm = VmState(
            name=name,
            host=host,
            ns=f"{state.name}-{name}",
            network=0,
            mac=mac,
            ip=ip,
            iface_id=port.id,
            tap=f"tap{port.id[:11]}",
        )
        self._make_vm(state, vm)
        state.save()
        if wait:
            self.wait_ports_active(state)
        return vm

    def delete_vm(self, name: str) -> None:
        """Unplug the VM, delete its namespace and its port in the control plane."""
        state = self.state()
        vm = state.vm(name)
        # With twin slots the VIF has a row in both slots' OVSDB (the agent copies it).
        host = state.host(vm.host)
        for slot in host.slots().values():
            with Ovsdb(f"unix:{slot.db_sock}") as db:
                db.delete_port(BR_INT, vm.tap)
        if host.hv_ns:  # steered: a tap in each slot, not only the VM's veth peer
            hypervisor.remove_nic(host, vm)
        del_netns(vm.ns)
        if state.server_url:
            self.client(state).delete_port(vm.iface_id)
        state.vms = [v for v in state.vms if v.name != name]
        state.namespaces = [n for n in state.namespaces if n != vm.ns]
        state.save()

    def wait_ports_active(self, state: LabState, timeout: float = 60.0) -> None:
        """Wait until every VM's port is ACTIVE: its host's agent has bound it."""
        client = self.client(state)
        deadline = time.monotonic() + timeout
        want = {vm.iface_id for vm in state.vms}
        while True:
            active = {p.id for p in client.list_ports() if p.status == "ACTIVE"}
            if want <= active:
                self.progress(f"agents: all {len(want)} VM ports ACTIVE")
                return
            if time.monotonic() > deadline:
                missing = sorted(vm.name for vm in state.vms if vm.iface_id not in active)
                raise LabError(f"ports not ACTIVE after {timeout:.0f}s: {', '.join(missing)}")
            time.sleep(0.1)

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
    def down(self, *, sweep: bool = True) -> list[str]:
        """Remove everything the lab made, even after a crash. Safe to run twice.

        With sweep, also every namespace named NAME-* (one a crash left unrecorded); a
        failed `lab up` goes down without it: it recorded each namespace before making
        it, and one it found already there belongs to another lab of the same name."""
        done: list[str] = []
        try:
            state = LabState.load(self.dir)
        except LabError:
            state = None
        marker = str(self.dir)
        pids: set[int] = set()
        # Supervisors first: one still running would start the vswitchd stopped below.
        supervisors = set(procs.pids_naming(marker, also="flowkeeper.lab.supervise"))
        if state is not None:
            pids |= set(state.pids.values())
            for host in state.hosts:
                for slot in host.slots().values():
                    pids |= set(slot.pids.values())
                    supervisors |= {p for k, p in slot.pids.items() if k == services.SUPERVISE}
        for sup in sorted(supervisors):
            if procs.stop(sup, marker):
                done.append(f"stopped supervisor pid {sup}")
        pids -= supervisors
        etcd = self.dir / "etcd"
        if (etcd / "cluster.json").exists():
            with contextlib.suppress(EtcdError):
                cluster = EtcdCluster.load(etcd)
                pids |= {m.pid for m in cluster.members if m.pid}
        for pidfile in self.dir.glob("**/*.pid") if self.dir.exists() else []:
            pid = procs.read_pidfile(pidfile)
            if pid:
                pids.add(pid)
        # Also any process whose command line names this lab's directory: a crash between
        # starting a process and recording its PID must not leave it running.
        pids |= set(procs.pids_naming(marker))
        for pid in sorted(pids):
            if procs.stop(pid, marker):
                done.append(f"stopped pid {pid}")
        # Once more: a vswitchd a supervisor was starting as it was stopped.
        for pid in procs.pids_naming(marker):
            if procs.stop(pid, marker):
                done.append(f"stopped pid {pid}")
        namespaces = set(state.namespaces) if state else set()
        name = state.name if state else None
        if name and sweep:
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
            self.probe_argv(a, b.ip, count, interval, timeline=count <= 10_000),
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

    def reboot(self, host_name: str, *, agent: bool = True) -> hostops.RebootTimes:
        """Simulated power loss and boot of one host (see hostops.reboot)."""
        state = self.state()
        times = hostops.reboot(state, state.host(host_name), agent=agent)
        state.save()
        return times

    def power_off(self, host_name: str) -> None:
        state = self.state()
        hostops.power_loss(state, state.host(host_name))
        state.save()

    def boot(self, host_name: str, *, agent: bool = True) -> hostops.RebootTimes:
        state = self.state()
        times = hostops.boot(state, state.host(host_name), agent=agent)
        state.save()
        return times

    def restart_ovs(
        self, host_name: str, *, hard: bool = False, flow_restore_wait: bool = True
    ) -> hostops.OvsRestartTimes:
        state = self.state()
        times = hostops.restart_ovs(
            state, state.host(host_name), hard=hard, flow_restore_wait=flow_restore_wait
        )
        state.save()
        return times

    def conntrack(self, host_name: str, zone: int | None = None) -> list[str]:
        """The host's userspace conntrack entries (one zone's, or all)."""
        return ovsproc.conntrack(self.state().host(host_name), zone)

    def restart_agent(self, host_name: str, *, hard: bool = False) -> None:
        state = self.state()
        hostops.restart_agent(state, state.host(host_name), hard=hard)
        state.save()

    def stop_server(self, index: int = 1, *, hard: bool = False) -> bool:
        """Stop server `index` (SIGTERM, kill -9 with hard). False if it was not running."""
        state = self.state()
        return services.stop_server(state, state.server_index(index), hard=hard)

    def start_server(self, index: int = 1) -> str:
        """Start server `index` again, on its port, with the lab's store."""
        state = self.state()
        state.server_index(index)
        if services.server_running(state, index):
            return state.servers[index - 1]
        return services.start_server(state, index)

    def stop_etcd(self, index: int, *, hard: bool = False) -> bool:
        return self.etcd().stop(index, hard=hard)

    def start_etcd(self, index: int) -> None:
        """Start member `index` again; wait for it to serve when it makes a quorum."""
        cluster = self.etcd()
        cluster.member(index)
        up = set(cluster.running()) | {index}
        cluster.start(index, wait=len(up) > len(cluster.members) // 2)

    def run_in(
        self, target: str, argv: list[str], *, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside a VM's or host's namespace."""
        return run(argv, ns=self.namespace_of(target), check=check, timeout=timeout)

    @staticmethod
    def bridge_ports(host: HostState, bridge: str) -> list[str]:
        with Ovsdb(f"unix:{host.db_sock}") as db:
            return db.bridge_ports(bridge)

    def namespace_of(self, target: str) -> str:
        state = self.state()
        for vm in state.vms:
            if vm.name == target:
                return vm.ns
        for host in state.hosts:
            if host.name == target:
                return host.ns
            if host.standby is not None and target == f"{host.name}-b":
                return host.standby.ns  # slot b of the host (lab up --standby)
            if host.hv_ns and target == f"{host.name}-hv":
                return host.hv_ns  # its hypervisor (lab up --vif-handover steer)
        raise LabError(f"no VM or host named {target!r} in the lab")

    def status(self) -> dict[str, object]:
        state = self.state()
        hosts = []
        for host in state.hosts:
            slots.refresh_pids(host)  # a supervisor may have started a new vswitchd
            entry: dict[str, object] = {
                "name": host.name,
                "namespace": host.ns,
                "tunnel_ip": host.tunnel_ip,
                "daemons": _daemons(host),
            }
            if host.hv_ns:
                entry["hypervisor"] = host.hv_ns
            if host.standby is not None:
                entry["standby"] = {
                    "namespace": host.standby.ns,
                    "dir": host.standby.dir,
                    "daemons": _daemons(host.standby),
                }
                entry["supervisor_restarts"] = {
                    name: len(slots.restarts(slot)) for name, slot in host.slots().items()
                }
            hosts.append(entry)
        vms = [
            {
                "name": v.name,
                "host": v.host,
                "network": v.network,
                "ip": v.ip,
                "mac": v.mac,
                "iface_id": v.iface_id,
                "tap": v.tap,
                "slot": v.slot,
            }
            for v in state.vms
        ]
        servers = [
            {
                "index": i,
                "url": url,
                "pid": state.pids.get(services.server_key(i), 0),
                "up": services.server_running(state, i),
            }
            for i, url in enumerate(state.servers, start=1)
        ]
        out: dict[str, object] = {
            "lab": state.name,
            "dir": state.dir,
            "store": state.store,
            "store_url": state.store_url,
            "firewall": state.firewall,
            "vif_handover": state.vif_handover,
            "servers": servers,
            "hosts": hosts,
            "vms": vms,
        }
        if state.store == "etcd":
            cluster = self.etcd()
            running = cluster.running()
            out["etcd"] = [
                {
                    "index": i,
                    "name": m.name,
                    "endpoint": m.endpoint,
                    "pid": m.pid,
                    "up": i in running,
                }
                for i, m in enumerate(cluster.members, start=1)
            ]
        return out


def _daemons(host: HostState) -> dict[str, bool]:
    """Each process the lab started for a host (or slot): running or not."""
    return {d: bool(p and procs.is_ours(p, host.dir)) for d, p in host.pids.items()}
