"""Processes the lab started: find them by PID file, check they are ours, stop them by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def is_ours(pid: int, marker: str) -> bool:
    """True if the process is alive and its command line names a path inside `marker`."""
    directory = marker.rstrip("/") + "/"  # /tmp/lab/hosts/h1 must not match .../h10
    return pid > 1 and directory in cmdline(pid)


def pids_naming(marker: str, *, also: str = "") -> list[int]:
    """PIDs whose command line contains `marker` (our lab directory), this process aside;
    with `also`, only those whose command line contains that too (e.g. a module name)."""
    own = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        pid = int(entry.name)
        if is_ours(pid, marker) and (not also or also in cmdline(pid)):
            found.append(pid)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def stop(pid: int, marker: str, *, hard: bool = False, wait: float = 5.0) -> bool:
    """Stop one of our processes (SIGTERM, then SIGKILL). Returns False if it was not ours."""
    if not is_ours(pid, marker):
        return False
    try:
        os.kill(pid, signal.SIGKILL if hard else signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not alive(pid):
            _reap(pid)
            return True
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    while alive(pid) and time.monotonic() < deadline + 5:
        time.sleep(0.02)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
