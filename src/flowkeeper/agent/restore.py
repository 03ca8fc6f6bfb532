"""Boot path: put the snapshot's flows back into an OVS that lost them, before any server.

Kept free of heavy imports: the agent runs it first thing (see fastboot), before it loads
its OVSDB library and HTTP client.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from flowkeeper.flows.flowset import FlowSet
from flowkeeper.flows.ports import ports_named
from flowkeeper.flows.record import parse_rendered
from flowkeeper.pipeline.tables import COOKIE_TAG
from flowkeeper.snapshot.content import SnapshotData

log = logging.getLogger(__name__)


class RestoreTarget(Protocol):
    """What a restore needs from OVS."""

    def port_names(self) -> set[str]: ...

    def ensure_tunnels(self, peers: set[tuple[str, str]], local_ip: str) -> None: ...

    def add_lines(self, bridge: str, lines: list[str]) -> None: ...


@dataclass
class RestoreResult:
    lines: dict[str, list[str]]  # bridge -> the flow lines now in OVS
    restored: int
    deferred: int  # flows naming a port OVS does not have (yet): the next reconcile adds them
    seconds: float  # until the flows were in OVS

    @property
    def flows(self) -> FlowSet:
        """The restored lines as records (parsed after the restore, off the traffic path)."""
        return as_flowset(self.lines)


def without_ports(flows: FlowSet, missing: set[str]) -> FlowSet:
    """The flows that name none of the `missing` ports."""
    return FlowSet(f for f in flows if not (ports_named(f.render()) & missing))


def is_ours(cookie: int) -> bool:
    return cookie >> 48 == COOKIE_TAG >> 48


def lost_flows(installed: FlowSet) -> bool:
    """True when OVS holds none of flowkeeper's flows: a reboot, a crash, a new OVS."""
    return not any(is_ours(f.cookie) for f in installed)


def plan(data: SnapshotData, present: set[str]) -> tuple[dict[str, list[str]], int]:
    """Lines to install per bridge, leaving out flows that name a port OVS lacks."""
    out: dict[str, list[str]] = {}
    deferred = 0
    for bridge, lines in data.flows.items():
        refs = data.port_refs.get(bridge)
        if refs is None:
            refs = ports_named("\n".join(lines.values()))
        if refs <= present:
            out[bridge] = list(lines.values())  # the common case: nothing to filter
            continue
        ok = [line for line in lines.values() if ports_named(line) <= present]
        deferred += len(lines) - len(ok)
        out[bridge] = ok
    return out, deferred


def restore(target: RestoreTarget, data: SnapshotData, tunnel_ip: str) -> RestoreResult:
    """Tunnels first (flows name them), then each bridge's flows in one bundle, in parallel."""
    started = time.monotonic()
    target.ensure_tunnels(set(data.tunnels), tunnel_ip)
    lines, deferred = plan(data, target.port_names())
    with ThreadPoolExecutor(max_workers=max(1, len(lines))) as pool:
        jobs = [pool.submit(target.add_lines, b, ls) for b, ls in lines.items() if ls]
        for job in jobs:
            job.result()
    seconds = time.monotonic() - started
    restored = sum(len(v) for v in lines.values())
    log.info(
        "restored %d flows from the snapshot in %.0f ms (%d deferred: ports missing)",
        restored,
        seconds * 1000,
        deferred,
    )
    return RestoreResult(lines, restored, deferred, seconds)


def as_flowset(lines: dict[str, list[str]]) -> FlowSet:
    """Restored lines back as records (after the restore: traffic does not wait for this)."""
    return FlowSet(
        parse_rendered(line, b) for b, bridge_lines in lines.items() for line in bridge_lines
    )
