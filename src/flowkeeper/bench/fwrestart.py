"""`bench firewall --lab-ports N`, last part: agent restarts at that size under a stream.

A counted TCP stream runs from the VM on h1 to the VM on h2 through both hosts' firewalls
(the group's remote-group rule tcp 8000-8099 lets it in on h2), while one host's agent is
restarted: SIGTERM of h2's (the host enforcing the ingress rule), then kill -9 of h1's
(the sender's). Per restart: the stream's resets and lost bytes (what was sent and did not
arrive, in order) and the time from the stop to the agent's "in sync at revision" line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flowkeeper.errors import FlowkeeperError
from flowkeeper.lab import trafficrun
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.state import LabState, VmState

STREAM_PORT = 8001  # inside the group's remote-group rule (tcp 8000-8099)
STREAM_S = 30.0  # each stream's sending time: the restart and the sync fall inside it
RATE = 100_000  # bytes per second
GRACE_S = 8.0
LEAD_S = 2.0  # stream time before the restart
SYNC_TIMEOUT_S = 25.0
SCENARIOS = (("h2", "SIGTERM"), ("h1", "kill -9"))


@dataclass(frozen=True)
class Counted:
    """One stream's verdict: resets on either side and bytes sent but not received."""

    sent: int
    received: int
    resets: int
    sequence_errors: int
    error: str

    @property
    def lost_bytes(self) -> int:
        return max(0, self.sent - self.received)


def counted(client_side: dict[str, Any], server_side: dict[str, Any]) -> Counted:
    return Counted(
        sent=int(client_side["sent"]),
        received=int(server_side["received"]),
        resets=int(client_side["resets"]) + int(server_side["resets"]),
        sequence_errors=int(server_side["sequence_errors"]),
        error=str(client_side["error"]),
    )


def log_time(line: str) -> float | None:
    """Unix time of an agent log line ('YYYY-mm-dd HH:MM:SS,mmm ...'), None if it has none."""
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def synced_at(lines: list[str], after: float) -> float | None:
    """Time of the first 'in sync at revision' line stamped at or after `after`."""
    for line in lines:
        stamp = log_time(line)
        if stamp is not None and stamp >= after and "in sync at revision" in line:
            return stamp
    return None


def _wait_synced(log: Path, after: float) -> float | None:
    deadline = time.monotonic() + SYNC_TIMEOUT_S
    while time.monotonic() < deadline:
        found = synced_at(log.read_text().splitlines(), after)
        if found is not None:
            return found
        time.sleep(0.1)
    return None


def _stream(state: LabState, src: VmState, dst: VmState, name: str) -> tuple[Any, Any]:
    total = STREAM_S + GRACE_S + 2
    server = trafficrun.start(
        state, dst, f"{name}-server", "stream-server", "--port", str(STREAM_PORT),
        "--seconds", str(total), seconds=total, ready=True,
    )  # fmt: skip
    client = trafficrun.start(
        state, src, f"{name}-client", "stream-client", "--dst", dst.ip,
        "--port", str(STREAM_PORT), "--seconds", str(STREAM_S), "--rate", str(RATE),
        "--grace", str(GRACE_S), seconds=STREAM_S + GRACE_S + 5,
    )  # fmt: skip
    return server, client


def one(lab: Lab, state: LabState, host: str, how: str) -> dict[str, Any]:
    """One restart of `host`'s agent under a stream from fwvm1 to fwvm2."""
    server, client = _stream(state, state.vm("fwvm1"), state.vm("fwvm2"), f"fwrs-{host}")
    time.sleep(LEAD_S)
    began = time.time()
    lab.restart_agent(host, hard=how == "kill -9")
    synced = _wait_synced(Path(state.host(host).path("agent.log")), began)
    c = counted(client.result(), server.result())
    if synced is None:
        late = f"not in sync {SYNC_TIMEOUT_S:.0f} s after {how}"
        raise FlowkeeperError(f"bench: {host}'s agent {late}")
    if synced - began > STREAM_S - LEAD_S:
        raise FlowkeeperError(f"bench: {host}'s agent synced after the stream ended ({how})")
    return {
        "host": host,
        "restart": how,
        "in_sync_after_s": round(synced - began, 3),
        "stream_sent_bytes": c.sent,
        "stream_lost_bytes": c.lost_bytes,
        "stream_resets": c.resets,
        "stream_sequence_errors": c.sequence_errors,
        "stream_error": c.error,
        "connections_kept": int(c.resets == 0 and c.lost_bytes == 0 and not c.error),
    }


def run(lab: Lab, state: LabState, progress: Any) -> list[dict[str, Any]]:
    out = []
    for host, how in SCENARIOS:
        row = one(lab, state, host, how)
        progress(
            f"agent restart ({how}) of {host}: in sync after {row['in_sync_after_s']} s; "
            f"stream {row['stream_sent_bytes']} bytes sent, {row['stream_lost_bytes']} lost, "
            f"{row['stream_resets']} resets"
        )
        out.append(row)
    return out
