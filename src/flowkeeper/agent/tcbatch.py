"""A `tc -n NS -force -batch -` process kept running, so that a cut pays no process start.

Starting `tc` costs about 2 ms on an idle machine and 8 ms or more on a loaded one; a
failover's steer is one `tc -batch` run on the VMs' path. This process is started ahead
(when the agent starts) and fed the steer text when a slot dies.

`tc` in batch mode fully buffers its standard output but writes each failed line's error
to standard error at once. So every run ends with a marker line that is meant to fail
(`qdisc show dev fkmarkN`, a device that does not exist): once its error has arrived,
every line before it has been carried out, and the errors before it are the run's own.
A process that died (its namespace gone) is started again on the next run.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading
import time

MARK = "fkmark"  # + a number: at most 15 characters, as a device name


class TcBatchError(Exception):
    pass


def marker(seq: int) -> str:
    return f"{MARK}{seq % 1_000_000}"


def marker_line(seq: int) -> str:
    return f"qdisc show dev {marker(seq)}\n"


def split_at_marker(text: str, seq: int) -> tuple[str, bool]:
    """Pure: the errors before the marker of run `seq` in `text` (what tc wrote to its
    standard error), and whether the marker's error and its "Command failed" line that
    follows it are both in."""
    tag = f'Cannot find device "{marker(seq)}"'
    at = text.find(tag)
    if at < 0:
        return text, False
    rest = text[at + len(tag) :]
    return text[:at], "Command failed" in rest and rest.rstrip().endswith(tuple("0123456789"))


class TcBatch:
    """One long-lived `tc -batch` in namespace `ns`; `run(text)` is thread-safe."""

    def __init__(self, ns: str, timeout: float = 10.0) -> None:
        self.ns = ns
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.seq = 0
        self.lock = threading.Lock()

    def start(self) -> None:
        with self.lock:
            self._ensure()

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                ["tc", "-n", self.ns, "-force", "-batch", "-"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        return self.proc

    def run(self, text: str) -> tuple[float, str]:
        """Carry out `text`: (seconds from the write to the marker's error, the errors of
        these lines, "" if none). TcBatchError if tc could not be reached or timed out."""
        with self.lock:
            for attempt in (1, 2):
                proc = self._ensure()
                self.seq += 1
                t0 = time.perf_counter()
                try:
                    assert proc.stdin is not None
                    proc.stdin.write((text + marker_line(self.seq)).encode())
                    proc.stdin.flush()
                except (BrokenPipeError, OSError):
                    self._kill()
                    if attempt == 2:
                        raise TcBatchError(f"tc -batch in {self.ns} is not running") from None
                    continue
                errors = self._read_until_marker(proc)
                return time.perf_counter() - t0, errors
        raise TcBatchError(f"tc -batch in {self.ns} is not running")  # pragma: no cover

    def _read_until_marker(self, proc: subprocess.Popen[bytes]) -> str:
        assert proc.stderr is not None
        fd = proc.stderr.fileno()
        got = ""
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:  # tc exited
                self._kill()
                raise TcBatchError(f"tc -batch in {self.ns} exited: {got.strip()[-200:]}")
            got += chunk.decode(errors="replace")
            errors, done = split_at_marker(got, self.seq)
            if done:
                return errors
        self._kill()
        raise TcBatchError(f"tc -batch in {self.ns} did not finish in {self.timeout:.0f} s")

    def _kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=5)
            for f in (self.proc.stdin, self.proc.stderr):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
        self.proc = None

    def close(self) -> None:
        with self.lock:
            if self.proc is not None and self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()  # tc ends at EOF
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
            self._kill()
