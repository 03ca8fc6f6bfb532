"""SQLite store helpers: private files, the one-event-per-write recorder, row decoding."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import cast

from flowkeeper.model import Host
from flowkeeper.store.base import (
    KINDS,
    Event,
    Kind,
    Op,
    StoreError,
    StoreObject,
    decode_object,
    encode_object,
)

FILE_MODE = 0o600


def create_private(path: Path) -> None:
    """Create the database file (and its directory) readable by the owner only."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


class Writer:
    """Inside one write transaction: records the event of the write and bumps the revision."""

    def __init__(self, db: sqlite3.Connection, revision: int) -> None:
        self.db = db
        self.revision = revision
        self.bumped = False

    @property
    def next(self) -> int:
        return self.revision + 1

    def record(self, kind: Kind, op: Op, obj: StoreObject, prev: StoreObject | None) -> None:
        if self.bumped:
            raise StoreError("internal: one event per write")
        oid = obj.name if isinstance(obj, Host) else obj.id
        self.db.execute(
            "INSERT INTO events (revision, kind, op, id, object, prev) VALUES (?,?,?,?,?,?)",
            (self.next, kind, op, oid, encode_object(obj), prev and encode_object(prev)),
        )
        self.db.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (self.next,))
        self.revision = self.next
        self.bumped = True


def decode_event(row: tuple[object, ...]) -> Event:
    revision, kind, op, oid, obj, prev = row
    if kind not in KINDS or op not in ("put", "delete"):
        raise StoreError(f"damaged event at revision {revision} in the store")
    return Event(
        int(cast(int, revision)),
        kind,
        op,
        str(oid),
        decode_object(kind, str(obj)),
        None if prev is None else decode_object(kind, str(prev)),
    )


NETS = "SELECT data FROM networks ORDER BY name"
PORTS = "SELECT data FROM ports ORDER BY id"
HOSTS = "SELECT data FROM hosts ORDER BY name"
GROUPS = "SELECT data FROM security_groups ORDER BY id"


def parse_json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise StoreError(f"damaged record in the store: {exc}") from None
