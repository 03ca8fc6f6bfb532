"""The power-cut model's harness: workloads with their logical history, and the check of
every crash state against it (used by test_crash_model.py)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowkeeper.flows.record import parse_flow
from flowkeeper.snapshot import records
from flowkeeper.snapshot.content import JournalDelta, SnapshotData
from flowkeeper.snapshot.crashsim import FSYNC, FSYNC_DIR, RecordingFs
from flowkeeper.snapshot.crashstates import crash_states, materialise
from flowkeeper.snapshot.fsio import OS, FileSystem, is_tmp, write_all
from flowkeeper.snapshot.partition import PartitionIndex
from flowkeeper.snapshot.store import SnapshotStore

INDEX = PartitionIndex(by_vlan={1: "net-a", 2: "net-b"}, by_segment={0x3E9: "net-a"})
StoreClass = Callable[[Path, FileSystem], SnapshotStore]


def flow(table: int, vlan: int, n: int, bridge: str = "br-tun") -> str:
    text = (
        f"cookie=0xf10c000000000003,table={table},priority=2,dl_vlan={vlan},"
        f"dl_dst=fa:16:3e:00:{vlan:02x}:{n:02x},actions=pop_vlan,output:vxlan-c6120003"
    )
    return parse_flow(text, bridge).render()


def key(line: str, bridge: str = "br-tun") -> str:
    return parse_flow(line, bridge).render_key()


@dataclass
class Logical:
    """A snapshot's content as the workload meant it, kept apart from the store's code."""

    revision: int = 0
    generation: int = 0
    networks: dict[str, Any] = field(default_factory=dict)
    ports: dict[str, Any] = field(default_factory=dict)
    vlans: dict[str, int] = field(default_factory=dict)
    tunnels: list[list[str]] = field(default_factory=list)
    flows: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, data: SnapshotData) -> Logical:
        return cls(
            data.revision,
            data.generation,
            copy.deepcopy(data.networks),
            copy.deepcopy(data.ports),
            dict(data.vlans),
            [list(t) for t in data.tunnels],
            {b: dict(lines) for b, lines in data.flows.items()},
        )

    def after(self, delta: JournalDelta) -> Logical:
        new = copy.deepcopy(self)
        for bridge, keys in delta.delete.items():
            for k in keys:
                new.flows.get(bridge, {}).pop(k, None)
        for bridge, lines in delta.add.items():
            for line in lines:
                new.flows.setdefault(bridge, {})[key(line, bridge)] = line
        for event in delta.events:
            table = new.networks if event["kind"] == "network" else new.ports
            if event["op"] == "delete":
                table.pop(event["object"]["id"], None)
            else:
                table[event["object"]["id"]] = event["object"]
        if delta.vlans is not None:
            new.vlans = dict(delta.vlans)
        if delta.tunnels is not None:
            new.tunnels = [list(t) for t in delta.tunnels]
        new.revision = max(new.revision, delta.revision)
        new.generation = delta.generation
        return new

    def canon(self) -> str:
        flows = {b: lines for b, lines in self.flows.items() if lines}
        body = [self.revision, self.generation, self.networks, self.ports, self.vlans]
        return json.dumps([*body, self.tunnels, flows], sort_keys=True)


def canon(data: SnapshotData | None) -> str | None:
    return None if data is None else Logical.of(data).canon()


class Workload:
    """Runs logical steps on a store over a RecordingFs; remembers, for each step, its state
    and where in the log it started, became durable (commit) and ended."""

    def __init__(self, name: str, root: Path, store: StoreClass, fs: type[RecordingFs]) -> None:
        self.name = name
        self.root = root
        self.rec = fs(root)
        self.make_store = store
        self.store = store(root, self.rec)
        self.current: Logical | None = None
        self.states: list[str | None] = [None]
        self.spans: list[tuple[int, int, int]] = [(0, 0, 0)]
        self.problems: list[str] = []  # found while running, without any crash

    def _step(self, durable_at: str | None, action: Callable[[], None]) -> None:
        start = len(self.rec.ops)
        action()
        end = len(self.rec.ops)
        marks = [i for i in range(start, end) if self.rec.ops[i].kind == durable_at]
        commit = marks[-1] + 1 if marks else end
        self.states.append(None if self.current is None else self.current.canon())
        self.spans.append((start, commit, end))

    def compact(self, data: SnapshotData) -> None:
        self.current = Logical.of(data)
        self._step(FSYNC_DIR, lambda: self.store.write(data, INDEX))

    def append(self, delta: JournalDelta) -> None:
        assert self.current is not None
        self.current = self.current.after(delta)
        self._step(FSYNC, lambda: self.store.append(delta))

    def tear(self, delta: JournalDelta, keep: int, synced: bool) -> None:
        """A process died in the middle of an append: `keep` bytes of the record written."""

        def torn() -> None:
            name = max(n for n in self.rec.listdir(self.root) if n.startswith("journal-"))
            fd = self.rec.open(self.root / name, os.O_WRONLY | os.O_APPEND)
            write_all(self.rec, fd, records.encode(records.JOURNAL, delta.encode())[:keep])
            if synced:
                self.rec.fsync(fd)
            self.rec.close(fd)

        self._step(None, torn)

    def leave_tmp(self) -> None:
        """A compaction killed after writing a temp file, before renaming it."""

        def tmp() -> None:
            fd = self.rec.open(self.root / ".MANIFEST.tmp", os.O_WRONLY | os.O_CREAT)
            write_all(self.rec, fd, b"half a manifest")
            self.rec.close(fd)

        self._step(None, tmp)

    def restart(self, quick: bool = False) -> None:
        """The agent starts again: its load repairs; the quick boot loads with one store
        and the agent appends with another that has not read the journal."""

        def load() -> None:
            store = self.make_store(self.root, self.rec)
            report = store.load(repair=True)
            want = None if self.current is None else self.current.canon()
            if canon(report.data) != want:
                self.problems.append(f"{self.name}: restart loaded {report.problems}")
            self.store = self.make_store(self.root, self.rec) if quick else store

        self._step(None, load)

    def finish(self) -> None:
        got = canon(self.make_store(self.root, self.rec).load().data)
        if self.current is not None and got != self.current.canon():
            self.problems.append(f"{self.name}: the final state does not load as written")

    def allowed(self, point: int) -> set[str | None]:
        """What a crash after `point` operations may load: the last durable step's state,
        or that of the step in progress."""
        floor = max(i for i, (_s, commit, _e) in enumerate(self.spans) if commit <= point)
        out = {self.states[floor]}
        if floor + 1 < len(self.spans) and self.spans[floor + 1][0] < point:
            out.add(self.states[floor + 1])
        return out


PROBE = JournalDelta(revision=999, generation=99, add={"br-tun": [flow(22, 2, 99)]})


@dataclass
class Outcome:
    loaded: str | None
    problems: list[str]
    recovery: str | None  # what went wrong in load-repair-append-reload, if anything


@contextmanager
def scratch_dir() -> Iterator[Path]:
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="fk-crash-", dir=base) as tmp:
        yield Path(tmp)


def evaluate(files: Path, make_store: StoreClass) -> Outcome:
    """Load a crash state read-only; then as the agent would: repair, append, reload."""
    report = make_store(files, OS).load()
    loaded = canon(report.data)
    recovery = None
    if report.data is not None:
        store = make_store(files, OS)
        again = store.load(repair=True)
        if canon(again.data) != loaded:
            recovery = "the agent's load differs from the read-only load"
        else:
            store.append(PROBE)
            after = make_store(files, OS).load()
            if canon(after.data) != Logical.of(report.data).after(PROBE).canon():
                recovery = f"an append after the restart was lost ({after.problems})"
            elif after.problems or any(is_tmp(n) for n in os.listdir(files)):
                recovery = f"damage left after the agent's load: {after.problems}"
    return Outcome(loaded, report.problems, recovery)


HISTORY = "loaded a state its history does not allow"
RECOVERY = "the agent's recovery failed"
LIVE = "wrong without any crash"


@dataclass
class Verdict:
    states: int = 0  # distinct disk states materialised and loaded
    checked: int = 0  # (crash point, state) pairs compared with the history
    violations: list[str] = field(default_factory=list)  # the first few, in full
    counts: dict[str, int] = field(default_factory=dict)  # violations by kind

    def add(self, kind: str, text: str, limit: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self.violations) < limit:
            self.violations.append(f"{kind}: {text}")


def check(
    workloads: list[Workload], scratch: Path, limit: int = 20, until: set[str] | None = None
) -> Verdict:
    """Every crash state of every workload must load as a state its history allows.
    `until`: stop as soon as violations of all these kinds were found."""
    verdict = Verdict()
    seen: dict[tuple[int, str], Outcome] = {}
    distinct: set[str] = set()
    for n, work in enumerate(workloads):
        for problem in work.problems:
            verdict.add(LIVE, problem, limit)
        for state in crash_states(work.rec.ops, seed=n):
            digest = state.digest
            ident = (id(work.make_store), digest)
            outcome = seen.get(ident)
            if outcome is None:
                target = scratch / f"s{len(seen)}"
                target.mkdir()
                materialise(state, target)
                outcome = seen[ident] = evaluate(target, work.make_store)
                shutil.rmtree(target)
                distinct.add(digest)
            verdict.checked += 1
            op = work.rec.ops[state.point - 1] if state.point else "start"
            where = f"{work.name} after op {state.point} ({op}) [{state.how}]"
            if outcome.loaded not in work.allowed(state.point):
                verdict.add(HISTORY, f"{where}: {outcome.problems}", limit)
            if outcome.recovery:
                verdict.add(RECOVERY, f"{where}: {outcome.recovery}", limit)
            if until and until <= verdict.counts.keys():
                return verdict
    verdict.states = len(distinct)
    return verdict
