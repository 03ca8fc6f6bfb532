"""Shared fixtures: a real lab (namespaces + OVS) that is always torn down."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from flowkeeper.errors import FlowkeeperError
from flowkeeper.lab.lab import Lab, UpOptions
from flowkeeper.lab.procs import cmdline
from flowkeeper.lab.state import LabState
from flowkeeper.naming import BR_INT, BR_TUN

LabFactory = Callable[..., tuple[Lab, LabState]]
LAB_TOOLS = ("ovs-vswitchd", "ovsdb-server", "ovs-ofctl", "ip", "ethtool")


def wait_for(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `check` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _lab_ready() -> str | None:
    if os.geteuid() != 0:
        return "the real-OVS lab needs root"
    missing = [t for t in LAB_TOOLS if shutil.which(t) is None]
    return f"missing {', '.join(missing)} (run scripts/install-deps.sh)" if missing else None


def require_lab() -> None:
    reason = _lab_ready()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the real-OVS tests: {reason}")
    pytest.skip(reason)


def leftovers(lab_name: str, lab_dir: Path) -> list[str]:
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    names = [line.split()[0] for line in ns.stdout.splitlines() if line.strip()]
    left = [f"netns {n}" for n in names if n.startswith(f"{lab_name}-")]
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit() and str(lab_dir) in cmdline(int(pid_dir.name)):
            left.append(f"pid {pid_dir.name}: {cmdline(int(pid_dir.name))[:80]}")
    return left


_REPORT_LINES = pytest.StashKey[list[str]]()


@pytest.fixture
def report_line(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Adds a line to the run's closing summary: the numbers a test measured (crash states
    checked, schemathesis's counts) show in the output of every `make test`."""
    lines = request.config.stash.setdefault(_REPORT_LINES, [])

    def add(line: str) -> None:
        lines.append(f"{request.node.nodeid}: {line}")

    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(_REPORT_LINES, [])
    if lines:
        terminalreporter.section("flowkeeper: what the tests measured")
        for line in lines:
            terminalreporter.line(line)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report on the test item, so fixtures can see a failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _show_lab(lab: Lab, lines: int = 60) -> None:
    """Print each host's flows and the tail of every process log in a lab.

    pytest shows this under the failing test, so a failure in CI can be understood from
    its output alone.
    """
    try:
        state = LabState.load(lab.dir)
    except FlowkeeperError as exc:
        state = None
        print(f"lab state unreadable: {exc}")
    for host in state.hosts if state else []:
        for slot_name, slot in host.slots().items():
            label = host.name if host.standby is None else f"{host.name} slot {slot_name}"
            for bridge in (BR_INT, BR_TUN):
                try:
                    flows = [f.render() for f in lab.bridge(slot, bridge).dump_flows()]
                except FlowkeeperError as exc:
                    flows = [f"(dump failed: {exc})"]
                print(f"----- {label} {bridge}: {len(flows)} flows -----")
                print("\n".join(flows))
    for log in sorted(lab.dir.glob("**/*.log")):
        if "snapshot" in log.parts:
            continue
        text = log.read_text(errors="replace").splitlines()
        print(f"----- {log.relative_to(lab.dir)} (last {min(lines, len(text))} lines) -----")
        print("\n".join(text[-lines:]))


@pytest.fixture
def lab_factory(request: pytest.FixtureRequest) -> Iterator[LabFactory]:
    """Yields a function that brings up a lab; every lab it made is torn down afterwards.

    When the test failed, the tail of each lab log is printed before teardown.
    """
    made: list[tuple[Lab, str]] = []

    def up(**kwargs: int | bool) -> tuple[Lab, LabState]:
        require_lab()
        name = f"fkt{uuid.uuid4().hex[:5]}"
        lab = Lab(Path(f"/tmp/{name}"))
        made.append((lab, name))
        state = lab.up(UpOptions(name=name, **kwargs))  # type: ignore[arg-type]
        return lab, state

    yield up
    call_report = getattr(request.node, "report_call", None)
    for lab, name in made:
        if call_report is not None and call_report.failed:
            _show_lab(lab)
        lab.down()
        assert leftovers(name, lab.dir) == [], "lab down left things behind"
