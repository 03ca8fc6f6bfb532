"""The lab's control plane processes: one flowkeeper server and one agent per host."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from flowkeeper.fsutil import atomic_write
from flowkeeper.lab import procs
from flowkeeper.lab.run import LabError
from flowkeeper.lab.state import HostState, LabState


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_token(state: LabState) -> Path:
    path = Path(state.dir) / "token"
    if not path.exists():
        atomic_write(path, secrets.token_hex(24).encode())
    return path


def _spawn(argv: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def start_server(state: LabState, url: str = "") -> str:
    """Start `flowkeeper server` on 127.0.0.1 with its SQLite store in the lab dir."""
    port = int(url.rsplit(":", 1)[1]) if url else free_port()
    url = f"http://127.0.0.1:{port}"
    store = Path(state.dir) / "server" / "flowkeeper.db"
    store.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    argv = [
        sys.executable,
        "-m",
        "flowkeeper",
        "server",
        "--listen",
        f"127.0.0.1:{port}",
        "--store",
        f"sqlite:{store}",
        "--token-file",
        str(ensure_token(state)),
    ]
    state.pids["server"] = _spawn(argv, Path(state.dir) / "server" / "server.log")
    state.server_url = url
    state.save()
    wait_http(f"{url}/v1/openapi.json", state.pids["server"], timeout=20)
    return url


def stop_server(state: LabState) -> None:
    pid = state.pids.pop("server", None)
    if pid:
        procs.stop(pid, state.dir)
    state.save()


def wait_http(url: str, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not procs.alive(pid):
            raise LabError(f"process {pid} exited while starting; see its log")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - 127.0.0.1 only
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise LabError(f"{url} did not answer within {timeout:.0f}s")


def agent_argv(state: LabState, host: HostState, l2pop: bool = True) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "flowkeeper",
        "agent",
        "--host",
        host.name,
        "--tunnel-ip",
        host.tunnel_ip,
        "--server",
        state.server_url,
        "--ovsdb",
        f"unix:{host.db_sock}",
        "--state-dir",
        host.path("agent"),
        "--token-file",
        str(ensure_token(state)),
    ]
    if host.standby_for:
        argv += ["--standby-for", host.standby_for]
    return argv if l2pop else [*argv, "--no-l2pop"]


def start_agent(state: LabState, host: HostState) -> int:
    pid = _spawn(agent_argv(state, host, state.l2pop), Path(host.dir) / "agent.log")
    host.pids["agent"] = pid
    state.save()
    return pid


def stop_agent(host: HostState, *, hard: bool = False) -> None:
    pid = host.pids.pop("agent", None)
    if pid:
        procs.stop(pid, host.dir, hard=hard)


def start_simhosts(state: LabState, count: int, out: Path, max_seconds: float = 900) -> int:
    """Start `count` virtual hosts (one process) against the lab's server."""
    argv = [
        sys.executable,
        "-m",
        "flowkeeper.lab.simhosts",
        "--server",
        state.server_url,
        "--token-file",
        str(ensure_token(state)),
        "--hosts",
        str(count),
        "--out",
        str(out),
        "--max-seconds",
        str(max_seconds),
    ]
    pid = _spawn(argv, Path(state.dir) / "simhosts.log")
    state.pids["simhosts"] = pid
    state.save()
    return pid


def stop_simhosts(state: LabState) -> None:
    pid = state.pids.pop("simhosts", None)
    if pid:
        procs.stop(pid, state.dir)
        state.save()
