"""The first thing the agent does: if OVS lost its flows, restore the snapshot using only
ovs-ofctl, before the agent loads its OVSDB library and HTTP client."""

from __future__ import annotations

import itertools
import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flowkeeper.agent.restore import RestoreResult, restore
from flowkeeper.errors import FlowkeeperError
from flowkeeper.naming import BR_INT, BR_TUN, tunnel_port_name
from flowkeeper.pipeline.tables import COOKIE_TAG
from flowkeeper.snapshot.store import LoadReport, SnapshotStore, log_problems

log = logging.getLogger("flowkeeper.agent")
OURS = f"cookie={COOKIE_TAG:#x}/{0xFFFF << 48:#x}"
_PORT_DESC = re.compile(r"^ *(\d+)\(([^)]+)\):", re.MULTILINE)
QUERY_TIMEOUT_S = 15.0  # a question to the switch: a hung ovs-ofctl must not hold the boot
LOAD_TIMEOUT_S = 120.0  # one bundle of a bridge's flows (200k flows take about 4 s)


class FastBootError(FlowkeeperError):
    """The quick path cannot run; the agent's full boot path handles it."""


def _command(argv: list[str]) -> list[str]:
    """The tool's command word (ovs-ofctl -O OpenFlow15 --bundle add-flows ... -> add-flows)."""
    for prev, arg in itertools.pairwise(argv):
        if not arg.startswith("-") and prev != "-O":
            return [arg]
    return []


@dataclass
class CliTarget:
    """A RestoreTarget through the OVS command-line tools (fast to start)."""

    ovsdb: str  # unix:PATH
    rundir: Path

    def _run(self, argv: list[str], stdin: str | None = None, timeout: float | None = None) -> str:
        """Run an OVS tool; a missing, failing or hung one is a FastBootError (one line)."""
        timeout = QUERY_TIMEOUT_S if timeout is None else timeout
        what = " ".join([argv[0], *_command(argv)])
        try:
            proc = subprocess.run(
                argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise FastBootError(f"{what} timed out after {timeout:.0f} s") from None
        except OSError as exc:  # not installed, not executable
            raise FastBootError(f"{what}: {exc.strerror or exc}") from None
        if proc.returncode != 0:
            raise FastBootError(f"{what} failed: {proc.stderr.strip()[:200]}")
        return proc.stdout

    def mgmt(self, bridge: str) -> str:
        return f"unix:{self.rundir / f'{bridge}.mgmt'}"

    def our_flow_count(self, bridge: str) -> int:
        out = self._run(
            ["ovs-ofctl", "-O", "OpenFlow15", "dump-aggregate", self.mgmt(bridge), OURS]
        )
        for token in out.split():
            if token.startswith("flow_count="):
                return int(token.split("=", 1)[1])
        raise FastBootError("no flow_count in dump-aggregate reply")

    def port_numbers(self) -> dict[str, int]:
        """The ports the switch itself has now (OpenFlow port descriptions, not OVSDB:
        right after a restart, OVSDB still shows old ofports for devices that are gone)."""
        numbers: dict[str, int] = {}
        for bridge in (BR_INT, BR_TUN):
            out = self._run(["ovs-ofctl", "-O", "OpenFlow15", "dump-ports-desc", self.mgmt(bridge)])
            numbers.update((name, int(num)) for num, name in _PORT_DESC.findall(out))
        return numbers

    def ensure_tunnels(self, peers: set[tuple[str, str]], local_ip: str) -> None:
        have = self.port_numbers()
        if any(tunnel_port_name(k, ip) not in have for k, ip in peers):
            raise FastBootError("tunnel ports missing: the full boot path creates them")

    def add_lines(self, bridge: str, lines: list[str]) -> None:
        """One atomic bundle through ovs-ofctl: for bulk loads its C parser is fastest."""
        self._run(
            ["ovs-ofctl", "-O", "OpenFlow15", "--bundle", "add-flows", self.mgmt(bridge), "-"],
            stdin="\n".join(lines) + "\n",
            timeout=LOAD_TIMEOUT_S,
        )


def restore_if_lost(
    state_dir: Path, ovsdb: str, rundir: Path, tunnel_ip: str
) -> tuple[LoadReport, RestoreResult | None]:
    """Load the snapshot (the agent's load: a damaged journal tail is cut back, and logged);
    put back the flows of every bridge that holds none of ours. Never raises: whatever
    fails here, the full boot path takes over (it restores through its own OpenFlow
    connection, or syncs cold without a usable snapshot)."""
    report = SnapshotStore(state_dir / "snapshot").load(repair=True)
    log_problems(report, log)
    if report.data is None:
        return report, None
    target = CliTarget(ovsdb, rundir)
    try:
        lost = {b for b in (BR_INT, BR_TUN) if target.our_flow_count(b) == 0}
        if not lost:
            return report, None
        return report, restore(target, report.data, tunnel_ip, bridges=lost)
    except FastBootError as exc:
        log.info("quick restore skipped (%s)", exc)
    except Exception as exc:  # the quick path is an optimisation: never the agent's end
        log.warning("quick restore skipped (%s: %s)", type(exc).__name__, exc)
    return report, None
