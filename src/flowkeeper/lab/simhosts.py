"""Virtual hosts: light simulated agents that exist only in the control plane.

Each one registers a host with a tunnel IP, lists its view, follows its watch stream and
binds its own ports (reports them ACTIVE), as a real agent would, but programs no OVS.
They give the real lab hosts the remote ports, tunnels and flows of a large cloud. Every
message a virtual host receives is recorded with its arrival time (for benchmarks).

Run: python -m flowkeeper.lab.simhosts --server URL --tokens-file F --hosts N --out FILE
[--ca CA]. F is a JSON object {host name: its host token} (0600): each virtual host acts
with its own token, as a real agent does.
Every message a virtual host receives is appended to FILE as one JSON line, as it arrives:
{"t": unix time, "host", "revision", "kind", "op", "id", "status"}. It stops by itself after
--max-seconds, or on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path
from typing import TextIO

from flowkeeper.client import AsyncClient, Compacted, ServerUnavailable
from flowkeeper.errors import FlowkeeperError
from flowkeeper.model import Port

MAX_HOSTS = 2000


def virtual_host_name(i: int) -> str:
    return f"v{i:04d}"


def virtual_tunnel_ip(i: int) -> str:
    """198.18.100.0 upwards: inside the lab's underlay range, never bound by a real host."""
    if not 0 <= i < 100 * 250:
        raise ValueError(f"virtual host index {i} out of range")
    return f"198.18.{100 + i // 250}.{i % 250 + 1}"


class SimHost:
    def __init__(
        self,
        name: str,
        tunnel_ip: str,
        server: str,
        token: str | None,
        out: TextIO,
        *,
        ca: Path | None = None,
    ) -> None:
        self.name = name
        self.tunnel_ip = tunnel_ip
        self.client = AsyncClient(server, token, ca=ca)
        self.revision = 0
        self.out = out
        self.bound: set[str] = set()

    async def run(self) -> None:
        await self.client.register_host(self.name, self.tunnel_ip, virtual=True, state="syncing")
        while True:
            try:
                view = await self.client.view(self.name)
                self.revision = view.revision
                for port in view.ports:
                    await self._bind(port)
                await self.client.register_host(
                    self.name, self.tunnel_ip, virtual=True, state="in-sync", revision=view.revision
                )
                async for event in self.client.watch(self.name, self.revision):
                    self.revision = max(self.revision, event.revision)
                    if event.kind == "heartbeat" or event.object is None:
                        continue
                    status = event.object.status if isinstance(event.object, Port) else ""
                    record = {
                        "t": time.time(),
                        "host": self.name,
                        "revision": event.revision,
                        "kind": event.kind,
                        "op": event.op,
                        "id": event.object.id,
                        "status": status,
                    }
                    self.out.write(json.dumps(record) + "\n")
                    self.out.flush()
                    if isinstance(event.object, Port) and event.op == "put":
                        await self._bind(event.object)
            except (Compacted, ServerUnavailable):
                await asyncio.sleep(0.5)

    async def _bind(self, port: Port) -> None:
        if port.host == self.name and port.status != "ACTIVE" and port.id not in self.bound:
            self.bound.add(port.id)
            with contextlib.suppress(FlowkeeperError):  # deleted meanwhile: nothing to bind
                await self.client.set_port_status(port.id, "ACTIVE")


async def _main(args: argparse.Namespace, out: TextIO) -> None:
    tokens: dict[str, str] = json.loads(args.tokens_file.read_text()) if args.tokens_file else {}
    names = [virtual_host_name(i) for i in range(args.first, args.first + args.hosts)]
    sims = [
        SimHost(name, virtual_tunnel_ip(i), args.server, tokens.get(name), out, ca=args.ca)
        for i, name in enumerate(names, start=args.first)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(s.run()) for s in sims]
    ready = Path(args.out).with_suffix(".ready")
    ready.write_text(str(len(sims)))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for sim in sims:
        await sim.client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowkeeper-simhosts", description=__doc__)
    parser.add_argument("--server", required=True)
    parser.add_argument("--tokens-file", type=Path, help="JSON {host name: host token}")
    parser.add_argument("--ca", type=Path, help="CA of an https server")
    parser.add_argument("--hosts", type=int, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    if not 1 <= args.hosts <= MAX_HOSTS or not 1 <= args.max_seconds <= 3600:
        parser.error(f"--hosts must be 1..{MAX_HOSTS}, --max-seconds 1..3600")
    with open(args.out, "a", encoding="utf-8") as out:
        asyncio.run(_main(args, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
