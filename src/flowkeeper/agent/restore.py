"""Boot path: put the snapshot's flows back into an OVS that lost them, before any server.

Kept free of heavy imports: the agent runs it first thing (see fastboot), before it loads
its OVSDB library and HTTP client.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from flowkeeper.flows.flowset import FlowSet
from flowkeeper.flows.ports import ports_named, renumbered, stale_by_number
from flowkeeper.flows.record import parse_rendered
from flowkeeper.pipeline.tables import COOKIE_TAG

if TYPE_CHECKING:
    from flowkeeper.agent.ovsside import HostOvs
from flowkeeper.snapshot.content import SnapshotData

log = logging.getLogger(__name__)


class RestoreTarget(Protocol):
    """What a restore needs from OVS."""

    def port_numbers(self) -> dict[str, int]: ...

    def ensure_tunnels(self, peers: set[tuple[str, str]], local_ip: str) -> None: ...

    def add_lines(self, bridge: str, lines: list[str]) -> None: ...


@dataclass
class RestoreResult:
    lines: dict[str, list[str]]  # bridge -> the flow lines now in OVS
    restored: int
    deferred: int  # flows naming a port OVS does not have (yet): the next reconcile adds them
    seconds: float  # until the flows were in OVS
    # The ports' numbers when the restore began: what the flows' port names resolved to
    # (the agent re-installs the flows of any port that has another number by now).
    numbers: dict[str, int] = field(default_factory=dict)

    @property
    def flows(self) -> FlowSet:
        """The restored lines as records (parsed after the restore, off the traffic path)."""
        return as_flowset(self.lines)


def is_ours(cookie: int) -> bool:
    return cookie >> 48 == COOKIE_TAG >> 48


def lost_bridges(installed: FlowSet, bridges: tuple[str, ...]) -> set[str]:
    """Bridges holding none of flowkeeper's flows: after a reboot, a crash, a new OVS."""
    held = {f.bridge for f in installed if is_ours(f.cookie)}
    return {b for b in bridges if b not in held}


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


def restore(
    target: RestoreTarget,
    data: SnapshotData,
    tunnel_ip: str,
    bridges: set[str] | None = None,
) -> RestoreResult:
    """Tunnels first (flows name them), then each bridge's flows in one bundle, in parallel.

    `bridges` limits the restore to the bridges that lost their flows.
    """
    started = time.monotonic()
    target.ensure_tunnels(set(data.tunnels), tunnel_ip)
    numbers = target.port_numbers()
    lines, deferred = plan(data, set(numbers))
    if bridges is not None:
        lines = {b: ls for b, ls in lines.items() if b in bridges}
    with ThreadPoolExecutor(max_workers=max(1, len(lines))) as pool:
        jobs = {b: pool.submit(_install, target, data, b, ls) for b, ls in lines.items() if ls}
        for bridge, job in jobs.items():
            lines[bridge], more_deferred = job.result()
            deferred += more_deferred
    numbers = _fix_renumbered(target, lines, numbers)
    seconds = time.monotonic() - started
    restored = sum(len(v) for v in lines.values())
    log.info(
        "restored %d flows from the snapshot in %.0f ms (%d deferred: ports missing)",
        restored,
        seconds * 1000,
        deferred,
    )
    return RestoreResult(lines, restored, deferred, seconds, numbers)


def _install(
    target: RestoreTarget, data: SnapshotData, bridge: str, lines: list[str]
) -> tuple[list[str], int]:
    """One bundle; if a port vanished meanwhile (a VIF being re-plugged), plan again."""
    dropped = 0
    for attempt in range(3):
        try:
            target.add_lines(bridge, lines)
            return lines, dropped
        except Exception as exc:  # retried with fresh ports, then raised
            if attempt == 2 or "unknown port" not in str(exc):
                raise
            log.info("restore of %s: a port changed under us (%s); planning again", bridge, exc)
            fresh, _ = plan(data, set(target.port_numbers()))
            kept = fresh.get(bridge, [])
            dropped += len(lines) - len(kept)
            lines = kept
            if not lines:
                break
    return lines, dropped


def _fix_renumbered(
    target: RestoreTarget, lines: dict[str, list[str]], before: dict[str, int]
) -> dict[str, int]:
    """A VIF re-plugged while its flows went in (as Nova re-plugs after a boot) left them
    on its old number: install them again by name, delete its old in_port flows by number.
    Returns the numbers the flows now use."""
    after = target.port_numbers()
    moved = renumbered(before, after)
    if not moved:
        return after
    for bridge, bridge_lines in lines.items():
        again = [line for line in bridge_lines if ports_named(line) & moved.keys()]
        if not again:
            continue
        _forget, deletes = stale_by_number((parse_rendered(x, bridge) for x in again), moved)
        fix = [f"delete_strict {flow.render_key()}" for flow in deletes] + again
        target.add_lines(bridge, fix)
        log.info(
            "restore of %s: %s re-plugged meanwhile; %d flows installed again",
            bridge,
            ", ".join(sorted(moved)),
            len(again),
        )
    return after


def as_flowset(lines: dict[str, list[str]]) -> FlowSet:
    """Restored lines back as records (after the restore: traffic does not wait for this)."""
    return FlowSet(
        parse_rendered(line, b) for b, bridge_lines in lines.items() for line in bridge_lines
    )


OURS_NOT_LEARNED = f"cookie={COOKIE_TAG:#x}/{(0xFFFF << 48) | (1 << 47):#x}"


def counts_match(ovs: HostOvs, data: SnapshotData) -> bool:
    """OVS holds, per bridge, as many agent flows (learned ones aside) as the snapshot."""
    for bridge in ("br-int", "br-tun"):
        held = ovs.bridges[bridge].flow_count(OURS_NOT_LEARNED)
        if held != len(data.flows.get(bridge, {})):
            return False
    return True


def snapshot_flows(data: SnapshotData) -> FlowSet:
    return as_flowset({b: list(lines.values()) for b, lines in data.flows.items()})
