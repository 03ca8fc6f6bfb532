"""The lab's address plan and names: pure functions, no I/O."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass

UNDERLAY = ipaddress.IPv4Network("198.18.0.0/16")
TENANT_SUPERNET = ipaddress.IPv4Network("198.19.0.0/16")
VM_MTU = 1450  # 1500 minus VXLAN overhead, as Neutron sets for VXLAN networks
_NS_UUID = uuid.UUID("6f0c1b9e-8f7a-4d4e-9a55-0f1e2d3c4b5a")


@dataclass(frozen=True)
class HostPlan:
    name: str
    index: int
    tunnel_ip: str


@dataclass(frozen=True)
class VmPlan:
    name: str
    host: str
    network: int
    mac: str
    ip: str
    iface_id: str

    @property
    def tap(self) -> str:
        """Nova's VIF device name: 'tap' plus the start of the port id (15 chars at most)."""
        return f"tap{self.iface_id[:11]}"


def host_name(index: int) -> str:
    return f"h{index}"


def tunnel_ip(index: int) -> str:
    """198.18.0.0/16: host i gets 198.18.(i // 250).(i % 250 + 1)."""
    if not 1 <= index <= 250 * 250:
        raise ValueError(f"host index {index} out of range")
    return f"198.18.{index // 250}.{index % 250 + 1}"


def vm_ip(network: int, slot: int) -> str:
    """Tenant subnet 198.19.N.0/24; VMs from .10 upwards."""
    if not 1 <= network <= 255 or not 0 <= slot <= 240:
        raise ValueError(f"network {network} / slot {slot} out of range")
    return f"198.19.{network}.{10 + slot}"


def vm_mac(host_index: int, network: int, vm_index: int) -> str:
    return f"fa:16:3e:{host_index & 0xFF:02x}:{network & 0xFF:02x}:{vm_index & 0xFF:02x}"


def iface_id(lab: str, vm: str) -> str:
    return str(uuid.uuid5(_NS_UUID, f"{lab}/{vm}"))


def plan_hosts(count: int) -> list[HostPlan]:
    return [HostPlan(host_name(i), i, tunnel_ip(i)) for i in range(1, count + 1)]


def plan_vms(lab: str, hosts: list[HostPlan], vms_per_host: int, networks: int) -> list[VmPlan]:
    """VMs h1-vm1.. spread round-robin over networks; each gets a unique IP in its subnet."""
    vms: list[VmPlan] = []
    slots: dict[int, int] = {}
    for host in hosts:
        for j in range(1, vms_per_host + 1):
            net = 1 + (j - 1) % networks
            slot = slots.get(net, 0)
            slots[net] = slot + 1
            name = f"{host.name}-vm{j}"
            vms.append(
                VmPlan(
                    name=name,
                    host=host.name,
                    network=net,
                    mac=vm_mac(host.index, net, j),
                    ip=vm_ip(net, slot),
                    iface_id=iface_id(lab, name),
                )
            )
    return vms
