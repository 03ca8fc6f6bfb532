"""Micro-benchmark: install N flows in one bundle, each OpenFlow mechanism side by side."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowkeeper.flows.flowset import FlowDelta
from flowkeeper.flows.record import Flow, parse_flow
from flowkeeper.lab.lab import Lab, UpOptions
from flowkeeper.naming import BR_TUN, PATCH_INT
from flowkeeper.ovs import ofsocket
from flowkeeper.ovs.ofctl import OfctlBridge
from flowkeeper.ovs.ofwire import WireBridge
from flowkeeper.ovs.ovsdb import Ovsdb

METHODS = ("ofctl-add", "ofctl-replace", "preencoded", "osken", "wire")
DELTA_REPEATS = 50
Progress = Callable[[str], None]


@dataclass
class Shape:
    """Flow i of the benchmark: a Neutron table-20 unicast-to-tunnel flow."""

    vlan: int
    mac: str
    tun_id: int

    @classmethod
    def of(cls, i: int) -> Shape:
        vlan = 1 + i % 4000
        mac = f"fa:16:3e:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
        return cls(vlan, mac, 5000 + vlan)

    def flow(self, out_port: str) -> Flow:
        return parse_flow(
            f"table=20,priority=2,dl_vlan={self.vlan},dl_dst={self.mac},"
            f"actions=pop_vlan,set_field:{self.tun_id}->tun_id,output:{out_port}",
            BR_TUN,
        )


@dataclass
class MethodResult:
    method: str
    flows: int
    seconds: list[float] = field(default_factory=list)
    prepare_seconds: float = 0.0  # work done before the timer (pre-encoding)

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "flows": self.flows,
            "median_s": round(statistics.median(self.seconds), 4),
            "min_s": round(min(self.seconds), 4),
            "runs_s": [round(s, 4) for s in self.seconds],
            "flows_per_s": round(self.flows / statistics.median(self.seconds)),
            "prepare_s": round(self.prepare_seconds, 4),
        }


def _osken_encoder() -> Callable[[Shape, int], bytes]:
    from os_ken.ofproto import ofproto_v1_5 as ofp
    from os_ken.ofproto import ofproto_v1_5_parser as parser

    class _Datapath:
        ofproto = ofp
        ofproto_parser = parser

    dp = _Datapath()

    def encode(shape: Shape, out_port: int) -> bytes:
        match = parser.OFPMatch(vlan_vid=0x1000 | shape.vlan, eth_dst=shape.mac)
        actions = [
            parser.OFPActionPopVlan(),
            parser.OFPActionSetField(tunnel_id=shape.tun_id),
            parser.OFPActionOutput(out_port),
        ]
        inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
        msg = parser.OFPFlowMod(dp, table_id=20, priority=2, match=match, instructions=inst)
        msg.set_xid(0)
        msg.serialize()
        return bytes(msg.buf)

    return encode


def run(
    sizes: list[int],
    repeats: int,
    methods: list[str],
    lab_dir: Path,
    progress: Progress,
    *,
    delta_repeats: int = DELTA_REPEATS,
    lab_name: str = "fkbench",
) -> dict[str, Any]:
    """Bring up a one-host lab, time each method at each size, tear the lab down.

    With method `wire`, also time a one-flow delta through OfctlBridge.apply and
    WireBridge.apply (`delta_repeats` each, one new flow every time)."""
    lab = Lab(lab_dir, progress=progress)
    lab.down()
    state = lab.up(
        UpOptions(hosts=1, vms_per_host=0, name=lab_name, static_flows=False, agents=False)
    )
    results: list[dict[str, Any]] = []
    deltas: list[dict[str, Any]] = []
    wire: WireBridge | None = None
    try:
        host = state.hosts[0]
        with Ovsdb(f"unix:{host.db_sock}") as db:
            out_port = db.wait_ofports([PATCH_INT])[PATCH_INT]
        bridge = OfctlBridge(BR_TUN, host.mgmt(BR_TUN), timeout=600)
        for size in sizes:
            shapes = [Shape.of(i) for i in range(size)]
            flows = [s.flow(PATCH_INT) for s in shapes]
            for method in methods:
                res = MethodResult(method, size)
                install = _prepare(
                    method,
                    shapes=shapes,
                    flows=flows,
                    out_port=out_port,
                    bridge=bridge,
                    res=res,
                )
                for rep in range(repeats):
                    bridge.delete_all()
                    start = time.perf_counter()
                    install()
                    res.seconds.append(time.perf_counter() - start)
                    count = bridge.flow_count()
                    if count != size:
                        raise RuntimeError(f"{method}: {count} flows installed, expected {size}")
                    progress(f"{method:14} {size:>7} flows  run {rep + 1}: {res.seconds[-1]:.3f}s")
                results.append(res.summary())
            bridge.delete_all()
        if "wire" in methods:  # the agent's case: one long-lived connection
            wire = WireBridge(BR_TUN, host.mgmt(BR_TUN), timeout=600)
            for name, target in (("ofctl-apply", bridge), ("wire-apply", wire)):
                deltas.append(_time_deltas(name, target, bridge, delta_repeats, progress))
    finally:
        if wire is not None:
            wire.close()
        lab.down()
    out: dict[str, Any] = {"benchmark": "openflow", "repeats": repeats, "results": results}
    if deltas:
        out["delta"] = deltas
    return out


def _time_deltas(
    name: str, target: OfctlBridge | WireBridge, check: OfctlBridge, reps: int, progress: Progress
) -> dict[str, Any]:
    """A one-flow delta (one add), `reps` times into an empty table, each its own bundle."""
    check.delete_all()
    seconds = []
    for i in range(reps):
        delta = FlowDelta(add=[Shape.of(1_000_000 + i).flow(PATCH_INT)])
        start = time.perf_counter()
        target.apply(delta)
        seconds.append(time.perf_counter() - start)
    if isinstance(target, WireBridge) and target.fallbacks:
        raise RuntimeError(f"{name}: WireBridge fell back to ovs-ofctl")
    if check.flow_count() != reps:
        raise RuntimeError(f"{name}: {check.flow_count()} flows installed, expected {reps}")
    check.delete_all()
    ms = sorted(s * 1000 for s in seconds)
    summary = {
        "method": name,
        "delta": "1 flow add",
        "repeats": reps,
        "median_ms": round(statistics.median(ms), 3),
        "min_ms": round(ms[0], 3),
        "p90_ms": round(ms[int(0.9 * (reps - 1))], 3),
        "max_ms": round(ms[-1], 3),
    }
    progress(f"{name:14} 1-flow delta x{reps}: median {summary['median_ms']} ms")
    return summary


def _prepare(
    method: str,
    *,
    shapes: list[Shape],
    flows: list[Flow],
    out_port: int,
    bridge: OfctlBridge,
    res: MethodResult,
) -> Callable[[], None]:
    sock = bridge.target.removeprefix("unix:")
    if method == "ofctl-add":
        return lambda: bridge.add_flows(flows)
    if method == "ofctl-replace":
        return lambda: bridge.replace_flows(flows)
    if method == "preencoded":
        start = time.perf_counter()
        msgs = [ofsocket.encode_flow_mod_table20(s.vlan, s.mac, s.tun_id, out_port) for s in shapes]
        res.prepare_seconds = time.perf_counter() - start
        return lambda: ofsocket.send_bundle(sock, msgs, timeout=600)
    if method == "wire":  # as a fresh restore: new connection, encoding in the timed part

        def install() -> None:
            with WireBridge(BR_TUN, sock, timeout=600) as fresh:
                fresh.add_flows(flows)
                if fresh.fallbacks:
                    raise RuntimeError("wire: WireBridge fell back to ovs-ofctl")

        return install
    if method == "osken":
        encode = _osken_encoder()
        return lambda: ofsocket.send_bundle(
            sock, [encode(s, out_port) for s in shapes], timeout=600
        )
    raise ValueError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
