"""The lab's record of what it made: namespaces, hosts, VMs and every PID it started."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowkeeper.fsutil import atomic_write
from flowkeeper.lab.plan import VmPlan
from flowkeeper.lab.run import LabError

STATE_FILE = "lab.json"
# Keys an older lab.json may hold that the lab no longer records (dropped on load).
GONE_HOST_KEYS = ("standby_for",)  # a new switch slot of the old (one-slot) hot upgrade


@dataclass
class HostState:
    name: str
    index: int
    ns: str
    tunnel_ip: str
    dir: str
    pids: dict[str, int] = field(default_factory=dict)
    # Twin switch slots (lab up --standby): slot b of this host, a HostState of its own
    # (same name, index and tunnel IP; its own namespace, dir and PIDs). None: one slot.
    standby: HostState | None = None
    # The "steer" VIF handover (lab up --vif-handover steer): the hypervisor namespace
    # where each VM NIC is joined to the active slot's device (lab/hypervisor.py).
    hv_ns: str = ""

    def slot(self, name: str) -> HostState:
        """Slot `name` ("a": this host, "b": its standby) of a host."""
        if name == "a":
            return self
        if name == "b" and self.standby is not None:
            return self.standby
        raise LabError(
            f"host {self.name} has no slot {name!r}"
            + ("" if self.standby else " (the lab was made without --standby)")
        )

    def slots(self) -> dict[str, HostState]:
        """The host's slots by name: {"a": host} or {"a": host, "b": standby}."""
        return {"a": self} if self.standby is None else {"a": self, "b": self.standby}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> HostState:
        raw = dict(raw)
        for key in GONE_HOST_KEYS:
            raw.pop(key, None)
        standby = raw.pop("standby", None)
        return cls(standby=cls.from_dict(standby) if standby else None, **raw)

    def path(self, name: str) -> str:
        return str(Path(self.dir) / name)

    @property
    def db_sock(self) -> str:
        return self.path("run/db.sock")

    def mgmt(self, bridge: str) -> str:
        return self.path(f"run/{bridge}.mgmt")


@dataclass
class VmState:
    name: str
    host: str
    ns: str
    network: int
    mac: str
    ip: str
    iface_id: str  # the control-plane port id when the lab runs agents
    tap: str
    # The switch slot its tap is in (b only with lab up --standby); with the steer
    # handover the tap is in both, and this is the slot its NIC is steered to.
    slot: str = "a"

    @classmethod
    def from_plan(cls, plan: VmPlan, ns: str) -> VmState:
        return cls(
            name=plan.name,
            host=plan.host,
            ns=ns,
            network=plan.network,
            mac=plan.mac,
            ip=plan.ip,
            iface_id=plan.iface_id,
            tap=plan.tap,
        )


@dataclass
class LabState:
    name: str
    dir: str
    underlay_ns: str
    hosts: list[HostState] = field(default_factory=list)
    vms: list[VmState] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)  # extra processes: serverN, simhosts
    server_url: str = ""  # server 1's URL: the lab's own client speaks to it
    servers: list[str] = field(default_factory=list)  # server N's URL is servers[N - 1]
    store: str = "sqlite"  # the servers' store backend: sqlite or etcd
    store_url: str = ""  # what every server gets as --store
    watch_log: bool = False  # agents log each watch message to HOSTDIR/watch.ndjson
    ca: str = ""  # the CA file of the server's TLS certificate; "" without TLS
    l2pop: bool = True
    firewall: str = "noop"  # every agent's --firewall: openvswitch or noop
    networks: dict[str, str] = field(default_factory=dict)  # lab network number -> id
    # With twin slots, how a VM's NIC changes slot: "netns" (its tap moves between the
    # slots' namespaces) or "steer" (a tap in each slot; the hypervisor picks one).
    vif_handover: str = "netns"

    def host(self, name: str) -> HostState:
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError(f"no host {name!r} in the lab (hosts: {', '.join(self.host_names())})")

    def vm(self, name: str) -> VmState:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise LabError(f"no VM {name!r} in the lab (see 'flowkeeper lab status')")

    def server_index(self, index: int) -> int:
        """A 1-based server number, checked against the lab's servers."""
        if not 1 <= index <= len(self.servers):
            raise LabError(
                f"no server {index}: the lab has servers 1..{len(self.servers)}"
                if self.servers
                else "the lab runs no server (it was made without agents)"
            )
        return index

    def vif_slot(self, vm: VmState) -> HostState:
        """The slot (its HostState) whose namespace and OVS hold the VM's tap now."""
        return self.host(vm.host).slot(vm.slot)

    def vif_netns(self, vm: VmState) -> str:
        """The namespace the VM's tap lives in: its host's, or with --standby its slot's."""
        return self.vif_slot(vm).ns

    def host_names(self) -> list[str]:
        return [h.name for h in self.hosts]

    def save(self) -> None:
        data = json.dumps(asdict(self), indent=2, sort_keys=True).encode()
        atomic_write(Path(self.dir) / STATE_FILE, data)

    @classmethod
    def load(cls, lab_dir: Path) -> LabState | None:
        path = lab_dir / STATE_FILE
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            hosts = [HostState.from_dict(h) for h in raw.pop("hosts")]
            vms = [VmState(**v) for v in raw.pop("vms")]
            return cls(hosts=hosts, vms=vms, **raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise LabError(f"lab state {path} is damaged ({exc}); run 'lab down'") from None
