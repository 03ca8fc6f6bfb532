"""etcd watch events to store Events, grouped by revision, and the ring of recent ones; pure.

One etcd transaction is one revision; its object keys' changes are that revision's Events
(index, head, token and liveness keys are not events). Pages never split a revision.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from flowkeeper.store.base import Event, StoreError
from flowkeeper.store.etcd_keys import Keys, decode_value


@dataclass(frozen=True, slots=True)
class RawEvent:
    """What an etcd watch reports for one key (prev: the value before, with prev_kv)."""

    delete: bool
    key: bytes
    value: bytes
    mod_revision: int
    prev_value: bytes | None = None
    prev_mod_revision: int = 0
    lease: int = 0


def convert(keys: Keys, raw: RawEvent, revision: int) -> Event | None:
    """The store Event of one etcd event, None if the key is not an object's."""
    found = keys.object_kind(raw.key)
    if found is None:
        return None
    kind, oid = found
    prev = None
    if raw.prev_value is not None:
        prev = decode_value(kind, raw.prev_value, raw.prev_mod_revision)
    if raw.delete:
        if prev is None:
            raise StoreError(
                f"etcd delete of {raw.key.decode()} at revision {revision} "
                "came without its previous value"
            )
        return Event(revision, kind, "delete", oid, prev, prev)
    return Event(revision, kind, "put", oid, decode_value(kind, raw.value, revision), prev)


def group(keys: Keys, raws: Iterable[RawEvent]) -> list[tuple[int, list[Event]]]:
    """(revision, events) in revision order; revisions with no object events are left out."""
    out: list[tuple[int, list[Event]]] = []
    for raw in raws:
        rev = raw.mod_revision
        event = convert(keys, raw, rev)
        if event is None:
            continue
        if out and out[-1][0] == rev:
            out[-1][1].append(event)
        elif out and out[-1][0] > rev:
            raise StoreError(f"etcd events out of order: {rev} after {out[-1][0]}")
        else:
            out.append((rev, [event]))
    return out


def page(groups: Iterable[tuple[int, list[Event]]], after: int, limit: int | None) -> list[Event]:
    """Events of revisions > `after`, whole revisions, stopping once `limit` is reached."""
    events: list[Event] = []
    for rev, evs in groups:
        if rev <= after:
            continue
        if limit is not None and events and len(events) >= limit:
            break
        events += evs
    return events


class Ring:
    """The recent revisions the store's watch delivered: complete for (start, upto].

    Thread-safe: the watch appends on the store's loop thread; callers read from theirs.
    """

    def __init__(self, start: int, capacity: int) -> None:
        self.start = start  # every event with revision in (start, upto] is here
        self.upto = start
        self.compacted = 0  # the last etcd compaction the watch ran into
        self.capacity = capacity
        self._groups: deque[tuple[int, list[Event]]] = deque()
        self._cond = threading.Condition()

    def append(self, groups: list[tuple[int, list[Event]]], upto: int) -> None:
        with self._cond:
            for rev, evs in groups:
                if rev > self.upto:
                    self._groups.append((rev, evs))
                    self.upto = rev
            self.upto = max(self.upto, upto)
            while len(self._groups) > self.capacity:
                self.start = self._groups.popleft()[0]
            self._cond.notify_all()

    def reset(self, start: int) -> None:
        """The watch lost continuity (compaction): nothing at or before `start` is here."""
        with self._cond:
            self._groups.clear()
            self.compacted = max(self.compacted, start)
            self.start = self.upto = max(start, self.upto)
            self._cond.notify_all()

    def wait(self, revision: int, timeout: float) -> bool:
        """Until the ring holds everything up to `revision`; False after `timeout`."""
        with self._cond:
            return self._cond.wait_for(lambda: self.upto >= revision, timeout)

    def read(self, after: int, upto: int, limit: int | None) -> list[Event] | None:
        """Events in (after, upto] (whole revisions, about `limit`), None if not all here."""
        with self._cond:
            if after < self.start or self.upto < upto:
                return None
            chosen: list[tuple[int, list[Event]]] = []
            for rev, evs in reversed(self._groups):  # newest first: callers are near the end
                if rev <= after:
                    break
                if rev <= upto:
                    chosen.append((rev, evs))
        chosen.reverse()
        return page(chosen, after, limit)
