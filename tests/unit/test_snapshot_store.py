"""Snapshot files: round trip, journal replay, and damage that is detected, never installed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowkeeper.flows.record import parse_flow
from flowkeeper.snapshot import records
from flowkeeper.snapshot.content import JournalDelta, SnapshotData, flow_line, key_of_line
from flowkeeper.snapshot.fsio import OsFileSystem
from flowkeeper.snapshot.partition import PartitionIndex
from flowkeeper.snapshot.store import SnapshotStore

INDEX = PartitionIndex(by_vlan={1: "net-a", 2: "net-b"}, by_segment={0x3E9: "net-a"})


def line(text: str, bridge: str = "br-tun") -> tuple[str, str]:
    return flow_line(parse_flow(text, bridge))


def sample(n: int = 20) -> SnapshotData:
    data = SnapshotData(
        revision=7, generation=3, vlans={"net-a": 1, "net-b": 2}, tunnels=[("vxlan", "198.18.0.3")]
    )
    data.networks["net-a"] = {"id": "net-a", "type": "vxlan", "segmentation_id": 1001}
    tun = data.flows.setdefault("br-tun", {})
    for i in range(n):
        key, text = line(
            f"table=20,priority=2,dl_vlan={1 + i % 2},dl_dst=fa:16:3e:00:00:{i:02x},"
            "actions=pop_vlan,set_field:0x3e9->tun_id,output:vxlan-c6120003"
        )
        tun[key] = text
    key, text = line("table=0,priority=0,actions=drop")
    tun[key] = text
    key, text = line("table=4,priority=1,tun_id=0x3e9,actions=mod_vlan_vid:1,resubmit(,10)")
    tun[key] = text
    return data


def test_key_of_line_matches_render_key() -> None:
    f = parse_flow("table=20,priority=2,idle_timeout=5,dl_vlan=1,actions=drop", "br-tun")
    assert key_of_line(f.render()) == f.render_key()


def test_round_trip_and_partitions(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snap")
    data = sample()
    store.write(data, INDEX)
    names = sorted(p.name for p in (tmp_path / "snap").iterdir())
    assert any("br-tun.net-a" in n for n in names) and any("br-tun.net-b" in n for n in names)
    assert any("br-tun.shared" in n for n in names)
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in (tmp_path / "snap").iterdir())
    report = SnapshotStore(tmp_path / "snap").load()
    assert report.problems == [] and report.data is not None
    assert report.data.flows == data.flows
    assert report.data.vlans == data.vlans and report.data.revision == 7


def test_journal_replays_on_top(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    data = sample()
    store.write(data, INDEX)
    k_new, l_new = line("table=22,priority=1,dl_vlan=1,actions=pop_vlan,output:vxlan-c6120003")
    k_old = next(iter(data.flows["br-tun"]))
    store.append(
        JournalDelta(
            revision=9,
            generation=3,
            add={"br-tun": [l_new]},
            delete={"br-tun": [k_old]},
            events=[{"kind": "port", "op": "put", "object": {"id": "p1", "network_id": "net-a"}}],
        )
    )
    report = SnapshotStore(tmp_path).load()
    assert report.data is not None and report.journal_records == 1
    assert k_new in report.data.flows["br-tun"] and k_old not in report.data.flows["br-tun"]
    assert report.data.revision == 9 and "p1" in report.data.ports


def test_damaged_partition_is_never_loaded(tmp_path: Path) -> None:
    SnapshotStore(tmp_path).write(sample(), INDEX)
    part = next(p for p in tmp_path.iterdir() if p.name.startswith("part-"))
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    part.write_bytes(bytes(raw))
    report = SnapshotStore(tmp_path).load()
    assert report.data is None
    assert "checksum" in report.problems[0] or "partition" in report.problems[0]


def _journal_file(directory: Path) -> Path:
    return next(p for p in directory.iterdir() if p.name.startswith("journal-"))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_truncation_or_bit_flip_of_the_journal_keeps_a_good_prefix(data: st.DataObject) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        store = SnapshotStore(directory)
        base = sample(6)
        store.write(base, INDEX)
        deltas = []
        for i in range(5):
            _k, text = line(f"table=22,priority=1,dl_vlan={i + 1},actions=drop")
            deltas.append(JournalDelta(revision=10 + i, generation=3, add={"br-tun": [text]}))
            store.append(deltas[-1])
        journal = _journal_file(directory)
        raw = bytearray(journal.read_bytes())
        if data.draw(st.booleans(), label="truncate"):
            cut = data.draw(st.integers(0, len(raw)), label="cut")
            raw = raw[:cut]
        else:
            pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
            raw[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        journal.write_bytes(bytes(raw))
        report = SnapshotStore(directory).load()
        assert report.data is not None
        kept = report.journal_records
        # Exactly the first `kept` deltas are applied: a consistent prefix, nothing invented.
        expected = sample(6)
        from flowkeeper.snapshot.content import apply_delta

        for delta in deltas[:kept]:
            apply_delta(expected, delta)
        assert report.data.flows == expected.flows
        assert report.data.revision == (deltas[kept - 1].revision if kept else 7)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_damage_to_manifest_or_partitions_is_detected(data: st.DataObject) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        SnapshotStore(directory).write(sample(8), INDEX)
        files = sorted(
            p for p in directory.iterdir() if p.name == "MANIFEST" or p.name.startswith("part-")
        )
        victim = files[data.draw(st.integers(0, len(files) - 1), label="file")]
        raw = bytearray(victim.read_bytes())
        if data.draw(st.booleans(), label="truncate"):
            raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")]
        else:
            pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
            raw[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        victim.write_bytes(bytes(raw))
        report = SnapshotStore(directory).load()
        assert report.data is None and report.problems


def test_record_scan_stops_at_first_bad_record() -> None:
    good = records.encode(records.JOURNAL, b"one") + records.encode(records.JOURNAL, b"two")
    recs, stop = records.scan(good + b"FK\x01\x01garbage")
    assert [r.payload for r in recs] == [b"one", b"two"] and stop is not None
    rng = random.Random(1)
    for _ in range(50):
        cut = rng.randrange(len(good))
        recs, _ = records.scan(good[:cut])
        assert [r.payload for r in recs] == [b"one", b"two"][: len(recs)]


class _Crash(Exception):
    pass


class _Killed(OsFileSystem):
    """The real file system, but the process dies after `steps` changing operations."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    def _step(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _Crash

    def write(self, fd: int, data: bytes) -> int:
        self._step()
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        self._step()
        super().fsync(fd)

    def rename(self, src: Path, dst: Path) -> None:
        self._step()
        super().rename(src, dst)

    def unlink(self, path: Path) -> None:
        self._step()
        super().unlink(path)

    def fsync_dir(self, directory: Path) -> None:
        self._step()
        super().fsync_dir(directory)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=40))
def test_a_kill_at_any_point_of_compaction_leaves_old_or_new_state(crash_at: int) -> None:
    """Kill the writer after `crash_at` file-system steps: the next load sees a whole state.
    (Power cuts, where unsynced writes are lost too, are the crash model's: test_crash_model.)
    """
    import tempfile

    from flowkeeper.snapshot.content import apply_delta

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        old = sample(6)
        SnapshotStore(directory).write(old, INDEX)
        _k, extra = line("table=22,priority=1,dl_vlan=2,actions=drop")
        delta = JournalDelta(revision=8, generation=3, add={"br-tun": [extra]})
        SnapshotStore(directory).append(delta)
        expected_old = sample(6)
        apply_delta(expected_old, delta)
        new = sample(12)
        new.revision = 20
        try:
            SnapshotStore(directory, _Killed(crash_at)).write(new, INDEX)
            finished = True
        except _Crash:
            finished = False
        report = SnapshotStore(directory).load()
        assert report.data is not None, report.problems
        if finished:
            assert report.data.flows == new.flows and report.data.revision == 20
        else:
            assert report.data.flows in (expected_old.flows, new.flows)


def _torn_journal(directory: Path) -> tuple[Path, int]:
    """A snapshot with one journal record and then half a record (a crash mid-append)."""
    store = SnapshotStore(directory)
    store.write(sample(4), INDEX)
    _k, text = line("table=22,priority=1,dl_vlan=1,actions=drop")
    store.append(JournalDelta(revision=8, generation=3, add={"br-tun": [text]}))
    journal = _journal_file(directory)
    good = journal.stat().st_size
    torn = records.encode(records.JOURNAL, JournalDelta(revision=9, generation=3).encode())
    with journal.open("ab") as f:
        f.write(torn[: len(torn) // 2])
    return journal, good


LATER = JournalDelta(
    revision=10,
    generation=4,
    add={"br-tun": [line("table=22,priority=1,dl_vlan=2,actions=drop")[1]]},
)


def _assert_later_kept(directory: Path) -> None:
    report = SnapshotStore(directory).load()
    assert report.data is not None and report.journal_records == 2, report.problems
    assert report.problems == []
    assert key_of_line(LATER.add["br-tun"][0]) in report.data.flows["br-tun"]
    assert report.data.revision == 10


def test_an_append_after_a_torn_tail_survives_the_next_load(tmp_path: Path) -> None:
    """A crash mid-append left half a record; the restarted agent appends: nothing is lost."""
    journal, good = _torn_journal(tmp_path)
    restarted = SnapshotStore(tmp_path)
    report = restarted.load(repair=True)  # the agent's own load cuts the torn tail
    assert report.journal_records == 1
    [problem] = report.problems
    assert (
        str(journal) in problem and f"offset {good}" in problem and "kept the 1 records" in problem
    )
    assert "cut the" in problem and journal.stat().st_size == good
    restarted.append(LATER)
    _assert_later_kept(tmp_path)


def test_a_fresh_store_appends_after_the_good_prefix_only(tmp_path: Path) -> None:
    """The agent's store may append without having loaded (the quick boot loaded it): it
    finds the good prefix itself and cuts what follows before it writes."""
    _torn_journal(tmp_path)
    SnapshotStore(tmp_path).append(LATER)
    _assert_later_kept(tmp_path)


def test_read_only_load_and_inspect_change_nothing(tmp_path: Path) -> None:
    _torn_journal(tmp_path)
    (tmp_path / ".MANIFEST.tmp").write_bytes(b"left by a crash")

    def files() -> dict[str, tuple[bytes, int]]:
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}

    before = files()
    report = SnapshotStore(tmp_path).load()
    assert report.journal_records == 1 and report.problems
    assert SnapshotStore(tmp_path).inspect()["problems"]
    assert files() == before


class _Short(OsFileSystem):
    """Writes at most 7 bytes at a time; optionally fails after `fail_after` bytes."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.written = 0
        self.fail_after = fail_after

    def write(self, fd: int, data: bytes) -> int:
        if self.fail_after is not None and self.written >= self.fail_after:
            raise OSError(28, "No space left on device")
        n = super().write(fd, data[:7])
        self.written += n
        return n


def test_short_writes_are_retried_and_a_failed_append_leaves_no_torn_record(
    tmp_path: Path,
) -> None:
    SnapshotStore(tmp_path, _Short()).write(sample(4), INDEX)
    store = SnapshotStore(tmp_path, _Short())
    store.append(LATER)
    assert SnapshotStore(tmp_path).load().journal_records == 1
    size = _journal_file(tmp_path).stat().st_size
    failing = SnapshotStore(tmp_path, _Short(fail_after=20))
    with pytest.raises(OSError, match="No space"):
        failing.append(LATER)
    assert _journal_file(tmp_path).stat().st_size == size  # cut back: nothing torn
    store.append(LATER)
    report = SnapshotStore(tmp_path).load()
    assert report.journal_records == 2 and report.problems == []


class _Eio(OsFileSystem):
    def __init__(self, victim: str) -> None:
        self.victim = victim

    def read(self, path: Path) -> bytes:
        if path.name.startswith(self.victim):
            raise OSError(5, "Input/output error", str(path))
        return super().read(path)


def test_an_io_error_makes_the_snapshot_unusable_without_raising(tmp_path: Path) -> None:
    _torn_journal(tmp_path)
    for victim in ("MANIFEST", "part-", "journal-"):
        report = SnapshotStore(tmp_path, _Eio(victim)).load(repair=True)
        assert report.data is None, victim
        assert "Input/output error" in report.problems[0]
        assert SnapshotStore(tmp_path, _Eio(victim)).inspect()["problems"]


def test_temp_files_are_removed_and_a_missing_journal_is_started(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.write(sample(4), INDEX)
    (tmp_path / ".MANIFEST.tmp").write_bytes(b"x")
    (tmp_path / ".part-br-tun.shared-00000000.snap.tmp").write_bytes(b"x")
    store.write(sample(5), INDEX)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    (tmp_path / ".journal-00000009.log.tmp").write_bytes(b"x")
    _journal_file(tmp_path).unlink()
    report = SnapshotStore(tmp_path).load(repair=True)
    assert report.data is not None and "missing" in report.problems[0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert _journal_file(tmp_path).stat().st_size == 0
    assert SnapshotStore(tmp_path).load().problems == []


def test_a_well_formed_record_that_cannot_be_applied_ends_the_journal(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.write(sample(4), INDEX)
    store.append(LATER)
    bad = JournalDelta(revision=11, generation=4, events=[{"kind": "port", "op": "put"}])
    with _journal_file(tmp_path).open("ab") as f:
        f.write(records.encode(records.JOURNAL, bad.encode()))
        f.write(records.encode(records.JOURNAL, JournalDelta(revision=12, generation=4).encode()))
    report = SnapshotStore(tmp_path).load()
    assert report.data is not None and report.journal_records == 1
    assert report.data.revision == 10 and "undecodable" in report.problems[0]


def test_a_journal_shortened_behind_the_stores_back_is_never_padded(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.write(sample(4), INDEX)
    store.append(LATER)
    store.append(LATER)
    journal = _journal_file(tmp_path)
    raw = journal.read_bytes()
    journal.write_bytes(raw[: len(raw) // 2 + 3])  # one record and a bit of the second
    store.append(JournalDelta(revision=12, generation=4))
    report = SnapshotStore(tmp_path).load()
    assert report.problems == [] and report.journal_records == 2
    assert report.data is not None and report.data.revision == 12
