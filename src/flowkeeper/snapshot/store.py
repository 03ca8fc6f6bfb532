"""The on-disk snapshot: a manifest, partition files and an append-only journal.

Layout of DIR (every file mode 0600):
  MANIFEST               one record: revision, HostView inputs, partitions with CRCs, journal
  part-NAME-CRC.snap     one record per partition: a bridge's flows of one network (or shared)
  journal-SEQ.log        records appended after the manifest was written, one per delta

Crash safety: partition files are content-addressed and never overwritten; a new manifest
is written to a temp file, fsynced and renamed, then the directory is fsynced; files the
manifest no longer names are deleted only after that. A journal append is fsynced before
it returns. A damaged partition or manifest makes the whole snapshot unusable (it is
never installed); a damaged journal record ends the journal (the good prefix is kept).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowkeeper.flows.ports import ports_named
from flowkeeper.fsutil import atomic_write, fsync_dir
from flowkeeper.snapshot import records
from flowkeeper.snapshot.content import JournalDelta, SnapshotData, apply_delta, key_of_line
from flowkeeper.snapshot.partition import PartitionIndex, split

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST"
FORMAT = 1


class SnapshotDamaged(Exception):
    """The snapshot cannot be trusted; the message says which file and why."""


@dataclass
class LoadReport:
    data: SnapshotData | None
    partitions: int = 0
    journal_records: int = 0
    problems: list[str] = field(default_factory=list)  # damage found (journal tail, etc.)


class SnapshotStore:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._journal: Path | None = None

    # --- reading ------------------------------------------------------------
    def exists(self) -> bool:
        return (self.dir / MANIFEST).exists()

    def load(self) -> LoadReport:
        """The snapshot plus its journal; data is None if there is none or it is damaged."""
        if not self.exists():
            return LoadReport(None, problems=["no snapshot"])
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
        except SnapshotDamaged as exc:
            return LoadReport(None, problems=[str(exc)])
        except (KeyError, ValueError, TypeError) as exc:
            return LoadReport(None, problems=[f"{self.dir / MANIFEST}: malformed: {exc!r}"])
        report = LoadReport(data, partitions=len(manifest["partitions"]))
        self._journal = self.dir / manifest["journal"]
        raw = self._journal.read_bytes() if self._journal.exists() else b""
        recs, stop = records.scan(raw)
        for rec in recs:
            if rec.type != records.JOURNAL:
                stop = f"unexpected record type {rec.type} at offset {rec.offset}"
                break
            try:
                apply_delta(data, JournalDelta.decode(rec.payload))
            except (ValueError, KeyError, TypeError) as exc:
                stop = f"undecodable journal record at offset {rec.offset}: {exc}"
                break
            report.journal_records += 1
        if stop:
            report.problems.append(
                f"journal {self._journal.name}: {stop}; kept the records before it"
            )
        return report

    def _read_manifest(self) -> dict[str, Any]:
        path = self.dir / MANIFEST
        try:
            payload = records.decode_single(path.read_bytes(), records.MANIFEST, MANIFEST)
            manifest: dict[str, Any] = json.loads(payload)
        except (OSError, ValueError) as exc:
            raise SnapshotDamaged(f"{path}: {exc}") from None
        if manifest.get("format") != FORMAT:
            raise SnapshotDamaged(f"{path}: unknown format {manifest.get('format')!r}")
        return manifest

    def _read_partition(self, part: dict[str, Any]) -> tuple[str, list[str]]:
        path = self.dir / part["file"]
        try:
            payload = records.decode_single(path.read_bytes(), records.PARTITION, part["file"])
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
        """What is on disk, file by file, with any damage named (never raises on damage)."""
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
        journal = self.dir / manifest.get("journal", "")
        raw = journal.read_bytes() if journal.is_file() else b""
        recs, stop = records.scan(raw)
        out["journal"] = {"file": journal.name, "bytes": len(raw), "records": len(recs)}
        if stop:
            out["problems"].append(f"journal {journal.name}: {stop}")
        return out

    # --- writing ------------------------------------------------------------
    def append(self, delta: JournalDelta) -> None:
        """Journal one applied delta durably (fsync) before returning."""
        if self._journal is None:
            if not self.exists():
                raise SnapshotDamaged("no snapshot to journal into: write one first")
            self._journal = self.dir / self._read_manifest()["journal"]
        data = records.encode(records.JOURNAL, delta.encode())
        fd = os.open(self._journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def write(self, data: SnapshotData, index: PartitionIndex) -> None:
        """Compaction: write the whole state as partitions and a new manifest, new journal."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        old = self._current_journal_seq()
        journal = f"journal-{old + 1:08d}.log"
        parts = []
        for name, (bridge, lines) in sorted(split(data.flows, index).items()):
            header = json.dumps({"bridge": bridge, "partition": name})
            payload = (header + "\n" + "\n".join(lines)).encode()
            crc = zlib.crc32(payload)
            fname = f"part-{name}-{crc:08x}.snap"
            if not (self.dir / fname).exists():
                atomic_write(
                    self.dir / fname, records.encode(records.PARTITION, payload), sync_dir=False
                )
            parts.append(
                {
                    "file": fname,
                    "bridge": bridge,
                    "crc": crc,
                    "flows": len(lines),
                    "ports": sorted(ports_named("\n".join(lines))),
                }
            )
        atomic_write(self.dir / journal, b"", sync_dir=False)
        fsync_dir(self.dir)
        manifest = {"format": FORMAT, "meta": data.meta(), "partitions": parts, "journal": journal}
        body = json.dumps(manifest, separators=(",", ":")).encode()
        atomic_write(self.dir / MANIFEST, records.encode(records.MANIFEST, body))
        self._journal = self.dir / journal
        keep = {MANIFEST, journal, *(p["file"] for p in parts)}
        for path in self.dir.iterdir():
            if path.name not in keep and not path.name.startswith("."):
                path.unlink(missing_ok=True)

    def _current_journal_seq(self) -> int:
        seqs = [
            int(p.stem.split("-")[1])
            for p in self.dir.glob("journal-*.log")
            if p.stem.split("-")[1].isdigit()
        ]
        return max(seqs, default=0)

    def journal_size(self) -> int:
        if self._journal is None and self.exists():
            self._journal = self.dir / self._read_manifest()["journal"]
        return self._journal.stat().st_size if self._journal and self._journal.exists() else 0
