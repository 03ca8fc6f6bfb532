"""A lab switch slot's vswitchd supervisor: `python -m flowkeeper.lab.supervise ...`.

What systemd's Restart=always is on a real host: when the slot's ovs-vswitchd dies, start
it again (the argv of ovsproc.start_vswitchd) and give br-phy its tunnel IP again, as the
host's network config would. Bounded: at most --max-restarts restarts (start attempts),
at most --max-seconds of supervision; it stops on SIGTERM/SIGINT and as soon as the lab
is gone (its lab.json or the slot's directory removed).

Each restart is logged (with a timestamp) on stdout, which the lab sends to
SLOTDIR/supervise.log, and as one JSON line in SLOTDIR/supervise.ndjson.

While SLOTDIR/supervise.hold exists (the lab restarts the vswitchd itself, e.g. for an
upgrade) a dead vswitchd is left alone; a hold older than HOLD_MAX_AGE is ignored, so
a lab command that crashed while holding cannot switch supervision off for good.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from flowkeeper.errors import FlowkeeperError
from flowkeeper.lab import procs

PIDFILE = "ovs-vswitchd.pid"
HOLD_FILE = "supervise.hold"
EVENTS_FILE = "supervise.ndjson"
LOG_FILE = "supervise.log"
HOLD_MAX_AGE = 120.0  # seconds
DEFAULT_MAX_RESTARTS = 20
DEFAULT_MAX_SECONDS = 24 * 3600.0
POLL = 0.1  # how often the lab and the hold are looked at while vswitchd runs
MAX_BACKOFF = 2.0  # seconds between two failed start attempts, at most


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hold_path(slot_dir: str | Path) -> Path:
    return Path(slot_dir) / HOLD_FILE


@contextlib.contextmanager
def hold(slot_dir: str | Path) -> Iterator[None]:
    """The slot's supervisor leaves a dead vswitchd alone while this is open."""
    path = hold_path(slot_dir)
    path.write_text(f"{time.time():.3f}\n")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def held(slot_dir: str | Path, now: float | None = None) -> bool:
    """True while a (fresh) hold file exists: the lab restarts the vswitchd itself."""
    try:
        age = (time.time() if now is None else now) - hold_path(slot_dir).stat().st_mtime
    except OSError:
        return False
    return age < HOLD_MAX_AGE


def vswitchd_pid(slot_dir: str | Path) -> int | None:
    """The PID of the slot's running ovs-vswitchd (its pid file, alive and ours), or None."""
    pid = procs.read_pidfile(Path(slot_dir) / PIDFILE)
    if pid and procs.alive(pid) and procs.is_ours(pid, str(slot_dir)):
        return pid
    return None


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `pid` to exit; True if it has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except OSError:  # no pidfd: poll
        time.sleep(timeout)
        return not procs.alive(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    return bool(ready) or not procs.alive(pid)


class Supervisor:
    """Restarts one slot's ovs-vswitchd; `start` starts it and returns its PID."""

    def __init__(
        self,
        slot_dir: Path,
        lab_dir: Path,
        start: Callable[[], int],
        *,
        label: str,
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.slot_dir = slot_dir
        self.lab_dir = lab_dir
        self.start = start
        self.label = label
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.log = log or (lambda line: print(line, flush=True))
        self.stopping = threading.Event()
        self.restarts = 0

    def say(self, text: str) -> None:
        self.log(f"{_stamp()} supervise {self.label}: {text}")

    def event(self, **fields: object) -> None:
        line = json.dumps({"time": round(time.time(), 3), **fields}, sort_keys=True)
        with open(self.slot_dir / EVENTS_FILE, "a") as out:
            out.write(line + "\n")

    def lab_gone(self) -> bool:
        return not (self.lab_dir / "lab.json").exists() or not self.slot_dir.is_dir()

    def run(self) -> int:
        """Supervise until stopped, the lab is gone, or a bound is reached; exit status."""
        deadline = time.monotonic() + self.max_seconds
        watched = vswitchd_pid(self.slot_dir)
        self.say(
            f"watching ovs-vswitchd pid {watched or '-'} (at most {self.max_restarts} restarts)"
        )
        died_at: float | None = None
        failures = 0
        while not self.stopping.is_set():
            if time.monotonic() > deadline:
                self.say(f"stopping after {self.max_seconds:.0f} s")
                return 0
            if self.lab_gone():
                self.say("the lab is gone: stopping")
                return 0
            pid = vswitchd_pid(self.slot_dir)
            if pid:
                if pid != watched:
                    self.say(f"watching ovs-vswitchd pid {pid}")
                    watched = pid
                died_at, failures = None, 0
                if wait_exit(pid, POLL) and not self.stopping.is_set():
                    died_at = time.time()
                    self.say(f"ovs-vswitchd pid {pid} exited")
                continue
            if died_at is None:
                died_at = time.time()
            if watched is None:  # it died before we first saw it: its pid file says which
                watched = procs.read_pidfile(self.slot_dir / PIDFILE)
            if held(self.slot_dir):
                self.stopping.wait(POLL / 2)
                continue
            if self.restarts >= self.max_restarts:
                self.say(
                    f"ovs-vswitchd is down and {self.restarts} restarts are used up: giving up"
                )
                self.event(event="give-up", restarts=self.restarts)
                return 1
            self.restarts += 1
            began = time.time()
            try:
                new = self.start()
            except FlowkeeperError as exc:
                failures += 1
                self.say(f"restart {self.restarts}/{self.max_restarts} failed: {exc}")
                self.event(event="restart-failed", n=self.restarts, error=str(exc))
                self.stopping.wait(min(MAX_BACKOFF, 0.25 * failures))
                continue
            done = time.time()
            self.say(
                f"restart {self.restarts}/{self.max_restarts}: ovs-vswitchd pid {new} "
                f"(down {done - died_at:.3f} s, start took {done - began:.3f} s)"
            )
            self.event(
                event="restart",
                n=self.restarts,
                old_pid=watched,
                pid=new,
                died=round(died_at, 3),
                down_s=round(done - died_at, 3),
                start_s=round(done - began, 3),
            )
            watched, died_at = new, None
        self.say("stopped by signal")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowkeeper.lab.supervise")
    parser.add_argument("--host", required=True, help="the host's name")
    parser.add_argument("--index", type=int, required=True, help="the host's lab index")
    parser.add_argument("--slot", required=True, choices=["a", "b"])
    parser.add_argument("--ns", required=True, help="the slot's network namespace")
    parser.add_argument(
        "--pidfile",
        type=Path,
        required=True,
        help="the slot's ovs-vswitchd pid file (in the slot's OVS directory)",
    )
    parser.add_argument("--tunnel-ip", required=True)
    parser.add_argument("--lab-dir", type=Path, required=True)
    parser.add_argument("--max-restarts", type=int, default=DEFAULT_MAX_RESTARTS)
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS)
    args = parser.parse_args(argv)
    if args.pidfile.name != PIDFILE:
        parser.error(f"--pidfile must name the slot's {PIDFILE}")
    if not 0 <= args.max_restarts <= 1000 or not 0 < args.max_seconds <= 7 * 24 * 3600:
        parser.error("--max-restarts must be 0..1000 and --max-seconds 0..604800")

    from flowkeeper.lab import hostops, ovsproc
    from flowkeeper.lab.state import HostState

    host = HostState(
        name=args.host,
        index=args.index,
        ns=args.ns,
        tunnel_ip=args.tunnel_ip,
        dir=str(args.pidfile.resolve().parent),
    )

    def start() -> int:
        pid = ovsproc.start_vswitchd(host)
        hostops.bring_up_underlay(host)  # br-phy's tap is new: its tunnel IP again
        return pid

    sup = Supervisor(
        Path(host.dir),
        args.lab_dir.resolve(),
        start,
        label=f"{args.host} slot {args.slot}",
        max_restarts=args.max_restarts,
        max_seconds=args.max_seconds,
    )

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        sup.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with contextlib.suppress(KeyboardInterrupt):
        return sup.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
