"""Run the traffic tool (flowkeeper.lab.traffic) inside lab VMs, in the foreground or in
the background; background PIDs are recorded in lab.json and stopped by PID only."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowkeeper.lab import procs
from flowkeeper.lab.run import LabError, in_ns, run
from flowkeeper.lab.state import LabState, VmState

READY_TIMEOUT_S = 10.0
Result = dict[str, Any]


def tool_argv(command: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "flowkeeper.lab.traffic", command, *args]


def traffic_dir(state: LabState) -> Path:
    path = Path(state.dir) / "traffic"
    path.mkdir(parents=True, exist_ok=True)
    return path


def once(vm: VmState, command: str, *args: str, timeout: float = 30.0) -> Result:
    """Run one bounded tool command inside the VM and return its JSON."""
    proc = run(tool_argv(command, *args), ns=vm.ns, timeout=timeout)
    return dict(json.loads(proc.stdout))


@dataclass
class Background:
    """A tool process running inside a VM; its result lands in `out`."""

    lab_dir: str
    key: str  # its entry in the lab's pids
    proc: subprocess.Popen[bytes]
    out: Path
    seconds: float  # how long it runs by its own bound
    log: Path
    done: Result | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def result(self, extra: float = 15.0) -> Result:
        """Wait (at most its own bound plus `extra` s) for the process and read its JSON."""
        if self.done is not None:
            return self.done
        try:
            self.proc.wait(timeout=self.seconds + extra)
        except subprocess.TimeoutExpired:
            self.stop()
            raise LabError(f"{self.key} did not finish in {self.seconds + extra:.0f}s") from None
        _record(self.lab_dir, self.key, None)
        if not self.out.exists():
            raise LabError(f"{self.key} exited {self.proc.returncode}: {self.log.read_text()}")
        self.done = dict(json.loads(self.out.read_text()))
        return self.done

    def stop(self) -> None:
        """Stop it by its PID (only if it is still ours)."""
        procs.stop(self.proc.pid, self.lab_dir)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        _record(self.lab_dir, self.key, None)


def _record(lab_dir: str, key: str, pid: int | None) -> None:
    """Add or drop one PID in lab.json as it is on disk now (other lab operations
    rewrite it meanwhile: a copy held since the start would undo their changes)."""
    state = LabState.load(Path(lab_dir))
    if state is None:
        return
    if pid is None:
        state.pids.pop(key, None)
    else:
        state.pids[key] = pid
    state.save()


def start(
    state: LabState,
    vm: VmState,
    name: str,
    command: str,
    *args: str,
    seconds: float,
    ready: bool = False,
) -> Background:
    """Start a tool command inside the VM; with `ready`, return once it listens."""
    key = f"traffic-{name}"
    if key in state.pids and procs.is_ours(state.pids[key], state.dir):
        raise LabError(f"a traffic process named {name!r} is running already")
    base = traffic_dir(state)
    out, log, flag = base / f"{name}.json", base / f"{name}.log", base / f"{name}.ready"
    for path in (out, flag):
        path.unlink(missing_ok=True)
    argv = [*tool_argv(command, *args), "--out", str(out)]
    if ready:
        argv += ["--ready", str(flag)]
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            in_ns(vm.ns, argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            start_new_session=True,
        )
    _record(state.dir, key, proc.pid)
    bg = Background(state.dir, key, proc, out, seconds, log)
    if ready:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not flag.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                bg.stop()
                raise LabError(f"{key} did not start listening: {log.read_text()}")
            time.sleep(0.02)
    return bg
