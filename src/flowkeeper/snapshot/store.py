"""The on-disk snapshot: a manifest, partition files and an append-only journal.

Layout of DIR (every file mode 0600):
  MANIFEST               one record: revision, HostView inputs, partitions with CRCs, journal
  part-NAME-CRC.snap     one record per partition: a bridge's flows of one network (or shared)
  journal-SEQ.log        records appended after the manifest was written, one per delta

Crash safety: partition files are content-addressed and never overwritten; a new manifest
is written to a temp file, fsynced and renamed, then the directory is fsynced; files the
manifest no longer names are deleted only after that. A journal append writes one whole
record at the end of the journal's good prefix and is fsynced before it returns. A damaged
partition or manifest makes the whole snapshot unusable (it is never installed); a damaged
journal record ends the journal (the good prefix is kept, and the agent's own load cuts
the rest). Every file operation goes through a FileSystem (snapshot/fsio.py).
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowkeeper.flows.ports import ports_named
from flowkeeper.snapshot import journal as jrn
from flowkeeper.snapshot import records
from flowkeeper.snapshot.content import JournalDelta, SnapshotData, apply_delta, key_of_line
from flowkeeper.snapshot.fsio import OS, FileSystem, atomic_write, is_tmp
from flowkeeper.snapshot.partition import PartitionIndex, split

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST"
FORMAT = 1
NO_SNAPSHOT = "no snapshot"


class SnapshotDamaged(Exception):
    """The snapshot cannot be trusted; the message says which file and why."""


@dataclass
class LoadReport:
    data: SnapshotData | None
    partitions: int = 0
    journal_records: int = 0
    problems: list[str] = field(default_factory=list)  # damage found (journal tail, etc.)
    journal: Path | None = None  # the journal read, and where its good prefix ends:
    journal_end: int | None = None  # an append goes there (None: unknown, read it again)


def os_error(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def log_problems(report: LoadReport, logger: logging.Logger) -> None:
    """Damage found in a snapshot that still loads: which file, which offset, what was kept.
    (An unusable snapshot is told in the agent's one "cold sync" line instead.)"""
    if report.data is not None:
        for problem in report.problems:
            logger.warning("snapshot: %s", problem)


class SnapshotStore:
    def __init__(self, directory: Path, fs: FileSystem = OS) -> None:
        self.dir = directory
        self.fs = fs
        self._journal: Path | None = None
        self._journal_end: int | None = None

    # --- reading ------------------------------------------------------------
    def exists(self) -> bool:
        return self.fs.exists(self.dir / MANIFEST)

    def load(self, *, repair: bool = False) -> LoadReport:
        """The snapshot plus its journal; data is None if there is none or it is damaged.

        Read-only unless `repair` (the agent's own load, never a command that only looks):
        then a damaged journal tail is cut back to the good prefix (truncate, fsync), a
        missing journal is created empty, and leftover temp files are removed. An I/O
        error makes the snapshot unusable; it never raises.
        """
        self._journal, self._journal_end = None, None
        try:
            report = self._load(repair)
        except OSError as exc:
            problem = f"cannot read or repair the snapshot: {os_error(exc)}"
            return LoadReport(None, problems=[problem])
        if report.data is not None:
            self._journal, self._journal_end = report.journal, report.journal_end
        return report

    def resume(self, report: LoadReport) -> None:
        """Append after what another instance loaded (and repaired), without reading again."""
        if report.data is not None and report.journal is not None:
            self._journal, self._journal_end = report.journal, report.journal_end

    def _load(self, repair: bool) -> LoadReport:
        if not self.exists():
            return LoadReport(None, problems=[NO_SNAPSHOT])
        try:
            manifest = self._read_manifest()
            data = SnapshotData.from_meta(manifest["meta"])
            unknown: set[str] = set()
            for part in manifest["partitions"]:
                bridge, lines = self._read_partition(part)
                target = data.flows.setdefault(bridge, {})
                for line in lines:
                    target[key_of_line(line)] = line
                if "ports" in part:
                    data.port_refs.setdefault(bridge, set()).update(part["ports"])
                else:  # written without the list: the restore scans the lines instead
                    unknown.add(bridge)
            for bridge in unknown:
                data.port_refs.pop(bridge, None)
            path = self.dir / manifest["journal"]
        except SnapshotDamaged as exc:
            return LoadReport(None, problems=[str(exc)])
        except (KeyError, ValueError, TypeError) as exc:
            return LoadReport(None, problems=[f"{self.dir / MANIFEST}: malformed: {exc!r}"])
        report = LoadReport(data, partitions=len(manifest["partitions"]), journal=path)
        present = self.fs.exists(path)
        found = jrn.scan(self.fs.read(path)) if present else jrn.JournalScan()
        try:
            for delta in found.deltas:
                apply_delta(data, delta)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:  # decode checks
            return LoadReport(None, problems=[f"journal {path}: cannot apply: {exc!r}"])
        report.journal_records = len(found.deltas)
        report.journal_end = found.good_end
        if not present:
            report.problems.append(f"journal {path}: missing; no records kept")
            if repair:
                jrn.create_empty(self.fs, path)
                report.problems[-1] += "; started it empty"
        elif found.stop:
            report.problems.append(
                f"journal {path}: {found.stop}; kept the {len(found.deltas)} records before it "
                f"({found.good_end} of {found.size} bytes)"
            )
            if repair and found.size > found.good_end:
                jrn.cut(self.fs, path, found.good_end)
                report.problems[-1] += f"; cut the {found.size - found.good_end} bytes after them"
        if repair:
            self._remove_tmp_files()
        return report

    def _read_manifest(self) -> dict[str, Any]:
        path = self.dir / MANIFEST
        try:
            payload = records.decode_single(self.fs.read(path), records.MANIFEST, MANIFEST)
            manifest: dict[str, Any] = json.loads(payload)
        except (OSError, ValueError) as exc:
            raise SnapshotDamaged(f"{path}: {exc}") from None
        if manifest.get("format") != FORMAT:
            raise SnapshotDamaged(f"{path}: unknown format {manifest.get('format')!r}")
        return manifest

    def _read_partition(self, part: dict[str, Any]) -> tuple[str, list[str]]:
        path = self.dir / part["file"]
        try:
            payload = records.decode_single(self.fs.read(path), records.PARTITION, part["file"])
        except (OSError, ValueError) as exc:
            raise SnapshotDamaged(f"partition {path}: {exc}") from None
        if zlib.crc32(payload) != part["crc"]:
            raise SnapshotDamaged(f"partition {path}: does not match the manifest's checksum")
        header, _, body = payload.decode().partition("\n")
        meta = json.loads(header)
        lines = body.split("\n") if body else []
        if len(lines) != part["flows"] or meta.get("bridge") != part["bridge"]:
            raise SnapshotDamaged(f"partition {path}: flow count or bridge differs")
        return part["bridge"], lines

    def inspect(self) -> dict[str, Any]:
        """What is on disk, file by file, with any damage named (read-only; never raises
        on damage or an I/O error)."""
        out: dict[str, Any] = {
            "dir": str(self.dir),
            "manifest": None,
            "partitions": [],
            "journal": None,
            "problems": [],
        }
        try:
            manifest = self._read_manifest()
        except SnapshotDamaged as exc:
            out["problems"].append(str(exc))
            return out
        meta = manifest.get("meta", {})
        out["manifest"] = {
            "revision": meta.get("revision"),
            "generation": meta.get("generation"),
            "networks": len(meta.get("networks", {})),
            "ports": len(meta.get("ports", {})),
            "tunnels": len(meta.get("tunnels", [])),
            "vlans": meta.get("vlans"),
        }
        for part in manifest.get("partitions", []):
            entry = {
                "file": part["file"],
                "bridge": part["bridge"],
                "flows": part["flows"],
                "ok": True,
            }
            try:
                self._read_partition(part)
            except SnapshotDamaged as exc:
                entry["ok"] = False
                out["problems"].append(str(exc))
            out["partitions"].append(entry)
        path = self.dir / manifest.get("journal", "")
        try:
            raw = self.fs.read(path) if self.fs.exists(path) else b""
        except OSError as exc:
            out["problems"].append(f"journal {path.name}: {os_error(exc)}")
            return out
        found = jrn.scan(raw)
        out["journal"] = {"file": path.name, "bytes": len(raw), "records": len(found.deltas)}
        if found.stop:
            out["problems"].append(
                f"journal {path.name}: {found.stop}; {found.good_end} good bytes"
            )
        return out

    # --- writing ------------------------------------------------------------
    def append(self, delta: JournalDelta) -> None:
        """Journal one applied delta durably (one whole record, fsync) before returning."""
        if self._journal is None:
            if not self.exists():
                raise SnapshotDamaged("no snapshot to journal into: write one first")
            self._journal = self.dir / self._read_manifest()["journal"]
        if self._journal_end is None:
            self._journal_end = jrn.good_end(self.fs, self._journal)
        data = records.encode(records.JOURNAL, delta.encode())
        end, self._journal_end = self._journal_end, None  # unknown until the append is done
        self._journal_end = jrn.append(self.fs, self._journal, data, end)

    def write(self, data: SnapshotData, index: PartitionIndex) -> None:
        """Compaction: write the whole state as partitions and a new manifest, new journal."""
        if self.fs.mkdir(self.dir, 0o700):
            self.fs.fsync_dir(self.dir.parent)
        old = self._current_journal_seq()
        journal = f"journal-{old + 1:08d}.log"
        parts = []
        for name, (bridge, lines) in sorted(split(data.flows, index).items()):
            header = json.dumps({"bridge": bridge, "partition": name})
            payload = (header + "\n" + "\n".join(lines)).encode()
            crc = zlib.crc32(payload)
            fname = f"part-{name}-{crc:08x}.snap"
            if not self.fs.exists(self.dir / fname):
                body = records.encode(records.PARTITION, payload)
                atomic_write(self.fs, self.dir / fname, body, sync_dir=False)
            parts.append(
                {
                    "file": fname,
                    "bridge": bridge,
                    "crc": crc,
                    "flows": len(lines),
                    "ports": sorted(ports_named("\n".join(lines))),
                }
            )
        atomic_write(self.fs, self.dir / journal, b"", sync_dir=False)
        self.fs.fsync_dir(self.dir)
        manifest = {"format": FORMAT, "meta": data.meta(), "partitions": parts, "journal": journal}
        body = json.dumps(manifest, separators=(",", ":")).encode()
        atomic_write(self.fs, self.dir / MANIFEST, records.encode(records.MANIFEST, body))
        self._journal, self._journal_end = self.dir / journal, 0
        keep = {MANIFEST, journal, *(p["file"] for p in parts)}
        for name in self.fs.listdir(self.dir):
            if name not in keep and (is_tmp(name) or not name.startswith(".")):
                self.fs.unlink(self.dir / name)

    def _remove_tmp_files(self) -> None:
        for name in self.fs.listdir(self.dir):
            if is_tmp(name):
                self.fs.unlink(self.dir / name)

    def _current_journal_seq(self) -> int:
        seqs = []
        for name in self.fs.listdir(self.dir):
            stem, _, ext = name.partition(".")
            seq = stem.removeprefix("journal-")
            if ext == "log" and seq != stem and seq.isdigit():
                seqs.append(int(seq))
        return max(seqs, default=0)

    def journal_size(self) -> int:
        if self._journal_end is not None:
            return self._journal_end
        if self._journal is None and self.exists():
            self._journal = self.dir / self._read_manifest()["journal"]
        if self._journal is None or not self.fs.exists(self._journal):
            return 0
        return self.fs.size(self._journal)
