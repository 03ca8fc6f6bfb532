"""Crash-safe small-file writes: temp file, fsync, rename, fsync the directory; mode 0600."""

from __future__ import annotations

from pathlib import Path

from flowkeeper.snapshot import fsio


def atomic_write(path: Path, data: bytes, mode: int = 0o600, *, sync_dir: bool = True) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fsio.atomic_write(fsio.OS, path, data, mode, sync_dir=sync_dir)


def fsync_dir(directory: Path) -> None:
    fsio.OS.fsync_dir(directory)
