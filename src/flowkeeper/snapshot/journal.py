"""The journal file: read its good prefix, cut a damaged tail, append whole records only."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from flowkeeper.snapshot import records
from flowkeeper.snapshot.content import JournalDelta
from flowkeeper.snapshot.fsio import FileSystem, write_all

log = logging.getLogger(__name__)


@dataclass
class JournalScan:
    """The deltas of the good prefix, where it ends, and why reading stopped (None: at EOF)."""

    deltas: list[JournalDelta] = field(default_factory=list)
    good_end: int = 0
    size: int = 0
    stop: str | None = None


def scan(raw: bytes) -> JournalScan:
    """The good prefix: whole records with a valid checksum that decode as journal deltas."""
    recs, stop = records.scan(raw)
    out = JournalScan(size=len(raw))
    for rec in recs:
        if rec.type != records.JOURNAL:
            stop = f"unexpected record type {rec.type} at offset {rec.offset}"
            break
        try:
            out.deltas.append(JournalDelta.decode(rec.payload))
        except (ValueError, KeyError, TypeError) as exc:
            stop = f"undecodable journal record at offset {rec.offset}: {exc}"
            break
        out.good_end = rec.end
    out.stop = stop
    return out


def cut(fs: FileSystem, path: Path, size: int) -> None:
    """Truncate the journal to `size` bytes (its good prefix) and make that durable."""
    fd = fs.open(path, os.O_WRONLY)
    try:
        fs.ftruncate(fd, size)
        fs.fsync(fd)
    finally:
        fs.close(fd)


def create_empty(fs: FileSystem, path: Path) -> None:
    """A new empty journal whose name is durable (the directory is fsynced)."""
    fd = fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        fs.fsync(fd)
    finally:
        fs.close(fd)
    fs.fsync_dir(path.parent)


def good_end(fs: FileSystem, path: Path) -> int:
    """Where the next record goes in a journal this process has not read yet."""
    return scan(fs.read(path)).good_end if fs.exists(path) else 0


def append(fs: FileSystem, path: Path, data: bytes, end: int) -> int:
    """Write one whole record at `end` (the good prefix's end) and fsync; the new end.

    Bytes after `end` (a torn record) are cut first, so that a record never follows
    garbage. If the write or the fsync fails, the journal is cut back to `end` and the
    error raised: no record is left torn in the middle.
    """
    if not fs.exists(path):
        create_empty(fs, path)
    fd = fs.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        size = fs.size(path)
        if size < end:  # shorter than what we wrote: never extend it with zeros
            log.warning("journal %s: shorter than expected (%d < %d bytes)", path, size, end)
            end = scan(fs.read(path)).good_end
        if size != end:
            log.warning(
                "journal %s: %d bytes after its good prefix (offset %d): cut before appending",
                path,
                size - end,
                end,
            )
            fs.ftruncate(fd, end)
            fs.fsync(fd)
        try:
            write_all(fs, fd, data)
            fs.fsync(fd)
        except OSError:
            try:
                fs.ftruncate(fd, end)
                fs.fsync(fd)
            except OSError as exc:
                log.error("journal %s: could not cut a failed append back: %s", path, exc)
            raise
    finally:
        fs.close(fd)
    return end + len(data)
