"""A recording FileSystem: does each operation on the real one and logs what it changed.

The log is the input of the crash-state generator (snapshot/crashstates.py). It covers
one directory (the snapshot's): files are named, and each file's content is an inode, so
that a rename moves content and an unlink drops a name, as on a real file system.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flowkeeper.snapshot.fsio import OS, FileSystem

CREATE, WRITE, TRUNC, FSYNC, RENAME, UNLINK, FSYNC_DIR = (
    "create",
    "write",
    "trunc",
    "fsync",
    "rename",
    "unlink",
    "fsync_dir",
)
DIR_OPS = (CREATE, RENAME, UNLINK)  # durable only once the directory is fsynced
FILE_OPS = (WRITE, TRUNC)  # durable only once the file is fsynced


@dataclass(frozen=True)
class Op:
    """One change to the directory or to a file's content."""

    kind: str
    inode: int = -1  # the file whose content or name this is about
    name: str = ""  # create, unlink: the name; rename: the source
    dst: str = ""  # rename: the target (replaced atomically if it exists)
    offset: int = 0  # write: where the bytes went
    data: bytes = b""  # write: the bytes the write call took
    size: int = 0  # trunc: the new size

    def __str__(self) -> str:
        if self.kind == WRITE:
            return f"write {len(self.data)} bytes at {self.offset} of inode {self.inode}"
        if self.kind == TRUNC:
            return f"truncate inode {self.inode} to {self.size}"
        if self.kind == RENAME:
            return f"rename {self.name} -> {self.dst}"
        if self.kind in (CREATE, UNLINK):
            return f"{self.kind} {self.name}"
        return f"{self.kind} {'' if self.inode < 0 else f'inode {self.inode}'}".strip()


class RecordingFs:
    """A FileSystem over `inner` that logs every change made inside `root` (which must start
    empty: the log then holds the directory's whole history)."""

    def __init__(self, root: Path, inner: FileSystem = OS) -> None:
        if inner.listdir(root):
            raise ValueError(f"{root}: a recording starts from an empty directory")
        self.root = root
        self.inner = inner
        self.ops: list[Op] = []
        self._names: dict[str, int] = {}  # live name -> inode
        self._sizes: dict[int, int] = {}
        self._fds: dict[int, tuple[int, bool, int]] = {}  # fd -> inode, O_APPEND, position
        self._next_inode = 0

    def _name(self, path: Path) -> str:
        if path.parent != self.root:
            raise ValueError(f"{path}: outside the recorded directory {self.root}")
        return path.name

    def open(self, path: Path, flags: int, mode: int = 0o600) -> int:
        name = self._name(path)
        fd = self.inner.open(path, flags, mode)
        inode = self._names.get(name)
        if inode is None:  # O_CREAT made it (else inner.open raised)
            inode = self._next_inode
            self._next_inode += 1
            self._names[name] = inode
            self._sizes[inode] = 0
            self.ops.append(Op(CREATE, inode, name=name))
        elif flags & os.O_TRUNC and self._sizes[inode]:
            self._sizes[inode] = 0
            self.ops.append(Op(TRUNC, inode, size=0))
        self._fds[fd] = (inode, bool(flags & os.O_APPEND), 0)
        return fd

    def write(self, fd: int, data: bytes) -> int:
        inode, append, pos = self._fds[fd]
        offset = self._sizes[inode] if append else pos
        written = self.inner.write(fd, data)
        if written > 0:
            self.ops.append(Op(WRITE, inode, offset=offset, data=bytes(data[:written])))
            self._sizes[inode] = max(self._sizes[inode], offset + written)
            self._fds[fd] = (inode, append, offset + written)
        return written

    def fsync(self, fd: int) -> None:
        self.inner.fsync(fd)
        self.ops.append(Op(FSYNC, self._fds[fd][0]))

    def ftruncate(self, fd: int, size: int) -> None:
        self.inner.ftruncate(fd, size)
        inode = self._fds[fd][0]
        self._sizes[inode] = size
        self.ops.append(Op(TRUNC, inode, size=size))

    def close(self, fd: int) -> None:
        self.inner.close(fd)
        del self._fds[fd]

    def rename(self, src: Path, dst: Path) -> None:
        a, b = self._name(src), self._name(dst)
        self.inner.rename(src, dst)
        inode = self._names.pop(a)
        self._names[b] = inode
        self.ops.append(Op(RENAME, inode, name=a, dst=b))

    def unlink(self, path: Path) -> None:
        name = self._name(path)
        self.inner.unlink(path)
        inode = self._names.pop(name, None)
        if inode is not None:
            self.ops.append(Op(UNLINK, inode, name=name))

    def fsync_dir(self, directory: Path) -> None:
        self.inner.fsync_dir(directory)
        if directory == self.root:
            self.ops.append(Op(FSYNC_DIR))

    def mkdir(self, directory: Path, mode: int) -> bool:
        if directory != self.root:
            raise ValueError(f"{directory}: the recording covers {self.root} only")
        return self.inner.mkdir(directory, mode)

    def read(self, path: Path) -> bytes:
        return self.inner.read(path)

    def exists(self, path: Path) -> bool:
        return self.inner.exists(path)

    def size(self, path: Path) -> int:
        return self.inner.size(path)

    def listdir(self, directory: Path) -> list[str]:
        return self.inner.listdir(directory)
