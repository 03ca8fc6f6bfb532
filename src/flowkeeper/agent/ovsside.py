"""The agent's view of its own host's OVS: bridges, VIFs, local VLANs, tunnels, generation."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from flowkeeper.agent.bridges import (
    DEFAULT_DATAPATH_TYPE,
    FAIL_MODE,
    FLOW_RESTORE_WAIT,
    may_clear_flow_restore_wait,
    other_bridges,
    plan_bridges,
)
from flowkeeper.agent.twinplan import Copy, VifRow
from flowkeeper.flows.flowset import FlowDelta, FlowSet
from flowkeeper.flows.ports import Resolved, renamed, resolve_ports
from flowkeeper.naming import BR_INT, BR_TUN, PATCH_INT, PATCH_TUN, tunnel_port_name
from flowkeeper.ovs.errors import OpenFlowError
from flowkeeper.ovs.ofwire import WireBridge
from flowkeeper.ovs.ovsdb import InterfaceInfo, Ovsdb
from flowkeeper.pipeline.learned import learned_spec, stale_learned
from flowkeeper.pipeline.tables import LEARNED_COOKIE
from flowkeeper.pipeline.view import NetworkView

log = logging.getLogger(__name__)

GENERATION_KEY = "flowkeeper-generation"
BRIDGES = (BR_INT, BR_TUN)
TUNNEL_PREFIXES = ("vxlan-", "gre-")
APPLY_ATTEMPTS = 3  # a bundle refused because ports changed under it is re-resolved
WIRE_MAX_FLOWS = 200  # measured crossover: ~0.6 ms + 100 us/flow vs ~16 ms + 17 us/flow


@dataclass(frozen=True)
class Vif:
    """A VM interface plugged into br-int (Nova's iface-id and attached-mac)."""

    device: str
    iface_id: str
    mac: str
    ofport: int | None


class HostOvs:
    """Everything the agent does to its host's OVS goes through here."""

    def __init__(
        self, ovsdb_remote: str, rundir: Path, datapath_type: str = DEFAULT_DATAPATH_TYPE
    ) -> None:
        self.db = Ovsdb(ovsdb_remote)
        self.rundir = rundir
        self.datapath_type = datapath_type  # for the bridges the agent creates
        self._frw_noted: tuple[str, ...] | None = None  # other bridges last logged
        # Flow changes go over one OpenFlow connection per bridge (encoded in-process);
        # dumps and anything the encoder cannot express go through ovs-ofctl.
        self.bridges = {b: WireBridge(b, str(rundir / f"{b}.mgmt")) for b in BRIDGES}
        self._recorded: dict[str, tuple[str, str, int, int]] = {}  # device -> VLAN record
        self._numbers: dict[str, dict[str, int]] = {}  # bridge -> port name -> last ofport
        self._pool = ThreadPoolExecutor(max_workers=len(BRIDGES), thread_name_prefix="ofctl")
        # Twin slots: VIF name -> the number it is pinned to in both slots. A pinned VIF
        # whose device is in the other slot is named by that number in this slot's flows.
        self.pinned: dict[str, int] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for bridge in self.bridges.values():
            bridge.close()
        self.db.close()

    def ensure_bridges(self) -> None:
        """br-int and br-tun with their patch ports. Never touches existing flows, nor
        any setting of a bridge that exists (see agent.bridges.plan_bridges)."""
        existing = {name: b.datapath_type for name, b in self.db.bridges().items()}
        plan = plan_bridges(existing, BRIDGES, self.datapath_type)
        for line in plan.warnings:
            log.warning("%s", line)
        for bridge in plan.create:
            if self.db.create_bridge(bridge, datapath_type=self.datapath_type, fail_mode=FAIL_MODE):
                log.info("created bridge %s (datapath_type %s)", bridge, self.datapath_type)
        self.db.ensure_patch_port(BR_INT, PATCH_TUN, PATCH_INT)
        self.db.ensure_patch_port(BR_TUN, PATCH_INT, PATCH_TUN)
        self.db.wait_ofports([PATCH_TUN, PATCH_INT])

    def next_generation(self) -> int:
        """Read the generation persisted in br-int's external_ids, store and return +1."""
        current = self.db.api.db_get("Bridge", BR_INT, "external_ids").execute(check_error=True)
        try:
            gen = int(dict(current).get(GENERATION_KEY, "0")) + 1
        except ValueError:
            gen = 1
        gen %= 1 << 32
        self.db.api.db_set("Bridge", BR_INT, ("external_ids", {GENERATION_KEY: str(gen)})).execute(
            check_error=True
        )
        return gen

    def vifs(self) -> list[Vif]:
        """VM interfaces on br-int: those with an iface-id."""
        on_int = set(self.db.bridge_ports(BR_INT))
        out = []
        for info in self.db.interfaces():
            if info.name in on_int and info.iface_id:
                mac = info.external_ids.get("attached-mac", "").lower()
                out.append(Vif(info.name, info.iface_id, mac, info.ofport))
        return out

    def local_vlans(self) -> dict[str, int]:
        """network id -> local VLAN, as recorded in VIF ports' other_config (Neutron's keys)."""
        result: dict[str, int] = {}
        for vif in self.vifs():
            cfg = self.db.port_other_config(vif.device)
            net, tag = cfg.get("net_uuid"), cfg.get("tag")
            if net and tag and tag.isdigit():
                result.setdefault(net, int(tag))
        return result

    def record_vlans(self, records: Iterable[tuple[str, NetworkView]]) -> None:
        """Write each VIF's network and local VLAN into its Port other_config (skipped
        when this agent already wrote the same)."""
        for device, net in records:
            self.record_vlan(device, net.id, net.type, net.segmentation_id, net.vlan)

    def record_vlan(self, device: str, network_id: str, net_type: str, seg: int, vlan: int) -> None:
        record = (network_id, net_type, seg, vlan)
        if self._recorded.get(device) == record:
            return
        want = {
            "net_uuid": network_id,
            "network_type": net_type,
            "segmentation_id": str(seg),
            "tag": str(vlan),
        }
        cfg = self.db.port_other_config(device)
        if any(cfg.get(key) != value for key, value in want.items()):
            self.db.set_port_other_config(device, want)
        self._recorded[device] = record

    def clear_flow_restore_wait(self) -> bool:
        """Once the agent's flows are in: remove other_config:flow-restore-wait if it is
        set and every bridge on the switch is the agent's own. With other bridges, leave it
        to whoever set it (ovs-ctl clears it after restoring every bridge's saved flows;
        clearing it earlier would let br-ex forward with an empty table). True if cleared.
        """
        if not self.db.global_other_config().get(FLOW_RESTORE_WAIT):
            self._frw_noted = None
            return False
        names = list(self.db.bridges())
        if not may_clear_flow_restore_wait(names, BRIDGES):
            others = tuple(other_bridges(names, BRIDGES))
            if others != self._frw_noted:  # once per set of other bridges, not per call
                self._frw_noted = others
                log.info(
                    "other_config:flow-restore-wait is set and the switch has bridges "
                    "that are not ours (%s): left for ovs-ctl to clear",
                    ", ".join(others),
                )
            return False
        self.db.set_global_other_config(FLOW_RESTORE_WAIT, None)
        log.info("cleared other_config:flow-restore-wait (only our bridges exist)")
        return True

    def port_numbers(self) -> dict[str, int]:
        """The ports the switch has now, by name, over both bridges (OpenFlow port
        descriptions: right after a restart OVSDB may still show old ofports for devices
        that are gone). Each bridge's numbers are remembered too: a flow whose in_port
        port goes away later is deleted by the number the port had (an agent that
        restarted and changed nothing on a bridge since would not know it otherwise)."""
        numbers: dict[str, int] = {}
        for name, bridge in self.bridges.items():
            now = bridge.port_numbers()
            self._numbers.setdefault(name, {}).update(now)
            numbers.update(now)
        return numbers

    def forget(self, device: str) -> None:
        self._recorded.pop(device, None)

    def tunnel_ports(self) -> set[str]:
        return {p for p in self.db.bridge_ports(BR_TUN) if p.startswith(TUNNEL_PREFIXES)}

    def ensure_tunnels(self, peers: set[tuple[str, str]], local_ip: str) -> None:
        """Create the tunnel ports this host needs (one per type and remote IP)."""
        have = self.tunnel_ports()
        new = [(k, ip) for k, ip in sorted(peers) if tunnel_port_name(k, ip) not in have]
        for kind, ip in new:
            self.db.ensure_tunnel_port(BR_TUN, tunnel_port_name(kind, ip), kind, ip, local_ip)
        if new:
            self.db.wait_ofports([tunnel_port_name(k, ip) for k, ip in new])

    def remove_unused_tunnels(self, peers: set[tuple[str, str]]) -> list[str]:
        """Delete tunnel ports no peer needs, then the flows OVS learned towards them (the
        port number would otherwise keep pointing at whatever port reuses it)."""
        wanted = {tunnel_port_name(k, ip) for k, ip in peers}
        gone = sorted(self.tunnel_ports() - wanted)
        if not gone:
            return gone
        numbers = self.bridges[BR_TUN].port_numbers()
        for name in gone:
            self.db.delete_port(BR_TUN, name)
        self.delete_learned([learned_spec(out_port=numbers[n]) for n in gone if n in numbers])
        return gone

    def delete_learned(self, specs: list[str]) -> None:
        """Delete MAC-learned br-tun flows (non-strict specs from pipeline.learned)."""
        if specs:
            self.bridges[BR_TUN].ofctl.delete_matching(specs)

    def installed_flows(self, bridges: Iterable[str] = BRIDGES) -> FlowSet:
        """The flows OVS holds now, minus what OVS learned by itself (MAC learning). A
        number that a pinned VIF holds (its device is in the other slot: the dump can only
        print the number) is read back as the VIF's name."""
        flows = FlowSet()
        back = {str(n): name for name, n in self.pinned.items()}
        dumps = [self._pool.submit(self.bridges[b].dump_flows) for b in bridges]
        for job in dumps:
            for flow in job.result():
                if flow.cookie != LEARNED_COOKIE:
                    flows.add(renamed(flow, back) if flow.bridge == BR_INT else flow)
        return flows

    def vif_rows(self) -> list[VifRow]:
        """Every VIF Interface row on br-int (an iface-id), for the twin-slot plan."""
        on_int = set(self.db.bridge_ports(BR_INT))
        return [
            VifRow(i.name, dict(i.external_ids), i.ofport, i.ofport_request)
            for i in self.db.interfaces()
            if i.name in on_int and i.iface_id
        ]

    def taken_numbers(self) -> dict[str, int]:
        """br-int's ports and the numbers they hold or ask for, from OVSDB (it answers
        while ovs-vswitchd is down)."""
        on_int = set(self.db.bridge_ports(BR_INT))
        out = {}
        for info in self.db.interfaces():
            number = info.ofport or info.ofport_request
            if info.name in on_int and number:
                out[info.name] = number
        return out

    def write_twin(
        self, copies: list[Copy], requests: list[tuple[str, int]], deletes: list[str]
    ) -> None:
        """This slot's part of a twin plan: VIF copies, pins of originals, gone copies."""
        for copy in copies:
            self.db.put_vif_copy(
                BR_INT, copy.name, copy.external_ids, copy.ofport_request, copy.stale_keys
            )
        for name, number in requests:
            self.db.set_ofport_request(name, number)
        for name in deletes:
            self.db.delete_port(BR_INT, name)

    def add_lines(self, bridge: str, lines: list[str]) -> None:
        self.bridges[bridge].ofctl.add_lines(lines)

    def apply(self, delta: FlowDelta) -> Resolved:
        """One atomic bundle per bridge; the bridges' bundles go out in parallel. Then the
        MAC-learned flows the deletions made stale go too (see pipeline.learned).

        Flows naming ports a bridge lacks are not sent (see flows.ports.resolve_ports):
        the result says what was applied and what waits.
        """
        jobs = [self._pool.submit(self._apply_one, delta.for_bridge(b)) for b in delta.bridges()]
        result = Resolved()
        for job in jobs:
            result.merge(job.result())
        self.delete_learned(stale_learned(result.applied.delete))
        return result

    def _apply_one(self, delta: FlowDelta) -> Resolved:
        """Small deltas in-process (no process to start: ~1 ms); bulk ones through
        ovs-ofctl, whose C parser beats Python encoding beyond a few hundred flows."""
        name = delta.bridges()[0]
        bridge = self.bridges[name]
        known = self._numbers.setdefault(name, {})
        real = bridge.port_numbers()
        for attempt in range(APPLY_ATTEMPTS):
            present = self._with_pinned(name, real)
            known.update(present)
            result = resolve_ports(delta, present, known)
            send = result.send
            try:
                if send and len(send) <= WIRE_MAX_FLOWS:
                    bridge.apply(send, present)
                elif send:
                    bridge.ofctl.apply(self._by_pinned_number(name, send, real))
                return result
            except OpenFlowError:
                # A port came or went between reading the ports and the bundle (which
                # then changed nothing): once more with the ports as they are now.
                before, real = real, bridge.port_numbers()
                if real == before or attempt == APPLY_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _with_pinned(self, bridge: str, present: dict[str, int]) -> dict[str, int]:
        """The bridge's ports, and on br-int every pinned VIF it lacks by its number."""
        if bridge != BR_INT or not self.pinned:
            return present
        out = dict(present)
        for vif, number in self.pinned.items():
            out.setdefault(vif, number)
        return out

    def _by_pinned_number(
        self, bridge: str, delta: FlowDelta, present: dict[str, int]
    ) -> FlowDelta:
        """For ovs-ofctl, which resolves names itself: pinned VIFs this switch lacks by
        their numbers."""
        if bridge != BR_INT or not self.pinned:
            return delta
        absent = {v: str(n) for v, n in self.pinned.items() if v not in present}
        return FlowDelta(
            add=[renamed(f, absent) for f in delta.add],
            modify=[renamed(f, absent) for f in delta.modify],
            delete=[renamed(f, absent) for f in delta.delete],
        )

    def watch(self, callback: object) -> None:
        self.db.watch_interfaces(callback)  # type: ignore[arg-type]


def interface_is_vif(info: InterfaceInfo) -> bool:
    return bool(info.iface_id)
