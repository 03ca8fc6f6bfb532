"""The quick boot: a missing or hung ovs-ofctl, or an unreadable snapshot, never stops the
agent; damage found is logged, and the agent's load cuts a torn journal tail."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from flowkeeper.agent import fastboot
from flowkeeper.agent.restore import RestoreResult
from flowkeeper.flows.record import parse_flow
from flowkeeper.snapshot import records
from flowkeeper.snapshot.content import JournalDelta, SnapshotData, flow_line
from flowkeeper.snapshot.fsio import OsFileSystem
from flowkeeper.snapshot.partition import PartitionIndex
from flowkeeper.snapshot.store import LoadReport, SnapshotStore


def state_dir(tmp_path: Path, torn: bool = False) -> Path:
    data = SnapshotData(revision=3, generation=1)
    key, text = flow_line(parse_flow("cookie=0x1,table=0,priority=1,actions=drop", "br-int"))
    data.flows["br-int"] = {key: text}
    store = SnapshotStore(tmp_path / "snapshot")
    store.write(data, PartitionIndex())
    store.append(JournalDelta(revision=4, generation=1))
    if torn:
        journal = next((tmp_path / "snapshot").glob("journal-*"))
        rec = records.encode(records.JOURNAL, JournalDelta(revision=5, generation=1).encode())
        with journal.open("ab") as f:
            f.write(rec[:-4])
    return tmp_path


def fake_tool(directory: Path, body: str) -> None:
    directory.mkdir()
    tool = directory / "ovs-ofctl"
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(stat.S_IRWXU)


def boot(tmp_path: Path) -> tuple[LoadReport, RestoreResult | None]:
    return fastboot.restore_if_lost(tmp_path, "unix:/nonexistent/db.sock", tmp_path, "198.18.0.1")


def test_a_missing_ovs_ofctl_skips_the_quick_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir(tmp_path)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with caplog.at_level(logging.INFO, "flowkeeper.agent"):
        report, result = boot(tmp_path)
    assert result is None and report.data is not None
    [msg] = [r.getMessage() for r in caplog.records if "quick restore" in r.getMessage()]
    assert "ovs-ofctl" in msg and "\n" not in msg


def test_a_hung_ovs_ofctl_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir(tmp_path)
    fake_tool(tmp_path / "bin", "exec sleep 60")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setattr(fastboot, "QUERY_TIMEOUT_S", 0.3)
    with caplog.at_level(logging.INFO, "flowkeeper.agent"):
        _report, result = boot(tmp_path)
    assert result is None
    assert any("timed out" in r.getMessage() for r in caplog.records)


def test_an_unreadable_snapshot_means_no_quick_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir(tmp_path)

    def eio(self: OsFileSystem, path: Path) -> bytes:
        raise OSError(5, "Input/output error", str(path))

    monkeypatch.setattr(OsFileSystem, "read", eio)
    report, result = boot(tmp_path)
    assert result is None and report.data is None
    assert "Input/output error" in report.problems[0]


def test_the_quick_boot_logs_and_cuts_a_torn_journal_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir(tmp_path, torn=True)
    journal = next((tmp_path / "snapshot").glob("journal-*"))
    size = journal.stat().st_size
    fake_tool(tmp_path / "bin", "echo 'NXST_AGGREGATE reply: flow_count=5'")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin:/bin")
    with caplog.at_level(logging.INFO, "flowkeeper.agent"):
        _report, result = boot(tmp_path)
    assert result is None  # OVS kept its flows: nothing to restore
    [msg] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(journal) in msg and "offset" in msg and "kept the 1 records" in msg
    assert journal.stat().st_size < size
    assert SnapshotStore(tmp_path / "snapshot").load().problems == []
