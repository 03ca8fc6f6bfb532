"""The power-cut model: every disk state a crash may leave, at every point of real
workloads, loads as the state the workload's history allows (see docs/snapshot.md)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from flowkeeper.snapshot import records
from flowkeeper.snapshot.content import JournalDelta, SnapshotData
from flowkeeper.snapshot.crashsim import RecordingFs
from flowkeeper.snapshot.fsio import write_all
from flowkeeper.snapshot.store import LoadReport, SnapshotStore
from tests.unit.crashmodel import (
    HISTORY,
    LIVE,
    RECOVERY,
    StoreClass,
    Verdict,
    Workload,
    check,
    flow,
    key,
    scratch_dir,
)

MIN_STATES = 1000


def snapshot(revision: int, flows: int, vlans: tuple[int, ...] = (1, 2)) -> SnapshotData:
    data = SnapshotData(
        revision=revision,
        generation=3,
        networks={"net-a": {"id": "net-a", "type": "vxlan", "segmentation_id": 1001}},
        ports={"p1": {"id": "p1", "network_id": "net-a", "host": "h1"}},
        vlans={"net-a": 1, "net-b": 2},
        tunnels=[("vxlan", "198.18.0.3")],
    )
    tun = data.flows.setdefault("br-tun", {})
    for i in range(flows):
        line = flow(20, vlans[i % len(vlans)], i)
        tun[key(line)] = line
    shared = flow(0, 7, 0)
    tun[key(shared)] = shared
    return data


def delta(revision: int, n: int, delete: list[str] | None = None) -> JournalDelta:
    port = {"id": f"p{n}", "network_id": "net-a", "host": "h2"}
    return JournalDelta(
        revision=revision,
        generation=3,
        add={"br-tun": [flow(21, 1 + n % 2, n)]},
        delete={"br-tun": delete or []},
        events=[{"kind": "port", "op": "put", "object": port}],
        vlans={"net-a": 1, "net-b": 2},
        tunnels=[("vxlan", "198.18.0.3"), ("vxlan", f"198.18.0.{n}")],
    )


def journal_and_compactions(work: Workload) -> None:
    work.compact(snapshot(10, 4))
    for n in range(3):
        work.append(delta(11 + n, n, [key(flow(20, 1, 0))] if n == 1 else None))
    work.compact(snapshot(20, 6, (1,)))  # a partition kept, one replaced, one dropped
    work.append(delta(21, 5))
    work.append(delta(22, 6))
    work.finish()


def torn_tails_and_restarts(work: Workload) -> None:
    work.compact(snapshot(10, 3))
    work.append(delta(11, 1))
    work.tear(delta(12, 2), keep=30, synced=True)  # an earlier power cut left it on disk
    work.restart()
    work.append(delta(13, 3))
    work.append(delta(14, 4))
    work.tear(delta(15, 5), keep=7, synced=False)  # the agent was killed mid-append
    work.restart(quick=True)  # the quick boot loads; the agent's store appends
    work.append(delta(16, 6))
    work.leave_tmp()
    work.restart()
    work.append(delta(17, 7))
    work.compact(snapshot(30, 2))
    work.append(delta(31, 8))
    work.finish()


def compactions_after_damage(work: Workload) -> None:
    work.compact(snapshot(40, 5))
    work.append(delta(41, 1))
    work.tear(delta(42, 2), keep=17, synced=True)  # a torn header left on disk
    work.restart(quick=True)
    work.compact(snapshot(50, 3, (2,)))  # the next compaction after a damaged journal
    work.append(delta(51, 3))
    work.leave_tmp()
    work.append(delta(52, 4))  # no restart: the temp file goes with the next compaction
    work.compact(snapshot(60, 4))
    work.append(delta(61, 5))
    work.finish()


WORKLOADS = (journal_and_compactions, torn_tails_and_restarts, compactions_after_damage)


def run_model(
    tmp: Path,
    store: StoreClass = SnapshotStore,
    fs: type[RecordingFs] = RecordingFs,
    workloads: tuple[Callable[[Workload], None], ...] = WORKLOADS,
    until: set[str] | None = None,
) -> Verdict:
    works = []
    for build in workloads:
        root = tmp / build.__name__
        root.mkdir(mode=0o700)
        work = Workload(build.__name__, root, store, fs)
        build(work)
        works.append(work)
    with scratch_dir() as scratch:
        return check(works, scratch, until=until)


def test_every_crash_state_loads_as_its_history_allows(
    tmp_path: Path, report_line: Callable[[str], None]
) -> None:
    verdict = run_model(tmp_path)
    summary = (
        f"crash model: {verdict.states} distinct crash states checked "
        f"({verdict.checked} crash points x states), violations: {verdict.counts or 0}"
    )
    report_line(summary)
    assert not verdict.violations, "\n".join(verdict.violations)
    assert verdict.states >= MIN_STATES, summary


class _OldStore(SnapshotStore):
    """The store as it was: no repair at load, appends after whatever the journal holds."""

    def load(self, *, repair: bool = False) -> LoadReport:
        return super().load(repair=False)

    def append(self, delta: JournalDelta) -> None:
        path = self.dir / self._read_manifest()["journal"]
        fd = self.fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            write_all(self.fs, fd, records.encode(records.JOURNAL, delta.encode()))
            self.fs.fsync(fd)
        finally:
            self.fs.close(fd)


class _NoDirFsync(RecordingFs):
    """A store that never fsyncs its directory: renames and creates are never durable."""

    def fsync_dir(self, directory: Path) -> None:
        pass


class _NoFileFsync(RecordingFs):
    """A store whose fsyncs of files do nothing."""

    def fsync(self, fd: int) -> None:
        pass


def test_the_model_catches_appends_after_a_torn_tail(tmp_path: Path) -> None:
    verdict = run_model(
        tmp_path,
        store=_OldStore,
        workloads=(torn_tails_and_restarts,),
        until={HISTORY, RECOVERY},
    )
    # Crash states whose last fsynced appends follow a torn record: they are gone.
    assert verdict.counts.get(HISTORY), verdict.violations
    # And wherever a crash tore the tail, the restarted agent's next append is lost.
    assert verdict.counts.get(RECOVERY), verdict.violations


def test_the_model_catches_a_missing_directory_fsync(tmp_path: Path) -> None:
    verdict = run_model(
        tmp_path, fs=_NoDirFsync, workloads=(journal_and_compactions,), until={HISTORY}
    )
    assert verdict.counts.get(HISTORY), verdict.violations
    assert not verdict.counts.get(LIVE)  # without a crash, nothing shows


def test_the_model_catches_a_missing_file_fsync(tmp_path: Path) -> None:
    verdict = run_model(
        tmp_path, fs=_NoFileFsync, workloads=(journal_and_compactions,), until={HISTORY}
    )
    assert verdict.counts.get(HISTORY), verdict.violations
    assert not verdict.counts.get(LIVE)
