"""Host liveness from heartbeat times, for stores that keep those times (SQLite); pure.

A host is alive while its last heartbeat (`last_seen`) is at most `ttl` seconds old.
`alive since` is the first heartbeat of the current run of heartbeats: a heartbeat that
comes more than `ttl` after the one before starts a new run. A gone host is gone since
`last_seen + ttl`, the moment its liveness ran out.
"""

from __future__ import annotations

import math

from flowkeeper.model import Host
from flowkeeper.store.base import HostLiveness
from flowkeeper.validation import ValidationError


def check_ttl(ttl: float) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
        raise ValidationError(f"liveness TTL must be a number of seconds, got {ttl!r}")
    if not 0.1 <= ttl <= 3600:
        raise ValidationError(f"liveness TTL must be between 0.1 and 3600 seconds, got {ttl}")
    return float(ttl)


def comes_back(old: Host, new: Host, ttl: float) -> bool:
    """True if heartbeat `new` comes after `old`'s liveness ran out."""
    return new.last_seen - old.last_seen > ttl


def run_start(old: Host | None, old_since: float | None, new: Host, ttl: float) -> float:
    """When the run of heartbeats that `new` belongs to began."""
    if old is None or comes_back(old, new, ttl):
        return new.last_seen  # a new host, or one that comes back after it was gone
    return old.last_seen if old_since is None else old_since


def liveness(last_seen: float, since: float | None, now: float, ttl: float) -> HostLiveness:
    """Alive while the last heartbeat is at most `ttl` old; `since` is the run's start."""
    if now - last_seen <= ttl:
        return HostLiveness(True, last_seen if since is None else since)
    return HostLiveness(False, last_seen + ttl)


def must_sync(old: Host | None, new: Host, ttl: float) -> bool:
    """Whether a host PUT must reach the disk before it is acknowledged: a new host, a
    changed spec (an event), a changed state word, or a host that comes back. A heartbeat
    that moves only `last_seen` and the applied `revision` need not: losing it to a power
    cut loses only times and a revision the agent reports again at its next heartbeat."""
    if old is None or not old.same_spec(new) or comes_back(old, new, ttl):
        return True
    return old.state != new.state
