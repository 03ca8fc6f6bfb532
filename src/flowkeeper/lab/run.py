"""Run lab commands as argv lists, in the root namespace or inside a lab namespace."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence

from flowkeeper.errors import FlowkeeperError


class LabError(FlowkeeperError):
    """A lab operation failed."""


def in_ns(ns: str | None, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside namespace `ns` (or as is for the root namespace)."""
    if not ns:
        return list(argv)
    if argv[:1] == ["ip"] and argv[1:2] != ["netns"]:
        return ["ip", "-n", ns, *argv[1:]]  # no extra exec through `ip netns exec`
    return ["ip", "netns", "exec", ns, *argv]


def run(
    argv: Sequence[str],
    *,
    ns: str | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 60.0,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise LabError with the command's own first error line."""
    full = in_ns(ns, argv)
    if env is not None:
        full = ["env", *(f"{k}={v}" for k, v in env.items()), *full]
    try:
        proc = subprocess.run(
            full, capture_output=True, text=True, timeout=timeout, check=False, input=stdin
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"timed out after {timeout:.0f}s: {' '.join(argv)}") from None
    except FileNotFoundError:
        raise LabError(f"command not found: {argv[0]} (run scripts/install-deps.sh)") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        last = detail[-1] if detail else f"exit {proc.returncode}"
        raise LabError(f"{' '.join(argv)}: {last}")
    return proc


def list_netns() -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def add_netns(name: str) -> None:
    run(["ip", "netns", "add", name])
    run(["ip", "link", "set", "lo", "up"], ns=name)


def del_netns(name: str) -> None:
    run(["ip", "netns", "delete", name], check=False)
