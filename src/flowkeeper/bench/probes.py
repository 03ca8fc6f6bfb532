"""The benches' probes: every pair of VMs probed by ONE probe process (lab/probe.py with a
`--target` per pair, a socket in each source VM's namespace), each pair seen through its
own handle (its result, its interval, its stop)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import dataclass, field

from flowkeeper.errors import FlowkeeperError
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.probe import MAX_COUNT, ProbeResult
from flowkeeper.lab.state import LabState

PROBE_INTERVAL = 0.01


@dataclass
class ProbeGroup:
    """One probe process and the pairs it probes, in order."""

    names: list[str]
    proc: subprocess.Popen[str]
    _results: list[ProbeResult] | None = field(default=None, repr=False)

    def results(self) -> list[ProbeResult]:
        """Every pair's result, once the process ended (waits for it)."""
        if self._results is None:
            out, err = self.proc.communicate(timeout=900)
            if self.proc.returncode != 0 or not out.strip():
                raise FlowkeeperError(self._failed(err))
            raw = json.loads(out)
            if not isinstance(raw, list) or len(raw) != len(self.names):
                raise FlowkeeperError(f"probes {self._label()}: not one result per pair")
            self._results = [ProbeResult(**one) for one in raw]
        return self._results

    def say(self, line: str) -> None:
        """Send a control line (`interval S [N]`, `stop [N]`) to a `--control` probe."""
        if self.proc.stdin is None:
            raise ValueError(f"probes {self._label()} were not started with control")
        try:
            self.proc.stdin.write(f"{line}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:  # it ended early: say why
            self.proc.wait(timeout=60)
            out = self.proc.stdout.read() if self.proc.stdout else ""
            err = self.proc.stderr.read() if self.proc.stderr else ""
            summary = ""
            with contextlib.suppress(ValueError, TypeError, KeyError, IndexError):
                got = ProbeResult(**json.loads(out)[0])
                summary = f" (it sent {got.sent} in {got.duration_s:.2f} s)"
            raise FlowkeeperError(self._failed(err) + summary) from None

    def _label(self) -> str:
        more = f" and {len(self.names) - 1} more" if len(self.names) > 1 else ""
        return f"{self.names[0] if self.names else '(none)'}{more}"

    def _failed(self, err: str | None) -> str:
        last = (err or "").strip().splitlines()[-1:] or ["no output"]
        return f"probes {self._label()} exited with {self.proc.returncode}: {last[0]}"


@dataclass
class Probe:
    """One pair's view of its group."""

    group: ProbeGroup
    index: int

    @property
    def name(self) -> str:
        return self.group.names[self.index]

    def result(self) -> ProbeResult:
        return self.group.results()[self.index]

    def set_interval(self, seconds: float) -> None:
        """Change this pair's interval from its next probe on (a `--control` group)."""
        self.group.say(f"interval {seconds} {self.index}")

    def stop(self) -> None:
        """End this pair's sending now (result() then has what it sent)."""
        self.group.say(f"stop {self.index}")


def start_probes(
    lab: Lab,
    state: LabState,
    pairs: list[tuple[str, str]],
    seconds: float,
    *,
    control: bool = False,
    fine: float = 0.001,
    interval: float = PROBE_INTERVAL,
) -> list[Probe]:
    """Every pair probed every `interval` s for `seconds`, by one process. With
    `control`, each pair's interval can be changed while it runs (Probe.set_interval,
    down to `fine`); it still sends for `seconds` only and at most seconds / fine probes."""
    del lab  # the namespaces are the lab state's
    count = min(MAX_COUNT, int(seconds / (fine if control else interval)))
    argv = [sys.executable, "-m", "flowkeeper.lab.probe"]
    for src, dst in pairs:
        argv += ["--target", f"{state.vm(src).ns}={state.vm(dst).ip}"]
    argv += ["--count", str(count), "--interval", str(interval)]
    argv += ["--seconds", str(seconds)]
    if control:
        argv.append("--control")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if control else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    group = ProbeGroup([f"{src}->{dst}" for src, dst in pairs], proc)
    return [Probe(group, n) for n in range(len(pairs))]
