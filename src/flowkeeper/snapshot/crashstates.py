"""The disk states a power cut may leave after each prefix of a recorded operation log; pure.

The model (conservative, after ALICE and CrashMonkey):
- a write or truncate is durable once its file is fsynced; before that, the file's
  pending changes may be lost, kept in part (in order, the first one lost torn at any
  byte), kept as zeros (the size reached the disk, the data did not), or kept out of
  order (a later write made it, an earlier one did not);
- a create, rename or unlink is durable once its directory is fsynced; before that, any
  subset of the directory's pending name changes may have reached the disk (a rename
  itself is atomic: the target names the old file or the new one, never neither);
- nothing else is assumed: an fsync of a file says nothing about its name.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flowkeeper.snapshot.crashsim import (
    CREATE,
    FSYNC,
    FSYNC_DIR,
    RENAME,
    TRUNC,
    UNLINK,
    WRITE,
    Op,
)
from flowkeeper.snapshot.records import HEADER_SIZE

ALL_SUBSETS_UP_TO = 5  # pending name changes: every subset up to this many, else a sample
FULL_PRODUCT_UP_TO = 48  # content choices across files: every combination up to this many
SAMPLES = 12  # random subsets / combinations added beyond those


@dataclass(frozen=True)
class CrashState:
    """One disk state: file name -> content, and how it came about."""

    point: int  # how many operations of the log had been issued
    files: tuple[tuple[str, bytes], ...]
    how: str

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for name, data in self.files:
            h.update(name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
        return h.hexdigest()


@dataclass
class _Inode:
    durable: bytes = b""
    pending: list[Op] = field(default_factory=list)  # writes and truncates since its fsync


def replay(content: bytes, ops: Sequence[Op]) -> bytes:
    """A file's content after writes and truncates."""
    buf = bytearray(content)
    for op in ops:
        if op.kind == TRUNC:
            del buf[op.size :]
            buf.extend(bytes(max(0, op.size - len(buf))))
        else:
            if op.offset > len(buf):
                buf.extend(bytes(op.offset - len(buf)))
            buf[op.offset : op.offset + len(op.data)] = op.data
    return bytes(buf)


def _with(op: Op, data: bytes) -> Op:
    return Op(WRITE, op.inode, offset=op.offset, data=data)


class Disk:
    """What is durable and what is pending after a prefix of the log."""

    def __init__(self) -> None:
        self.inodes: dict[int, _Inode] = {}
        self.durable: dict[str, int] = {}  # names on disk for sure
        self.live: dict[str, int] = {}  # names as the process sees them
        self.pending: list[Op] = []  # name changes since the directory's last fsync

    def apply(self, op: Op) -> None:
        if op.kind == CREATE:
            self.inodes[op.inode] = _Inode()
            self.live[op.name] = op.inode
            self.pending.append(op)
        elif op.kind in (WRITE, TRUNC):
            self.inodes[op.inode].pending.append(op)
        elif op.kind == FSYNC:
            inode = self.inodes[op.inode]
            inode.durable = replay(inode.durable, inode.pending)
            inode.pending = []
        elif op.kind == RENAME:
            self.live[op.dst] = self.live.pop(op.name)
            self.pending.append(op)
        elif op.kind == UNLINK:
            del self.live[op.name]
            self.pending.append(op)
        elif op.kind == FSYNC_DIR:
            self.durable = dict(self.live)
            self.pending = []
        else:
            raise ValueError(f"unknown operation {op.kind!r}")

    def names_after(self, kept: Sequence[Op]) -> dict[str, int]:
        names = dict(self.durable)
        for op in kept:
            if op.kind == CREATE:
                names[op.name] = op.inode
            elif op.kind == RENAME:
                if names.get(op.name) == op.inode:
                    del names[op.name]
                names[op.dst] = op.inode
            elif names.get(op.name) == op.inode:  # unlink
                del names[op.name]
        return names

    def contents(self, inode: int, rng: random.Random) -> list[tuple[str, bytes]]:
        """Every content the file may have on disk: (how, bytes), deduplicated."""
        node = self.inodes[inode]
        out: dict[bytes, str] = {node.durable: "synced content only"}
        done = node.durable
        ops = node.pending
        for j, op in enumerate(ops):
            label = f"{j} of {len(ops)} unsynced changes kept, then"
            if op.kind == WRITE:
                for cut in cut_points(len(op.data), rng):
                    data = replay(done, [_with(op, op.data[:cut])])
                    out.setdefault(data, f"{label} a write torn at byte {cut}/{len(op.data)}")
                zeros = replay(done, [_with(op, bytes(len(op.data)))])
                out.setdefault(zeros, f"{label} a write's size kept, its data zeros")
                if j + 1 < len(ops) and ops[j + 1].kind == WRITE:
                    skipped = replay(zeros, [ops[j + 1]])
                    out.setdefault(skipped, f"{label} a write lost, the next one kept")
            done = replay(done, [op])
            out.setdefault(done, f"{j + 1} of {len(ops)} unsynced changes kept")
        return [(how, data) for data, how in out.items()]

    def states(self, point: int, rng: random.Random) -> Iterator[CrashState]:
        """The crash states after `point` operations."""
        for subset in subsets(len(self.pending), rng):
            kept = [self.pending[i] for i in subset]
            names = self.names_after(kept)
            dir_how = f"{len(kept)} of {len(self.pending)} unsynced name changes kept"
            inodes = sorted(set(names.values()))
            choices = [self.contents(i, rng) for i in inodes]
            for combo in combinations(choices, rng):
                content = dict(zip(inodes, combo, strict=True))
                files = tuple(sorted((n, content[i][1]) for n, i in names.items()))
                hows = [f"{n}: {content[i][0]}" for n, i in sorted(names.items())]
                yield CrashState(point, files, "; ".join([dir_how, *hows]))


def cut_points(size: int, rng: random.Random) -> list[int]:
    """Where a write may be torn: at record-header edges, the middle, the end, and two
    random bytes (0 and `size` are the "lost" and "kept" cases)."""
    points = {1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 1, size // 2, size - 1}
    if size > 2:
        points |= {rng.randrange(1, size), rng.randrange(1, size)}
    return sorted(p for p in points if 0 < p < size)


def subsets(n: int, rng: random.Random) -> list[tuple[int, ...]]:
    """Which of n pending name changes reached the disk: all subsets of a few, else every
    prefix, every one alone, every one missing, and a random sample."""
    if n <= ALL_SUBSETS_UP_TO:
        return [c for k in range(n + 1) for c in itertools.combinations(range(n), k)]
    out = {tuple(range(k)) for k in range(n + 1)}
    out |= {(i,) for i in range(n)}
    out |= {tuple(j for j in range(n) if j != i) for i in range(n)}
    for _ in range(SAMPLES):
        out.add(tuple(i for i in range(n) if rng.random() < 0.5))
    return sorted(out)


def combinations(
    choices: list[list[tuple[str, bytes]]], rng: random.Random
) -> Iterator[tuple[tuple[str, bytes], ...]]:
    """Content choices across files: the full product if small, else each file varied with
    the others all-synced-only or all-kept, plus a random sample."""
    size = 1
    for c in choices:
        size *= len(c)
    if size <= FULL_PRODUCT_UP_TO:
        yield from itertools.product(*choices)
        return
    seen: set[tuple[int, ...]] = set()
    picks: list[tuple[int, ...]] = []
    for base in (0, -1):
        for f, options in enumerate(choices):
            for k in range(len(options)):
                one = [base % len(c) for c in choices]
                one[f] = k
                picks.append(tuple(one))
    picks += [tuple(rng.randrange(len(c)) for c in choices) for _ in range(SAMPLES)]
    for pick in picks:
        if pick not in seen:
            seen.add(pick)
            yield tuple(c[k] for c, k in zip(choices, pick, strict=True))


def crash_states(ops: Sequence[Op], seed: int = 0) -> Iterator[CrashState]:
    """Every crash state the model allows, at every point of the log (0 .. len(ops))."""
    rng = random.Random(seed)  # noqa: S311 (reproducible samples, not secrets)
    disk = Disk()
    yield from disk.states(0, rng)
    for point, op in enumerate(ops, start=1):
        disk.apply(op)
        yield from disk.states(point, rng)


def materialise(state: CrashState, directory: Path) -> None:
    """Write a crash state's files into an empty directory (mode 0600)."""
    for name, data in state.files:
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o600)
