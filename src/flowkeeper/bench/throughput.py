"""Port-create throughput: `clients` concurrent API clients, spread over the servers, each
creating ports in a loop until `count` have been acknowledged (or `max_seconds` passed).

Each client has a connection of its own (aiohttp session) to server (client % servers).
The ports go to hosts given by `placement` (network id, host) in turn, so that their
events reach as many hosts as the benchmark's networks have members. Also: a process's
resident memory (/proc/PID/status VmRSS), for the servers' memory per port.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from flowkeeper.client import AsyncClient
from flowkeeper.errors import FlowkeeperError


@dataclass
class Burst:
    clients: int
    servers: int
    acked: list[str] = field(default_factory=list)  # port ids the API acknowledged
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def per_s(self) -> float:
        return len(self.acked) / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "clients": self.clients,
            "servers": self.servers,
            "ports_acknowledged": len(self.acked),
            "errors": len(self.errors),
            "first_errors": self.errors[:3],
            "seconds": round(self.seconds, 3),
            "ports_per_s": round(self.per_s, 1),
        }


def mac_of(n: int) -> str:
    return f"fa:16:3d:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"


def create_burst(
    urls: list[str],
    token: str,
    placement: list[tuple[str, str]],
    count: int,
    *,
    clients: int = 32,
    ca: str | None = None,
    max_seconds: float = 300.0,
    first: int = 0,
) -> Burst:
    """`first`: the number of the first port (its MAC), for a second burst on one lab."""
    return asyncio.run(
        _burst(
            urls,
            token,
            placement,
            range(first, first + count),
            clients=clients,
            ca=ca,
            max_seconds=max_seconds,
        )
    )


async def _burst(
    urls: list[str],
    token: str,
    placement: list[tuple[str, str]],
    numbers: range,
    *,
    clients: int,
    ca: str | None,
    max_seconds: float,
) -> Burst:
    burst = Burst(clients, len(urls))
    conns = [AsyncClient(urls[i % len(urls)], token, ca=ca) for i in range(clients)]
    todo = iter(numbers)
    deadline = time.monotonic() + max_seconds

    async def loop(conn: AsyncClient) -> None:
        while time.monotonic() < deadline:
            n = next(todo, None)
            if n is None:
                return
            net_id, host = placement[n % len(placement)]
            try:
                port = await conn.create_port(
                    net_id, host, mac_of(n), name=f"tput-{n}", port_security_enabled=False
                )
            except FlowkeeperError as exc:
                burst.errors.append(str(exc))
                continue
            burst.acked.append(port.id)

    started = time.monotonic()
    try:
        await asyncio.gather(*(loop(c) for c in conns))
        burst.seconds = time.monotonic() - started
    finally:
        for conn in conns:
            await conn.close()
    return burst


def rss_kib(pid: int) -> int:
    """The process's resident set size in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0
