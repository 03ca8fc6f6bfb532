"""The recorder logs what a workload changed; the generator builds the states a power cut
may leave: unsynced writes lost, torn or zeroed, names not durable before a dir fsync."""

from __future__ import annotations

import os
from pathlib import Path

from flowkeeper.snapshot.crashsim import CREATE, FSYNC, FSYNC_DIR, RENAME, WRITE, RecordingFs
from flowkeeper.snapshot.crashstates import crash_states, materialise
from flowkeeper.snapshot.fsio import atomic_write, write_all


def at_end(rec: RecordingFs) -> set[tuple[tuple[str, bytes], ...]]:
    point = len(rec.ops)
    return {s.files for s in crash_states(rec.ops) if s.point == point}


def new_file(rec: RecordingFs, name: str, data: bytes, sync: bool) -> None:
    fd = rec.open(rec.root / name, os.O_WRONLY | os.O_CREAT)
    write_all(rec, fd, data)
    if sync:
        rec.fsync(fd)
    rec.close(fd)


def test_the_recorder_logs_a_workload_as_it_ran(tmp_path: Path) -> None:
    rec = RecordingFs(tmp_path)
    atomic_write(rec, tmp_path / "f", b"abc")
    assert [op.kind for op in rec.ops] == [CREATE, WRITE, FSYNC, RENAME, FSYNC_DIR]
    assert rec.ops[1].data == b"abc" and rec.ops[3].dst == "f"
    fd = rec.open(tmp_path / "f", os.O_WRONLY | os.O_APPEND)
    write_all(rec, fd, b"de")
    rec.close(fd)
    assert rec.ops[-1].offset == 3 and (tmp_path / "f").read_bytes() == b"abcde"


def test_unsynced_writes_may_be_lost_torn_or_zeroed(tmp_path: Path) -> None:
    rec = RecordingFs(tmp_path)
    new_file(rec, "a", b"0123456789abcdefghijklmnopqrstuvwxyz", sync=False)
    states = {dict(f).get("a") for f in at_end(rec)}
    assert None in states  # the name never reached the disk
    assert b"" in states  # the name did, the data did not
    assert b"0123456789abcdefghijklmnopqrstuvwxyz" in states
    assert bytes(36) in states  # the size did, the data did not
    torn = {s for s in states if s and 0 < len(s) < 36}
    assert len(torn) >= 4 and all(
        b"0123456789abcdefghijklmnopqrstuvwxyz".startswith(t) for t in torn
    )


def test_a_later_write_may_reach_the_disk_before_an_earlier_one(tmp_path: Path) -> None:
    rec = RecordingFs(tmp_path)
    new_file(rec, "j", b"", sync=True)
    rec.fsync_dir(tmp_path)
    fd = rec.open(tmp_path / "j", os.O_WRONLY | os.O_APPEND)
    write_all(rec, fd, b"AAAA")
    write_all(rec, fd, b"BBBB")
    rec.close(fd)
    states = {dict(f)["j"] for f in at_end(rec)}
    assert {b"", b"AAAA", b"AAAABBBB", b"\0\0\0\0BBBB"} <= states
    assert len(states) > 6  # torn ones too


def test_a_rename_is_not_durable_before_the_directory_fsync(tmp_path: Path) -> None:
    rec = RecordingFs(tmp_path)
    atomic_write(rec, tmp_path / "m", b"old")
    atomic_write(rec, tmp_path / "m", b"new", sync_dir=False)
    states = at_end(rec)
    assert (("m", b"old"),) in states  # the rename did not reach the disk
    assert ((".m.tmp", b"new"), ("m", b"old")) in states  # the temp file did, unrenamed
    assert (("m", b"new"),) in states
    # The data was fsynced before the rename: "m" is never torn, never missing.
    assert {dict(f)["m"] for f in states} == {b"old", b"new"}
    rec.fsync_dir(tmp_path)
    assert at_end(rec) == {(("m", b"new"),)}


def test_an_unlink_is_not_durable_before_the_directory_fsync(tmp_path: Path) -> None:
    rec = RecordingFs(tmp_path)
    new_file(rec, "x", b"data", sync=True)
    rec.fsync_dir(tmp_path)
    rec.unlink(tmp_path / "x")
    assert at_end(rec) == {(("x", b"data"),), ()}
    rec.fsync_dir(tmp_path)
    assert at_end(rec) == {()}


def test_a_synced_truncation_stays(tmp_path: Path) -> None:
    rec = RecordingFs(tmp_path)
    new_file(rec, "j", b"goodTORN", sync=True)
    rec.fsync_dir(tmp_path)
    fd = rec.open(tmp_path / "j", os.O_WRONLY)
    rec.ftruncate(fd, 4)
    assert {dict(f)["j"] for f in at_end(rec)} == {b"goodTORN", b"good"}
    rec.fsync(fd)
    rec.close(fd)
    assert at_end(rec) == {(("j", b"good"),)}


def test_states_materialise_as_files(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    rec = RecordingFs(tmp_path / "w")
    atomic_write(rec, tmp_path / "w" / "m", b"content")
    [state] = [s for s in crash_states(rec.ops) if s.point == len(rec.ops)]
    (tmp_path / "out").mkdir()
    materialise(state, tmp_path / "out")
    assert (tmp_path / "out" / "m").read_bytes() == b"content"
    assert (tmp_path / "out" / "m").stat().st_mode & 0o777 == 0o600
