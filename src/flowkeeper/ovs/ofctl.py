"""OpenFlow through ovs-ofctl: atomic bundles of flow changes, and flow dumps."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence

from flowkeeper.flows.flowset import FlowDelta
from flowkeeper.flows.record import Flow, parse_dump
from flowkeeper.ovs.errors import OpenFlowError

OFCTL = "ovs-ofctl"
PROTOCOL = "OpenFlow15"


class OfctlBridge:
    """One bridge's OpenFlow tables, reached through its management socket."""

    def __init__(self, name: str, mgmt_socket: str, timeout: float = 120.0) -> None:
        self.name = name
        self.target = f"unix:{mgmt_socket}"
        self.timeout = timeout

    def _run(self, args: Sequence[str], stdin: str | None = None) -> str:
        argv = [OFCTL, "-O", PROTOCOL, *args]
        try:
            proc = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise OpenFlowError(f"{self.name}: ovs-ofctl {args[0]} timed out") from None
        except FileNotFoundError:
            raise OpenFlowError("ovs-ofctl not found: install openvswitch-switch") from None
        if proc.returncode != 0:
            detail = _first_error_line(proc.stderr)
            raise OpenFlowError(f"{self.name}: ovs-ofctl {args[0]} failed: {detail}")
        return proc.stdout

    def dump_flows(self) -> list[Flow]:
        """Every flow on the bridge, in canonical form (ports by name)."""
        out = self._run(["--no-stats", "--names", "dump-flows", self.target])
        return parse_dump(out, self.name)

    def flow_count(self, match: str = "") -> int:
        """How many flows (matching `match`, e.g. a cookie/mask) the bridge holds."""
        out = self._run(["dump-aggregate", self.target, *([match] if match else [])])
        for token in out.split():
            if token.startswith("flow_count="):
                return int(token.split("=", 1)[1])
        raise OpenFlowError(f"{self.name}: no flow_count in dump-aggregate reply")

    def add_flows(self, flows: Iterable[Flow]) -> None:
        """Add flows in one atomic bundle (restore path: no dump, no diff)."""
        self.add_lines([f.render() for f in flows])

    def add_lines(self, lines: Iterable[str]) -> None:
        """Add already-rendered flow lines in one atomic bundle, as they are."""
        self._bundle("\n".join(lines))

    def replace_flows(self, flows: Iterable[Flow]) -> None:
        """ovs-ofctl's own dump-and-diff replace, in one bundle (what ovs-save does)."""
        self.replace_lines([f.render() for f in flows])

    def replace_lines(self, lines: Iterable[str]) -> None:
        text = "\n".join(lines) + "\n"
        self._run(["--bundle", "replace-flows", self.target, "-"], stdin=text)

    def apply(self, delta: FlowDelta) -> None:
        """Apply a delta as ONE atomic bundle: deletes, modifies and adds together."""
        lines = [f"delete_strict {f.render_key()}" for f in delta.delete]
        # OpenFlow 1.1+ modify never changes a flow's cookie (OVS 3.1 keeps the old one), so
        # a changed flow is re-added: an add with the same match and priority replaces the
        # flow in place, atomically inside the bundle.
        lines += [f"add {f.render()}" for f in delta.modify]
        lines += [f"add {f.render()}" for f in delta.add]
        self._bundle("\n".join(lines))

    def delete_all(self) -> None:
        self._run(["--bundle", "del-flows", self.target])

    def delete_matching(self, specs: Iterable[str]) -> None:
        """Non-strict deletes (each spec may carry a cookie mask), in one atomic bundle."""
        self._bundle("\n".join(f"delete {spec}" for spec in specs))

    def _bundle(self, text: str) -> None:
        if not text:
            return
        self._run(["--bundle", "add-flows", self.target, "-"], stdin=text + "\n")


def _first_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in lines:
        if "ovs-ofctl:" in line or "OFPT_ERROR" in line or "error" in line.lower():
            return line.removeprefix("ovs-ofctl: ")
    return lines[0] if lines else "no detail"
