"""`flowkeeper agent --watch-log PATH`: one JSON line per watch message received, for
diagnostics and the lab's watch-history check.

Each line: {"t": monotonic seconds, "server": URL, "revision": R, "kind": "network" |
"port" | "heartbeat" | "list", "op": "put" | "delete" | "", "id": the object's id,
"network_id": its network (a network's own id; absent for heartbeats and lists),
"dup": true only on a message the mirror ignored as already applied (a repeat of an event
of the revision a failover resumed in)}. A "list" line is a full list of the view at R
(what comes after it continues from R; nothing before it is needed).

The file is private (0600) and bounded: past `max_bytes` it is renamed to PATH.1
(replacing an older one) and a new PATH begins; the agent's log says so.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import IO

from flowkeeper.errors import UsageError
from flowkeeper.model import GroupMember, Network, Port, SecurityGroup, WatchEvent

log = logging.getLogger("flowkeeper.agent")

DEFAULT_MAX_BYTES = 64 << 20


def record(
    event: WatchEvent | None, server: str, t: float, *, dup: bool = False, listed: int = -1
) -> dict[str, object]:
    """Pure: the line for one message (or, with `listed`, for a list at that revision)."""
    if event is None:
        return {"t": t, "server": server, "revision": listed, "kind": "list", "op": ""}
    line: dict[str, object] = {
        "t": t,
        "server": server,
        "revision": event.revision,
        "kind": event.kind,
        "op": event.op,
    }
    obj = event.object
    if isinstance(obj, Network):
        line.update(id=obj.id, network_id=obj.id)
    elif isinstance(obj, Port):
        line.update(id=obj.id, network_id=obj.network_id)
    elif isinstance(obj, SecurityGroup):
        line.update(id=obj.id)
    elif isinstance(obj, GroupMember):
        line.update(id=obj.id, group_id=obj.group_id)
    if dup:
        line["dup"] = True
    return line


class WatchLog:
    """Appends lines to PATH (0600), rotating to PATH.1 past `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 1024:
            raise UsageError(f"watch log cap {max_bytes} bytes is too small (at least 1024)")
        self.path = path
        self.max_bytes = max_bytes
        self._file: IO[str] | None = None
        self._size = 0
        self._open()

    def _open(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise UsageError(f"--watch-log {self.path}: {exc.strerror}") from None
        os.fchmod(fd, 0o600)  # an older file may have had other bits
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._size = os.fstat(fd).st_size

    def event(self, event: WatchEvent, server: str, *, dup: bool = False) -> None:
        self._write(record(event, server, time.monotonic(), dup=dup))

    def listed(self, revision: int, server: str) -> None:
        self._write(record(None, server, time.monotonic(), listed=revision))

    def _write(self, line: dict[str, object]) -> None:
        if self._file is None:
            return
        text = json.dumps(line, separators=(",", ":")) + "\n"
        try:
            if self._size + len(text) > self.max_bytes:
                self._rotate()
            self._file.write(text)
            self._file.flush()
        except OSError as exc:  # diagnostics must never stop the agent
            log.error("watch log %s: %s; no more watch lines", self.path, exc.strerror)
            self.close()
            return
        self._size += len(text)

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        old = self.path.with_name(self.path.name + ".1")
        os.replace(self.path, old)
        log.info(
            "watch log %s reached %d bytes: moved to %s, a new one begins",
            self.path,
            self._size,
            old,
        )
        self._open()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
