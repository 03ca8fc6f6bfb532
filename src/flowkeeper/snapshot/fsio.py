"""Every file operation of the snapshot store behind one small interface; `OS` is the real one.

A recording implementation (snapshot/crashsim.py) replaces it in tests to log a workload's
operations and rebuild the disk states a power cut can leave.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Protocol


class FileSystem(Protocol):
    """What the snapshot store does to its directory, and nothing more."""

    def open(self, path: Path, flags: int, mode: int = 0o600) -> int:
        """os.open flags (O_WRONLY, O_CREAT, O_TRUNC, O_APPEND); a new file gets `mode`."""
        ...

    def write(self, fd: int, data: bytes) -> int:
        """Like os.write: may write fewer bytes than given (see write_all)."""
        ...

    def fsync(self, fd: int) -> None: ...

    def ftruncate(self, fd: int, size: int) -> None: ...

    def close(self, fd: int) -> None: ...

    def rename(self, src: Path, dst: Path) -> None:
        """Atomic replace of dst (os.replace)."""
        ...

    def unlink(self, path: Path) -> None:
        """Remove a file; a missing one is not an error."""
        ...

    def fsync_dir(self, directory: Path) -> None: ...

    def mkdir(self, directory: Path, mode: int) -> bool:
        """Create the directory (and parents) if missing, set its mode; True if created."""
        ...

    def read(self, path: Path) -> bytes: ...

    def exists(self, path: Path) -> bool:
        """False only if there is no such file; other errors (EIO, EACCES) raise."""
        ...

    def size(self, path: Path) -> int: ...

    def listdir(self, directory: Path) -> list[str]: ...


class OsFileSystem:
    """The real file system."""

    def open(self, path: Path, flags: int, mode: int = 0o600) -> int:
        fd = os.open(path, flags, mode)
        if flags & os.O_CREAT:
            try:
                os.fchmod(fd, mode)  # whatever the umask
            except OSError:
                os.close(fd)
                raise
        return fd

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def close(self, fd: int) -> None:
        os.close(fd)

    def rename(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def unlink(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def fsync_dir(self, directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def mkdir(self, directory: Path, mode: int) -> bool:
        created = False
        try:
            directory.mkdir(parents=True, mode=mode)
            created = True
        except FileExistsError:
            pass
        os.chmod(directory, mode)
        return created

    def read(self, path: Path) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def exists(self, path: Path) -> bool:
        try:
            os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def size(self, path: Path) -> int:
        return os.stat(path).st_size

    def listdir(self, directory: Path) -> list[str]:
        return sorted(os.listdir(directory))


OS: FileSystem = OsFileSystem()


def write_all(fs: FileSystem, fd: int, data: bytes) -> None:
    """Write every byte, retrying short writes; a write that makes no progress raises."""
    view = memoryview(data)
    while view:
        written = fs.write(fd, bytes(view))
        if written <= 0:
            raise OSError(errno.EIO, f"write made no progress ({len(view)} bytes left)")
        view = view[written:]


def tmp_name(path: Path) -> Path:
    """The temp file atomic_write uses for `path` (removed by the store's cleanup)."""
    return path.with_name(f".{path.name}.tmp")


def is_tmp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def atomic_write(
    fs: FileSystem, path: Path, data: bytes, mode: int = 0o600, *, sync_dir: bool = True
) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file:
    temp file, write, fsync, rename, then (sync_dir) fsync the directory."""
    tmp = tmp_name(path)
    fd = fs.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        write_all(fs, fd, data)
        fs.fsync(fd)
    finally:
        fs.close(fd)
    fs.rename(tmp, path)
    if sync_dir:
        fs.fsync_dir(path.parent)
