"""The physical limit under the control plane: the raw write rate of its store on this
machine, measured in the same run as the control plane itself.

- etcd: `clients` concurrent aetcd clients (spread over the members' endpoints) in a tight
  loop, each transaction the shape of the etcd store's port create: three compares (the
  network key's mod revision unchanged; the port key and its MAC index key absent) and
  five puts (the port, about 320 bytes; its MAC, network and host index keys; the event
  head, one key every transaction writes). Keys live under a prefix of their own,
  removed afterwards.
- SQLite: one connection with the store's pragmas (WAL, synchronous=FULL) committing one
  row per transaction in a tight loop (SQLite has one writer at a time: the store runs one
  call at a time as well), in a scratch file next to the store's.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

VALUE = b"x" * 320  # about the size of a port's JSON


@dataclass
class RawRate:
    store: str
    clients: int
    txns: int
    errors: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.txns / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "store": self.store,
            "clients": self.clients,
            "txns": self.txns,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "txn_per_s": round(self.per_s, 1),
        }


def etcd_txn_rate(endpoints: list[str], clients: int = 32, seconds: float = 5.0) -> RawRate:
    """Transactions per second of `clients` concurrent tight loops for `seconds`."""
    return asyncio.run(_etcd(endpoints, clients, seconds))


async def _etcd(endpoints: list[str], clients: int, seconds: float) -> RawRate:
    import aetcd

    prefix = f"bench-raw-{uuid.uuid4().hex[:8]}/"
    conns = []
    for i in range(clients):
        host, port = endpoints[i % len(endpoints)].rsplit(":", 1)
        conn = aetcd.Client(host=host, port=int(port), timeout=5)
        await conn.connect()
        conns.append(conn)
    done = [0]
    errors = [0]
    net, head = f"{prefix}network".encode(), f"{prefix}head".encode()
    await conns[0].put(net, VALUE)
    net_mod = (await conns[0].get(net)).mod_revision
    stop_at = time.monotonic() + seconds

    async def loop(n: int, conn: aetcd.Client) -> None:
        tx = conn.transactions
        k = 0
        while time.monotonic() < stop_at:
            port, mac = f"{prefix}port/{n}-{k}".encode(), f"{prefix}mac/{n}-{k}".encode()
            index = [f"{prefix}{kind}/{n}-{k}".encode() for kind in ("net-ports", "host-ports")]
            try:
                ok, _ = await conn.transaction(
                    compare=[tx.mod(net) == net_mod, tx.create(port) == 0, tx.create(mac) == 0],
                    success=[
                        tx.put(port, VALUE),
                        tx.put(mac, port),
                        *(tx.put(key, b"") for key in index),
                        tx.put(head, b""),
                    ],
                    failure=[],
                )
            except aetcd.ClientError:
                errors[0] += 1
                await asyncio.sleep(0.05)
                continue
            if ok:
                done[0] += 1
            else:
                errors[0] += 1
            k += 1

    started = time.monotonic()
    try:
        await asyncio.gather(*(loop(n, c) for n, c in enumerate(conns)))
        elapsed = time.monotonic() - started
        await conns[0].delete_prefix(prefix.encode())
    finally:
        for conn in conns:
            await conn.close()
    return RawRate("etcd", clients, done[0], errors[0], elapsed)


def sqlite_commit_rate(directory: Path, seconds: float = 5.0) -> RawRate:
    """Commits per second of one connection, one row per transaction, for `seconds`."""
    path = directory / f"bench-raw-{uuid.uuid4().hex[:8]}.db"
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, body BLOB)")
        done = 0
        started = time.monotonic()
        stop_at = started + seconds
        while time.monotonic() < stop_at:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?, ?)", (f"r{done}", VALUE))
            db.execute("COMMIT")
            done += 1
        elapsed = time.monotonic() - started
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            with_suffix = Path(f"{path}{suffix}")
            if with_suffix.exists():
                os.unlink(with_suffix)
    return RawRate("sqlite", 1, done, 0, elapsed)
