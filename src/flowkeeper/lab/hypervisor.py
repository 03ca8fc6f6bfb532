"""The "steer" VIF handover in the lab: a hypervisor whose VM NICs are in both slots.

With `lab up --standby --vif-handover steer` each host gets a third namespace,
NAME-hN-hv, the hypervisor's. A VM's NIC is then three veth pairs (ID: the tap name
without "tap"; see flowkeeper.agent.vifsteer):

    VM's eth0            <-> v<ID>  (hv)
    TAP in slot a's ns   <-> a<ID>  (hv)
    TAP in slot b's ns   <-> b<ID>  (hv)

and tc in the hv namespace joins v<ID> to the active slot's end and drops what the other
slot sends. Both slots' vswitchd see the device (Nova's row is in slot a's br-int; the
agent copies it into slot b with the same ofport_request), so a cut is one `tc -batch`
run and no device moves. The hv namespace has no addresses and IPv6 off: it is a wire.
"""

from __future__ import annotations

from flowkeeper.agent import vifsteer
from flowkeeper.lab.run import LabError, run
from flowkeeper.lab.state import HostState, VmState

HANDOVERS = ("netns", "steer")


def hv_name(lab_name: str, host: HostState) -> str:
    return f"{lab_name}-{host.name}-hv"


def make_hv(ns: str) -> None:
    """The hypervisor namespace (already added and recorded): no IPv6, so the kernel
    there sends nothing out of the VIF ends (no router solicitations, no MLD)."""
    for key in ("all", "default"):
        run(["sysctl", "-q", "-w", f"net.ipv6.conf.{key}.disable_ipv6=1"], ns=ns)


def _offloads_off(ns: str, dev: str) -> None:
    """The userspace datapath does not fill in offloaded checksums (as for VM NICs)."""
    run(["ethtool", "-K", dev, "tx", "off"], ns=ns, check=False)


def make_nic(host: HostState, vm: VmState) -> None:
    """The VM NIC's wires: v<ID> to the VM, a TAP in each slot, steered to slot a."""
    hv = host.hv_ns
    if not hv or host.standby is None:
        raise LabError(f"{host.name} has no hypervisor namespace (lab up --vif-handover steer)")
    vif = vifsteer.vif_id(vm.tap)
    vm_end = vifsteer.device(vifsteer.VM_SIDE, vif)
    to_vm = ["peer", "name", "eth0", "netns", vm.ns]
    run(["ip", "link", "add", vm_end, "type", "veth", *to_vm], ns=hv)
    ends = [vm_end]
    for name, slot in host.slots().items():
        end = vifsteer.device(name, vif)
        peer = ["peer", "name", end, "netns", hv]
        run(["ip", "link", "add", vm.tap, "type", "veth", *peer], ns=slot.ns)
        _offloads_off(slot.ns, vm.tap)
        run(["ip", "link", "set", vm.tap, "up"], ns=slot.ns)
        ends.append(end)
    for end in ends:
        _offloads_off(hv, end)
        run(["tc", "-n", hv, "qdisc", "add", "dev", end, "clsact"])
    vifsteer.steer(hv, [vif], "a")  # before the ends come up: no frame goes astray
    for end in ends:
        run(["ip", "link", "set", end, "up"], ns=hv)


def remove_nic(host: HostState, vm: VmState) -> None:
    """Delete the VM NIC's wires in the slots and the hv namespace (each veth pair goes
    with either end); what is gone already is skipped."""
    for slot in host.slots().values():
        run(["ip", "link", "del", vm.tap], ns=slot.ns, check=False)
    if host.hv_ns:
        vif = vifsteer.vif_id(vm.tap)
        for side in (vifsteer.VM_SIDE, *vifsteer.SLOTS):
            run(["ip", "link", "del", vifsteer.device(side, vif)], ns=host.hv_ns, check=False)


def active(host: HostState, vms: list[VmState]) -> dict[str, str]:
    """VM name -> the slot its NIC is steered to now (one `tc` run)."""
    ids = {vifsteer.vif_id(vm.tap): vm.name for vm in vms}
    got = vifsteer.active_slots(host.hv_ns, list(ids))
    return {ids[vif]: slot for vif, slot in got.items()}
