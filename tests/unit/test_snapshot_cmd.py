"""`flowkeeper snapshot`: read-only commands change no file; restore --force replaces."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from flowkeeper.cli import snapshot_cmd
from flowkeeper.cli.main import main
from flowkeeper.errors import FlowkeeperError
from flowkeeper.flows.record import parse_flow
from flowkeeper.pipeline.tables import COOKIE_TAG, LEARNED_COOKIE
from flowkeeper.snapshot import records
from flowkeeper.snapshot.content import JournalDelta, SnapshotData, flow_line
from flowkeeper.snapshot.partition import PartitionIndex
from flowkeeper.snapshot.store import SnapshotStore

OURS = COOKIE_TAG | 7


def snap_line(text: str) -> tuple[str, str]:
    return flow_line(parse_flow(text, "br-tun"))


def snapshot(directory: Path) -> SnapshotData:
    data = SnapshotData(revision=3, generation=7)
    for i in range(3):
        key, text = snap_line(f"cookie={OURS:#x},table=20,priority=2,dl_vlan={i + 1},actions=drop")
        data.flows.setdefault("br-tun", {})[key] = text
    SnapshotStore(directory).write(data, PartitionIndex())
    return data


def files(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
        for p in sorted(directory.iterdir())
    }


def test_show_verify_and_diff_change_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "snapshot"
    snapshot(directory)
    store = SnapshotStore(directory)
    store.append(JournalDelta(revision=4, generation=7))
    journal = next(directory.glob("journal-*"))
    torn = records.encode(records.JOURNAL, JournalDelta(revision=5, generation=7).encode())
    with journal.open("ab") as f:
        f.write(torn[:9])
    (directory / ".MANIFEST.tmp").write_bytes(b"left by a crash")
    before = files(directory)

    def no_ovs(data: SnapshotData, *_: Any) -> dict[str, Any]:
        return {"text": f"{data.flow_count()} flows", "flows": data.flow_count()}

    monkeypatch.setattr("flowkeeper.cli.snapshot_diff.diff_report", no_ovs)
    assert main(["snapshot", "show", "--state-dir", str(tmp_path)]) == 0
    assert "truncated" in capsys.readouterr().out
    assert main(["snapshot", "verify", "--state-dir", str(tmp_path)]) == 1
    assert "usable but damaged" in capsys.readouterr().err
    assert main(["snapshot", "diff", "--state-dir", str(tmp_path)]) == 0
    assert "3 flows" in capsys.readouterr().out
    assert files(directory) == before
    # The agent's own load is the one that repairs.
    assert SnapshotStore(directory).load(repair=True).journal_records == 1
    assert files(directory) != before and not (directory / ".MANIFEST.tmp").exists()


class FakeOvs:
    """Just enough of a RestoreTarget over plain dicts: flow lines, deletes by cookie mask."""

    def __init__(self, flows: dict[str, list[str]]) -> None:
        self.flows = {b: {self.key(x): x for x in lines} for b, lines in flows.items()}
        self.bundles: list[tuple[str, list[str]]] = []

    @staticmethod
    def key(line: str) -> Any:
        return parse_flow(line, "br-tun").key[1:]

    def our_flow_count(self, bridge: str) -> int:
        flows = self.flows.get(bridge, {}).values()
        return sum(1 for x in flows if parse_flow(x, bridge).cookie >> 48 == COOKIE_TAG >> 48)

    def port_numbers(self) -> dict[str, int]:
        return {}

    def ensure_tunnels(self, peers: set[tuple[str, str]], local_ip: str) -> None:
        pass

    def add_lines(self, bridge: str, lines: list[str]) -> None:
        self.bundles.append((bridge, lines))
        table = self.flows.setdefault(bridge, {})
        for line in lines:
            if line.startswith("delete "):
                value, mask = (int(x, 16) for x in line.split("cookie=")[1].split("/"))
                for k, x in list(table.items()):
                    if parse_flow(x, bridge).cookie & mask == value & mask:
                        del table[k]
            else:
                table[self.key(line)] = line


def restore_args(force: bool) -> argparse.Namespace:
    return argparse.Namespace(force=force, tunnel_ip="198.18.0.1", json=False)


def test_restore_refuses_a_busy_ovs_and_force_replaces_our_flows(tmp_path: Path) -> None:
    data = snapshot(tmp_path / "snapshot")
    stray = f"cookie={OURS:#x},table=22,priority=1,dl_vlan=9,actions=drop"
    learned = f"cookie={LEARNED_COOKIE:#x},table=20,priority=1,dl_vlan=1,actions=drop"
    foreign = "cookie=0x5,table=0,priority=9,actions=drop"
    int_stray = f"cookie={OURS:#x},table=0,priority=3,actions=drop"
    ovs = FakeOvs({"br-tun": [stray, learned, foreign], "br-int": [int_stray]})
    with pytest.raises(FlowkeeperError, match="--force"):
        snapshot_cmd.restore_into(ovs, data, restore_args(False), ("br-int", "br-tun"))
    assert ovs.bundles == []
    snapshot_cmd.restore_into(ovs, data, restore_args(True), ("br-int", "br-tun"))
    assert sorted(ovs.flows["br-tun"].values()) == sorted(
        [*data.flows["br-tun"].values(), learned, foreign]
    )
    assert ovs.flows["br-int"] == {}  # nothing of ours in the snapshot for it
    # One bundle per bridge, the delete first: traffic never sees the bridge empty.
    assert [b for b, _ in ovs.bundles] == ["br-tun", "br-int"]
    assert all(lines[0].startswith("delete cookie=") for _, lines in ovs.bundles)


def test_restore_help_says_what_force_does() -> None:
    from flowkeeper.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    snap = sub.choices["snapshot"]
    cmds = next(a for a in snap._actions if isinstance(a, argparse._SubParsersAction))
    text = cmds.choices["restore"].format_help()
    assert "replace" in text and "learned" in text
