"""The lab's control plane processes: flowkeeper servers and one agent per host.

The lab runs one server or several on one store: the lab's SQLite file (every server
opens it; each one's hub polls its event log) or the lab's etcd cluster. Server N's URL
is `state.servers[N - 1]`, its PID `state.pids["serverN"]`.

The lab keeps the server's bootstrap admin token in LABDIR/token; each agent runs with a
host token of its own (HOSTDIR/agent.token), and the simulated hosts with theirs
(LABDIR/simhosts.tokens), all 0600. With TLS, the CA is LABDIR/tls/ca.pem.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from flowkeeper.client import Client
from flowkeeper.failover import start_index
from flowkeeper.fsutil import atomic_write
from flowkeeper.lab import procs
from flowkeeper.lab.run import LabError
from flowkeeper.lab.state import HostState, LabState
from flowkeeper.lab.tls import tls_files
from flowkeeper.tlsconf import client_context


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_token(state: LabState) -> Path:
    """The server's bootstrap admin token (the lab's own)."""
    path = Path(state.dir) / "token"
    if not path.exists():
        atomic_write(path, secrets.token_hex(24).encode())
    return path


def admin_client(state: LabState) -> Client:
    """The lab's admin client: server 1 first, failing over to the others."""
    token = ensure_token(state).read_text().strip()
    return Client(",".join(state.servers) or state.server_url, token, ca=state.ca or None)


def host_token(state: LabState, host: HostState) -> Path:
    """The host's own token file for its agent, made through the API on first use."""
    path = Path(host.dir) / "agent.token"
    if not path.exists():
        made = admin_client(state).create_token("host", host.name, note="lab agent")
        atomic_write(path, (made["secret"] + "\n").encode())
    return path


def simhost_tokens(state: LabState, names: Iterable[str]) -> Path:
    """One host token per simulated host, in one JSON file {name: secret}."""
    path = Path(state.dir) / "simhosts.tokens"
    have: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [n for n in names if n not in have]
    if missing:
        client = admin_client(state)
        for name in missing:
            have[name] = client.create_token("host", name, note="lab virtual host")["secret"]
        atomic_write(path, json.dumps(have).encode())
    return path


def _tls_args(state: LabState) -> list[str]:
    return ["--ca", state.ca] if state.ca else []


def spawn(argv: list[str], log: Path) -> int:
    """Start a lab process in a session of its own, stdout and stderr appended to `log`."""
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


def sqlite_store_url(state: LabState) -> str:
    """The lab's SQLite store: one file every server of the lab opens."""
    store = Path(state.dir) / "server" / "flowkeeper.db"
    store.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return f"sqlite:{store}"


def server_key(index: int) -> str:
    """The key of server `index` (1-based) in the lab's PID table."""
    return f"server{index}"


def server_dir(state: LabState, index: int) -> Path:
    return Path(state.dir) / "server" if index == 1 else Path(state.dir) / f"server{index}"


def start_server(state: LabState, index: int = 1) -> str:
    """Start server `index` on 127.0.0.1 with the lab's store (SQLite file or etcd), on
    the port it had before if it ran already; with the lab's TLS files when it has a CA."""
    while len(state.servers) < index:
        state.servers.append("")
    url = state.servers[index - 1]
    port = int(url.rsplit(":", 1)[1]) if url else free_port()
    url = f"{'https' if state.ca else 'http'}://127.0.0.1:{port}"
    if not state.store_url:
        state.store_url = sqlite_store_url(state)
    argv = [
        sys.executable,
        "-m",
        "flowkeeper",
        "server",
        "--listen",
        f"127.0.0.1:{port}",
        "--store",
        state.store_url,
        "--token-file",
        str(ensure_token(state)),
    ]
    if state.ca:
        tls = tls_files(Path(state.ca).parent)
        argv += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
    key = server_key(index)
    log = server_dir(state, index) / "server.log"
    state.pids[key] = spawn(argv, log)
    state.servers[index - 1] = url
    state.server_url = state.servers[0]
    state.save()
    wait_http(f"{url}/v1/openapi.json", state.pids[key], 20, state.ca)
    return url


def stop_server(state: LabState, index: int = 1, *, hard: bool = False) -> bool:
    """SIGTERM (kill -9 with hard) server `index`. False if it was not running."""
    pid = state.pids.pop(server_key(index), 0)
    stopped = procs.stop(pid, state.dir, hard=hard) if pid else False
    state.save()
    return stopped


def server_running(state: LabState, index: int) -> bool:
    pid = state.pids.get(server_key(index), 0)
    return bool(pid) and procs.is_ours(pid, state.dir)


def agent_servers(state: LabState, host: HostState) -> str:
    """The --server list of a host's agent: every server, in an order that makes each host
    start at a different one (h1 at server 1, h2 at server 2, ...), so that agents spread
    over the servers. (The agent starts at entry start_index(host, n) of its list.)"""
    urls = state.servers or [state.server_url]
    first = (host.index - 1) % len(urls)
    shift = (first - start_index(host.name, len(urls))) % len(urls)
    return ",".join(urls[shift:] + urls[:shift])


def wait_http(url: str, pid: int, timeout: float, ca: str = "") -> None:
    deadline = time.monotonic() + timeout
    context = client_context(Path(ca)) if url.startswith("https:") else None
    while time.monotonic() < deadline:
        if not procs.alive(pid):
            raise LabError(f"process {pid} exited while starting; see its log")
        try:
            with urllib.request.urlopen(url, timeout=1, context=context):  # noqa: S310
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
        agent_servers(state, host),
        "--ovsdb",
        f"unix:{host.db_sock}",
        "--state-dir",
        str(agent_state_dir(host)),
        "--token-file",
        str(host_token(state, host)),
        *_tls_args(state),
    ]
    if state.watch_log:
        argv += ["--watch-log", watch_log_path(host)]
    argv += ["--datapath-type", "netdev"]  # the lab's switches are userspace ones
    # The lab's ovs-vswitchd has its unixctl socket in the host's dir (ovsproc).
    argv += ["--firewall", state.firewall, "--vswitchd-ctl", host.path("ovs-vswitchd.ctl")]
    if host.standby is not None:
        argv += standby_args(host, host.standby)
    return argv if l2pop else [*argv, "--no-l2pop"]


def standby_args(host: HostState, standby: HostState) -> list[str]:
    """The agent's twin-slot flags: slot b's OVSDB, run dir and vswitchd control socket,
    the namespaces the VIF devices of each slot live in, and with the steer handover the
    hypervisor namespace that steers each VM NIC to one slot."""
    steer = ["--vif-steer-netns", host.hv_ns] if host.hv_ns else []
    return [
        "--standby-ovsdb",
        f"unix:{standby.db_sock}",
        "--standby-rundir",
        standby.path("run"),
        "--standby-vswitchd-ctl",
        standby.path("ovs-vswitchd.ctl"),
        "--vif-netns",
        host.ns,
        "--standby-vif-netns",
        standby.ns,
        *steer,
    ]


def agent_state_dir(host: HostState) -> Path:
    """The agent's --state-dir (its slots.json is there with --standby)."""
    return Path(host.path("agent"))


def watch_log_path(host: HostState) -> str:
    """Where a lab agent started with the lab's watch_log logs its watch messages."""
    return host.path("watch.ndjson")


def start_agent(state: LabState, host: HostState) -> int:
    pid = spawn(agent_argv(state, host, state.l2pop), Path(host.dir) / "agent.log")
    host.pids["agent"] = pid
    state.save()
    return pid


def stop_agent(host: HostState, *, hard: bool = False) -> None:
    pid = host.pids.pop("agent", None)
    if pid:
        procs.stop(pid, host.dir, hard=hard)


def start_simhosts(
    state: LabState, count: int, out: Path, max_seconds: float = 900, *, spread: bool = False
) -> list[int]:
    """Start `count` virtual hosts against the lab's server: one process, or with spread
    one process per server, each with its share of the hosts (v0000.. on server 1, the
    next ones on server 2, ...). All of them append to `out`."""
    from flowkeeper.lab.simhosts import virtual_host_name

    tokens = simhost_tokens(state, [virtual_host_name(i) for i in range(count)])
    urls = (state.servers or [state.server_url]) if spread else [state.server_url]
    urls = urls[: max(1, min(len(urls), count))]
    pids = []
    for n, url in enumerate(urls):
        first, last = count * n // len(urls), count * (n + 1) // len(urls)
        argv = [
            sys.executable,
            "-m",
            "flowkeeper.lab.simhosts",
            "--server",
            url,
            "--tokens-file",
            str(tokens),
            *_tls_args(state),
            "--hosts",
            str(last - first),
            "--first",
            str(first),
            "--out",
            str(out),
            "--max-seconds",
            str(max_seconds),
        ]
        suffix = "" if n == 0 else str(n + 1)
        pid = spawn(argv, Path(state.dir) / f"simhosts{suffix}.log")
        state.pids[f"simhosts{suffix}"] = pid
        state.save()
        pids.append(pid)
    return pids


def stop_simhosts(state: LabState) -> None:
    for key in [k for k in state.pids if k.startswith("simhosts")]:
        pid = state.pids.pop(key)
        procs.stop(pid, state.dir)
    state.save()


# --- twin switch slots: each slot's vswitchd supervisor (lab up --standby) -----------
SUPERVISE = "supervise"  # the supervisor's key in a slot's pids
SUPERVISOR_MAX_RESTARTS = 20


def supervisor_argv(state: LabState, slot: HostState, slot_name: str) -> list[str]:
    """`python -m flowkeeper.lab.supervise` for one slot (a or b) of a host."""
    return [
        sys.executable,
        "-m",
        "flowkeeper.lab.supervise",
        "--host",
        slot.name,
        "--index",
        str(slot.index),
        "--slot",
        slot_name,
        "--ns",
        slot.ns,
        # The pid file it watches (a path inside the slot's dir: `procs.is_ours` sees it).
        "--pidfile",
        slot.path("ovs-vswitchd.pid"),
        "--tunnel-ip",
        slot.tunnel_ip,
        "--lab-dir",
        state.dir,
        "--max-restarts",
        str(SUPERVISOR_MAX_RESTARTS),
    ]


def start_supervisor(state: LabState, slot: HostState, slot_name: str) -> int:
    """Start the slot's supervisor; its PID goes into the slot's pids (and lab.json)."""
    from flowkeeper.lab.supervise import LOG_FILE

    pid = spawn(supervisor_argv(state, slot, slot_name), Path(slot.dir) / LOG_FILE)
    slot.pids[SUPERVISE] = pid
    state.save()
    return pid


def stop_supervisor(slot: HostState, *, hard: bool = False) -> None:
    pid = slot.pids.pop(SUPERVISE, None)
    if pid:
        procs.stop(pid, slot.dir, hard=hard)
