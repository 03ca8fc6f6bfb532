"""A fake of one host's OVS for the agent's unit tests: flow tables, ports, OVSDB keys.

In the style of faucet's clib/fakeoftable.py: a small model of what the switch holds,
with the same interface the agent uses (HostOvs, RestoreTarget, the watchdog's bridges),
and a record of every call, so tests assert on tables and on what was sent.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from flowkeeper.agent.bridges import may_clear_flow_restore_wait
from flowkeeper.agent.ovsside import BRIDGES, Vif
from flowkeeper.flows.flowset import FlowDelta, FlowSet
from flowkeeper.flows.ports import Resolved, resolve_ports
from flowkeeper.flows.record import Flow, FlowKey, parse_rendered
from flowkeeper.naming import BR_INT, BR_TUN, PATCH_INT, PATCH_TUN, tunnel_port_name
from flowkeeper.ovs.errors import OpenFlowError
from flowkeeper.pipeline.tables import COOKIE_TAG, LEARNED_COOKIE
from flowkeeper.pipeline.view import NetworkView

_COOKIE = re.compile(r"cookie=(0x[0-9a-f]+)/(0x[0-9a-f]+)")


@dataclass
class FakeConn:
    reconnects: int = 0


class FakeBridge:
    """One bridge's table, keyed as OVS keys flows (table, priority, match)."""

    def __init__(self, switch: FakeSwitch, name: str) -> None:
        self.switch = switch
        self.name = name
        self.conn = FakeConn()
        self.flows: dict[FlowKey, Flow] = {}
        self.numbers_seen: dict[int, str] = {}  # OVS keeps numbers: a gone port's number

    def port_numbers(self) -> dict[str, int]:
        if self.switch.down:
            raise OpenFlowError(f"{self.name}: connection refused")
        return {n: num for n, (br, num) in self.switch.ports.items() if br == self.name}

    def flow_count(self, match: str = "") -> int:
        if self.switch.down:
            raise OpenFlowError(f"{self.name}: connection refused")
        self.switch._ofctl()
        m = _COOKIE.search(match)
        if m is None:
            return len(self.flows)
        value, mask = int(m.group(1), 16), int(m.group(2), 16)
        return sum(1 for f in self.flows.values() if f.cookie & mask == value & mask)

    def install(self, flow: Flow) -> None:
        self.flows[flow.key] = flow

    def delete(self, flow: Flow) -> None:
        """Strict delete; an in_port given by number names the port that had it."""
        match = tuple(
            (k, self.numbers_seen.get(int(v), v) if k == "in_port" and v.isdigit() else v)
            for k, v in flow.match
        )
        self.flows.pop((flow.bridge, flow.table, flow.priority, match), None)

    def table(self) -> FlowSet:
        return FlowSet(f for f in self.flows.values() if f.cookie != LEARNED_COOKIE)


@dataclass
class FakeSwitch:
    """br-int, br-tun (and any other bridges), ports, VIFs and OVSDB's keys."""

    vifs_by_device: dict[str, tuple[str, str]] = field(default_factory=dict)  # iface-id, mac
    other_bridges: set[str] = field(default_factory=set)
    other_config: dict[str, str] = field(default_factory=dict)
    generation: int = 0
    down: bool = False
    calls: list[str] = field(default_factory=list)
    vlan_records: dict[str, tuple[str, int]] = field(default_factory=dict)  # device -> net, tag
    fail_next_add: str = ""  # the next add_lines raises this once (e.g. "unknown port")
    ofctl_down: str = ""  # when set, every OpenFlow read or write raises it (ovs-ofctl hung)
    # When set, vifs() (the reconcile's first OVS read) waits for it: a test can hold a
    # reconcile in flight; `entered` tells the test it is held.
    hold: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.bridges = {b: FakeBridge(self, b) for b in BRIDGES}
        self.ports: dict[str, tuple[str, int]] = {}
        self._next = 1
        self.add_port(BR_INT, PATCH_TUN)
        self.add_port(BR_TUN, PATCH_INT)

    # --- the test's hands ------------------------------------------------------
    def add_port(self, bridge: str, name: str) -> int:
        number = self._next
        self._next += 1
        self.ports[name] = (bridge, number)
        self.bridges[bridge].numbers_seen[number] = name
        return number

    def plug(self, device: str, iface_id: str, mac: str) -> int:
        self.vifs_by_device[device] = (iface_id, mac)
        return self.add_port(BR_INT, device)

    def unplug(self, device: str) -> None:
        self.vifs_by_device.pop(device, None)
        self.ports.pop(device, None)

    def restart(self) -> None:
        """ovs-vswitchd restarted: empty tables, new connections, ports keep numbers."""
        for bridge in self.bridges.values():
            bridge.flows.clear()
            bridge.conn.reconnects += 1

    def table(self, bridges: Iterable[str] = BRIDGES) -> FlowSet:
        out = FlowSet()
        for b in bridges:
            for flow in self.bridges[b].table():
                out.add(flow)
        return out

    # --- HostOvs ---------------------------------------------------------------
    def ensure_bridges(self) -> None:
        self.calls.append("ensure_bridges")

    def next_generation(self) -> int:
        self.generation += 1
        return self.generation

    def vifs(self) -> list[Vif]:
        if self.hold is not None:
            self.entered.set()
            if not self.hold.wait(10):
                raise AssertionError("the test never released the held reconcile")
        out = []
        for device, (iface_id, mac) in sorted(self.vifs_by_device.items()):
            number = self.ports.get(device, ("", None))[1]
            out.append(Vif(device, iface_id, mac, number))
        return out

    def local_vlans(self) -> dict[str, int]:
        return {net: tag for net, tag in self.vlan_records.values()}

    def record_vlans(self, records: Iterable[tuple[str, NetworkView]]) -> None:
        for device, net in records:
            self.vlan_records[device] = (net.id, net.vlan)

    def clear_flow_restore_wait(self) -> bool:
        names = [*BRIDGES, *self.other_bridges]
        if self.other_config.get("flow-restore-wait") and may_clear_flow_restore_wait(
            names, BRIDGES
        ):
            del self.other_config["flow-restore-wait"]
            self.calls.append("clear_flow_restore_wait")
            return True
        return False

    def port_numbers(self) -> dict[str, int]:
        numbers: dict[str, int] = {}
        for bridge in self.bridges.values():
            numbers.update(bridge.port_numbers())
        return numbers

    def forget(self, device: str) -> None:
        pass

    def tunnel_ports(self) -> set[str]:
        return {n for n, (b, _) in self.ports.items() if b == BR_TUN and n != PATCH_INT}

    def ensure_tunnels(self, peers: set[tuple[str, str]], local_ip: str) -> None:
        for kind, ip in sorted(peers):
            name = tunnel_port_name(kind, ip)
            if name not in self.ports:
                self.add_port(BR_TUN, name)
                self.calls.append(f"add tunnel {name}")

    def remove_unused_tunnels(self, peers: set[tuple[str, str]]) -> list[str]:
        wanted = {tunnel_port_name(k, ip) for k, ip in peers}
        gone = sorted(self.tunnel_ports() - wanted)
        for name in gone:
            del self.ports[name]
            self.calls.append(f"delete tunnel {name}")
        return gone

    def _ofctl(self) -> None:
        if self.ofctl_down:
            raise OpenFlowError(self.ofctl_down)

    def installed_flows(self, bridges: Iterable[str] = BRIDGES) -> FlowSet:
        self._ofctl()
        self.calls.append("dump")
        return self.table(bridges)

    def apply(self, delta: FlowDelta) -> Resolved:
        """One bundle per bridge; flows naming ports the bridge lacks wait (as in OVS)."""
        self._ofctl()
        result = Resolved()
        for name in delta.bridges():
            bridge = self.bridges[name]
            part = resolve_ports(
                delta.for_bridge(name), bridge.port_numbers(), dict(self._last_numbers(bridge))
            )
            for flow in part.send.delete:
                bridge.delete(flow)
            for flow in [*part.send.add, *part.send.modify]:
                bridge.install(flow)
            self.calls.append(
                f"bundle {name} +{len(part.send.add)} ~{len(part.send.modify)}"
                f" -{len(part.send.delete)}"
            )
            result.merge(part)
        return result

    @staticmethod
    def _last_numbers(bridge: FakeBridge) -> dict[str, int]:
        return {name: number for number, name in bridge.numbers_seen.items()}

    def delete_learned(self, specs: list[str]) -> None:
        pass

    # --- the quick boot's CliTarget ------------------------------------------------
    def our_flow_count(self, bridge: str) -> int:
        return self.bridges[bridge].flow_count(f"cookie={COOKIE_TAG:#x}/{0xFFFF << 48:#x}")

    # --- RestoreTarget -----------------------------------------------------------
    def add_lines(self, bridge: str, lines: list[str]) -> None:
        self._ofctl()
        if self.fail_next_add:
            reason, self.fail_next_add = self.fail_next_add, ""
            raise OpenFlowError(reason)
        table = self.bridges[bridge]
        present = table.port_numbers()
        flows = []
        for line in lines:
            if line.startswith("delete_strict "):
                continue
            flow = parse_rendered(line, bridge)
            if any(v not in present for k, v in flow.match if k == "in_port"):
                raise OpenFlowError(f"unknown port {dict(flow.match)['in_port']}")
            flows.append(flow)
        for flow in flows:  # one bundle: all or nothing
            table.install(flow)
        self.calls.append(f"add_lines {bridge} {len(flows)}")

    def watch(self, callback: object) -> None:
        pass

    def close(self) -> None:
        pass
