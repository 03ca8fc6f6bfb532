"""Watch history check: what a host's watch stream must have held, against what its agent
logged (`flowkeeper agent --watch-log`); pure.

The expected stream is defined by the store's event log and the server's own fan-out
(flowkeeper.server.fanout), replayed as a server's hub does it: every event in log order
is applied to a World, then fanned out for the host, whose view state starts from the
World at `start` (a revision at which the agent was live). The messages of the host at
revision r are the fan-out's messages for the events at r.

A logged stream passes when, over the revisions after `start` up to `end`:
- its revisions never go down, and a revision never comes back once a later one was
  logged (a revision's messages form one run: strictly increasing revisions);
- the revisions it holds are exactly those at which the host had messages (no gap: no
  revision of the host's networks missing; none extra);
- at each revision it holds the same messages (kind, op, object id), none twice;
- it holds no "list" line: a full re-list after `start` is a break in the history (the
  agent fell back to listing instead of resuming its watch).
Heartbeats are not messages of a network and are left out, and so are lines marked "dup":
the agent's mirror received them again when a failover resumed the watch inside a
revision it had begun, and ignored them (they are counted, not applied).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowkeeper.model import Host
from flowkeeper.server.fanout import HostState, fan_out
from flowkeeper.server.world import World
from flowkeeper.store.base import Event

Message = tuple[str, str, str]  # kind, op, object id


def _apply(world: World, event: Event) -> None:
    """World.apply, also for a second event at the revision it is at (a transaction's)."""
    if event.revision == world.revision:
        world.revision -= 1
    world.apply(event)


def _key(event: Event) -> str:
    obj = event.object
    return obj.name if isinstance(obj, Host) else obj.id


def expected_streams(
    events: Iterable[Event], hosts: Iterable[str], start: int, end: int
) -> dict[str, dict[int, Counter[Message]]]:
    """host -> revision -> the messages the host's stream holds at that revision, for the
    revisions in (start, end]. `events` is the store's full log, oldest first, from 1."""
    world = World()
    names = list(hosts)
    states: dict[str, HostState] = {}
    out: dict[str, dict[int, Counter[Message]]] = {h: {} for h in names}
    for event in events:
        if event.revision > end:
            break
        if event.revision > start and not states:
            states = {h: HostState.from_world(h, world) for h in names}
        _apply(world, event)
        for host, state in states.items():
            for msg in fan_out(state, event, world):
                obj = msg.object
                oid = "" if obj is None else obj.id
                out[host].setdefault(event.revision, Counter())[(msg.kind, msg.op, oid)] += 1
    return out


@dataclass
class StreamCheck:
    host: str
    start: int
    end: int
    logged: int = 0  # messages in (start, end]
    dups: int = 0  # repeats the agent ignored (a watch resumed inside a revision)
    servers: set[str] = field(default_factory=set)  # the servers its messages came from
    revisions: int = 0  # distinct revisions expected
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_stream(
    host: str,
    records: Iterable[Mapping[str, Any]],
    expected: Mapping[int, Counter[Message]],
    start: int,
    end: int,
) -> StreamCheck:
    """Check one host's logged messages (dicts with revision, kind, op, id) in log order."""
    check = StreamCheck(host, start, end, revisions=len(expected))
    got: dict[int, Counter[Message]] = {}
    last = 0
    closed: set[int] = set()
    for rec in records:
        rev = int(rec["revision"])
        if rev <= start or rev > end:
            continue
        if rec.get("server"):
            check.servers.add(str(rec["server"]))
        if rec.get("kind") == "list":
            check.problems.append(f"listed again at revision {rev} instead of resuming")
            continue
        if rec.get("kind") == "heartbeat":
            continue
        if rec.get("dup"):
            check.dups += 1
            continue
        check.logged += 1
        if rev < last:
            check.problems.append(f"revision {rev} logged after {last}")
        elif rev in closed:
            check.problems.append(f"revision {rev} logged again after a later one")
        if rev != last and last:
            closed.add(last)
        last = max(last, rev)
        msg = (str(rec["kind"]), str(rec["op"]), str(rec["id"]))
        got.setdefault(rev, Counter())[msg] += 1
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing:
        check.problems.append(f"{len(missing)} revision(s) missing, first {missing[:5]}")
    if extra:
        check.problems.append(f"{len(extra)} revision(s) not for this host, first {extra[:5]}")
    for rev in sorted(set(got) & set(expected)):
        if got[rev] != expected[rev]:
            want, have = expected[rev], got[rev]
            check.problems.append(
                f"revision {rev}: missing {sorted((want - have).elements())[:3]}, "
                f"extra or twice {sorted((have - want).elements())[:3]}"
            )
            if len(check.problems) > 20:
                break
    return check


def check_history(
    host: str,
    records: Sequence[Mapping[str, Any]],
    events: Sequence[Event],
    start: int,
    end: int,
    *,
    restarts: Sequence[int] = (),
) -> list[StreamCheck]:
    """Check a host's whole logged history over (start, end], across deliberate agent
    restarts: `restarts` holds, in order, the store revision at which each restart stopped
    the agent (everything up to it had reached the agent). Each restart's agent lists
    again ("list" line at R): its stream is then checked from R. The log is cut there:
    (start, stop 1], (list 1, stop 2], ..., (list n, end]. A list that is not one of
    these restarts is a problem of the segment it ends."""
    first = -1
    for i, rec in enumerate(records):
        if rec.get("kind") == "list" and int(rec["revision"]) <= start:
            first = i  # the window opens after the agent's last list before `start`
    chunks: list[tuple[int, int, list[Mapping[str, Any]]]] = []
    seg_start, chunk, k = start, [], 0
    for rec in records[first + 1 :]:
        if rec.get("kind") != "list":
            chunk.append(rec)
            continue
        if k < len(restarts):
            chunks.append((seg_start, restarts[k], chunk))
            seg_start, chunk, k = int(rec["revision"]), [], k + 1
        else:
            chunk.append(rec)  # a list of no restart: check_stream reports it
    chunks.append((seg_start, end, chunk))
    checks = []
    for n, (lo, hi, recs) in enumerate(chunks):
        expected = expected_streams(events, [host], lo, hi)[host]
        check = check_stream(host, recs, expected, lo, hi)
        if n == len(chunks) - 1 and k < len(restarts):
            check.problems.append(f"{len(restarts) - k} restart(s) without a new list")
        checks.append(check)
    return checks
