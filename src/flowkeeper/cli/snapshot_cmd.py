"""`flowkeeper snapshot show|verify|diff|restore --state-dir DIR`: look at an agent's snapshot."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from flowkeeper.cli.common import emit
from flowkeeper.errors import FlowkeeperError, UsageError


def register(sub: Any) -> None:
    snap = sub.add_parser("snapshot", help="inspect, check, compare or restore a flow snapshot")
    cmds = snap.add_subparsers(dest="snapshot_command", required=True)
    for name, helptext in (
        ("show", "revision, partitions and journal of the snapshot"),
        ("verify", "check every checksum; exit 1 if anything is damaged"),
        ("diff", "snapshot vs the flows in OVS and vs the server's view"),
        ("restore", "install the snapshot's flows into an OVS that lost them"),
    ):
        cmd = cmds.add_parser(name, help=helptext)
        cmd.add_argument("--state-dir", type=Path, required=True, help="the agent's state dir")
        cmd.add_argument("--json", action="store_true")
        if name in ("diff", "restore"):
            cmd.add_argument(
                "--ovsdb",
                default="unix:/var/run/openvswitch/db.sock",
                help="this host's ovsdb-server, unix:PATH",
            )
        if name == "diff":
            cmd.add_argument("--host", help="compare with the server's view of this host")
            cmd.add_argument("--server", default=os.environ.get("FLOWKEEPER_SERVER"))
        if name == "restore":
            cmd.add_argument("--tunnel-ip", required=True)
            cmd.add_argument(
                "--force",
                action="store_true",
                help="also when OVS still holds flowkeeper flows: replace them (learned "
                "ones aside) with the snapshot's, in one bundle per bridge",
            )
        cmd.set_defaults(func=globals()[f"_{name}"])


def _store_dir(args: argparse.Namespace) -> Path:
    directory: Path = args.state_dir / "snapshot"
    if not directory.is_dir():
        raise UsageError(f"no snapshot in {args.state_dir} (expected {directory})")
    return directory


def _show(args: argparse.Namespace) -> int:
    from flowkeeper.snapshot.store import SnapshotStore

    info = SnapshotStore(_store_dir(args)).inspect()
    lines = [f"snapshot in {info['dir']}"]
    man = info["manifest"]
    if man:
        lines.append(
            f"  revision {man['revision']}, generation {man['generation']}: "
            f"{man['networks']} networks, {man['ports']} ports, "
            f"{man['tunnels']} tunnels"
        )
        for part in info["partitions"]:
            mark = "ok" if part["ok"] else "DAMAGED"
            lines.append(f"  {part['bridge']:7} {part['flows']:>7} flows  {part['file']}  {mark}")
        j = info["journal"]
        lines.append(f"  journal {j['file']}: {j['records']} records, {j['bytes']} bytes")
    lines += [f"  problem: {p}" for p in info["problems"]]
    emit(info, args.json, "\n".join(lines))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from flowkeeper.snapshot.store import SnapshotStore

    report = SnapshotStore(_store_dir(args)).load()
    ok = report.data is not None and not report.problems
    data = {
        "ok": ok,
        "problems": report.problems,
        "flows": report.data.flow_count() if report.data else 0,
        "journal_records": report.journal_records,
    }
    if ok:
        emit(
            data,
            args.json,
            f"snapshot ok: {data['flows']} flows, {report.journal_records} journal records",
        )
        return 0
    if report.data is None:
        raise FlowkeeperError(f"snapshot unusable: {'; '.join(report.problems)}")
    raise FlowkeeperError(f"snapshot usable but damaged: {'; '.join(report.problems)}")


def _load(args: argparse.Namespace) -> Any:
    from flowkeeper.snapshot.store import SnapshotStore

    report = SnapshotStore(_store_dir(args)).load()
    if report.data is None:
        raise FlowkeeperError(f"snapshot unusable: {'; '.join(report.problems)}")
    return report.data


def _diff(args: argparse.Namespace) -> int:
    from flowkeeper.cli.snapshot_diff import diff_report

    data = _load(args)
    result = diff_report(data, args.ovsdb, args.host, args.server)
    emit(result, args.json, result.pop("text"))
    return 0


class _Replacing:
    """A RestoreTarget whose first bundle on each bridge deletes flowkeeper's own flows
    (not the learned ones) before adding the snapshot's: OVS then holds exactly those."""

    def __init__(self, target: Any, bridges: tuple[str, ...]) -> None:
        self.target = target
        self.to_clear = set(bridges)

    def port_numbers(self) -> dict[str, int]:
        numbers: dict[str, int] = self.target.port_numbers()
        return numbers

    def ensure_tunnels(self, peers: set[tuple[str, str]], local_ip: str) -> None:
        self.target.ensure_tunnels(peers, local_ip)

    def add_lines(self, bridge: str, lines: list[str]) -> None:
        from flowkeeper.agent.restore import OURS_NOT_LEARNED

        head = [f"delete {OURS_NOT_LEARNED}"] if bridge in self.to_clear else []
        self.target.add_lines(bridge, head + lines)
        self.to_clear.discard(bridge)

    def clear_rest(self) -> None:
        """Bridges the snapshot had nothing for: only the delete."""
        for bridge in sorted(self.to_clear):
            self.add_lines(bridge, [])


def _restore(args: argparse.Namespace) -> int:
    from flowkeeper.agent.fastboot import CliTarget
    from flowkeeper.naming import BR_INT, BR_TUN

    data = _load(args)
    if not args.ovsdb.startswith("unix:"):
        raise UsageError("--ovsdb must be unix:PATH")
    target = CliTarget(args.ovsdb, Path(args.ovsdb.removeprefix("unix:")).parent)
    return restore_into(target, data, args, (BR_INT, BR_TUN))


def restore_into(target: Any, data: Any, args: argparse.Namespace, bridges: tuple[str, ...]) -> int:
    """Refuse an OVS that holds flowkeeper flows unless --force; then restore (replacing)."""
    from flowkeeper.agent.restore import restore

    held = sum(target.our_flow_count(b) for b in bridges)
    if held and not args.force:
        raise FlowkeeperError(f"OVS still holds {held} flowkeeper flows; use --force to replace")
    if args.force:
        replacing = _Replacing(target, bridges)
        result = restore(replacing, data, args.tunnel_ip)
        replacing.clear_rest()
    else:
        result = restore(target, data, args.tunnel_ip)
    emit(
        {
            "restored": result.restored,
            "deferred": result.deferred,
            "seconds": result.seconds,
            "replaced": bool(args.force),
        },
        args.json,
        f"restored {result.restored} flows in {result.seconds * 1000:.0f} ms "
        f"({result.deferred} deferred: ports missing)"
        + ("; flowkeeper's other flows removed" if args.force else ""),
    )
    return 0
