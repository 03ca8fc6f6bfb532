"""Helpers of the HA fault tests: port churn through the servers, probes, flows, the cold
reference and the agents' watch logs."""

from __future__ import annotations

import itertools
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowkeeper.client import ApiError, Client, MaybeApplied
from flowkeeper.errors import FlowkeeperError
from flowkeeper.lab import services
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.state import HostState, LabState
from flowkeeper.naming import BR_INT, BR_TUN
from flowkeeper.pipeline.tables import LEARNED_COOKIE
from tests.conftest import wait_for

Shape = tuple[str, int, int, tuple[tuple[str, str], ...], str]
_MACS = itertools.count()  # churn MACs, unique across every churn of the process


def admin_token(state: LabState) -> str:
    return services.ensure_token(state).read_text().strip()


def client_for(state: LabState, first: int = 1, *, timeout: float = 30.0) -> Client:
    """A client with every server of the lab, trying server `first` first."""
    urls = state.servers[first - 1 :] + state.servers[: first - 1]
    return Client(",".join(urls), admin_token(state), timeout=timeout, ca=state.ca or None)


def one_server(state: LabState, index: int, *, timeout: float = 30.0) -> Client:
    """A client of server `index` alone (no failover)."""
    return Client(state.servers[index - 1], admin_token(state), timeout=timeout)


# --- churn -------------------------------------------------------------------------


@dataclass
class Churn:
    """A bounded loop creating and deleting ports on the lab's hosts through the servers
    (op i goes first to server i mod N, the client fails over from there).

    Records what the API acknowledged: created port ids, deleted port ids; writes whose
    outcome is unknown (MaybeApplied), and every error with the time it happened.
    """

    lab: Lab
    state: LabState
    max_ops: int = 400
    max_seconds: float = 60.0
    pause: float = 0.03
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:4])
    created: list[tuple[float, str]] = field(default_factory=list)  # (time, port id)
    deleted: list[tuple[float, str]] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)  # ids that may or may not exist
    errors: list[tuple[float, str]] = field(default_factory=list)
    ops: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Churn:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Churn:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.max_seconds + 60)
            assert not self._thread.is_alive(), "the churn loop did not stop"
        return self

    def _run(self) -> None:
        state = self.state
        clients = [client_for(state, i + 1, timeout=15) for i in range(len(state.servers))]
        hosts = state.host_names()
        nets = [state.networks[k] for k in sorted(state.networks, key=int)]
        live: list[str] = []
        deadline = time.monotonic() + self.max_seconds
        for i in range(self.max_ops):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            self.ops += 1
            client = clients[i % len(clients)]
            if i % 3 == 2 and live:
                self._delete(client, live.pop(0))
            else:
                pid = self._create(client, i, nets[i % len(nets)], hosts[i % len(hosts)])
                if pid:
                    live.append(pid)
            time.sleep(self.pause)

    def _create(self, client: Client, i: int, net: str, host: str) -> str | None:
        pid = str(uuid.uuid4())
        n = next(_MACS)
        mac = f"fa:16:3e:{0xC0 + ((n >> 16) & 15):02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"
        try:
            client.create_port(net, host, mac, name=f"churn-{self.prefix}-{i}", id=pid)
        except MaybeApplied:
            self.uncertain.append(pid)
            return None
        except FlowkeeperError as exc:
            self.errors.append((time.time(), str(exc)))
            return None
        self.created.append((time.time(), pid))
        return pid

    def _delete(self, client: Client, pid: str) -> None:
        try:
            client.delete_port(pid)
        except MaybeApplied:
            self.uncertain.append(pid)
            return
        except FlowkeeperError as exc:
            self.errors.append((time.time(), str(exc)))
            return
        self.deleted.append((time.time(), pid))

    def check_acknowledged(self, client: Client) -> list[str]:
        """Problems: an acknowledged create that is missing, an acknowledged delete that
        is still there (writes of unknown outcome may go either way)."""
        present = {p.id for p in client.list_ports()}
        gone = {pid for _, pid in self.deleted}
        kept = {pid for _, pid in self.created} - gone - set(self.uncertain)
        problems = [f"acknowledged port {pid} is missing" for pid in sorted(kept - present)]
        problems += [f"deleted port {pid} is still there" for pid in sorted(gone & present)]
        return problems

    def acked_after(self, t: float) -> int:
        return sum(1 for at, _ in self.created + self.deleted if at >= t)


# --- probes ------------------------------------------------------------------------


def probe_pairs(state: LabState) -> list[tuple[str, str]]:
    """One VM pair per pair of neighbouring hosts, on the same network."""
    hosts = state.host_names()
    pairs = []
    for n, host in enumerate(hosts):
        other = hosts[(n + 1) % len(hosts)]
        net = 1 + n % max(1, len(state.networks))
        a = next(v for v in state.vms if v.host == host and v.network == net)
        b = next(v for v in state.vms if v.host == other and v.network == net)
        pairs.append((a.name, b.name))
    return pairs


# --- flows, convergence, the cold reference ------------------------------------------


def flows(lab: Lab, host: HostState) -> set[Shape]:
    """The agent's flows, cookies aside (a cold start has another generation)."""
    out = set()
    for bridge in (BR_INT, BR_TUN):
        for f in lab.bridge(host, bridge).dump_flows():
            if f.cookie != LEARNED_COOKIE:
                out.add((f.bridge, f.table, f.priority, tuple(f.match), f.actions))
    return out


def watch_records(host: HostState) -> list[dict[str, Any]]:
    path = Path(services.watch_log_path(host))
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    complete = lines if path.read_text().endswith("\n") else lines[:-1]
    return [json.loads(line) for line in complete if line.strip()]


def connected_server(host: HostState) -> str:
    """The server the host's agent received its last watch line from."""
    recs = watch_records(host)
    return str(recs[-1]["server"]) if recs else ""


def store_revision(state: LabState) -> int:
    return client_for(state).revision()


def wait_caught_up(state: LabState, timeout: float = 30.0) -> int:
    """Until every agent's watch log holds a line at (or past) the store's revision: all
    up to it has reached the agent. Returns that revision."""
    revision = store_revision(state)

    def done() -> bool:
        return all(
            max((int(r["revision"]) for r in watch_records(h)), default=0) >= revision
            for h in state.hosts
        )

    wait_for(done, timeout, f"every agent to reach revision {revision}")
    return revision


def settled_flows(lab: Lab, state: LabState, timeout: float = 20.0) -> dict[str, set[Shape]]:
    """Every host's flows once two dumps half a second apart agree."""
    out: dict[str, set[Shape]] = {}
    for host in state.hosts:
        last: set[Shape] | None = None
        deadline = time.monotonic() + timeout
        while True:
            now = flows(lab, host)
            if now == last or time.monotonic() > deadline:
                out[host.name] = now
                break
            last = now
            time.sleep(0.5)
    return out


def log_of(host: HostState) -> str:
    return (Path(host.dir) / "agent.log").read_text()


def cold_reference(
    lab: Lab, state: LabState, on_restart: Callable[[str, int], None]
) -> dict[str, set[Shape]]:
    """What agents with no snapshot, on switches with no flows, install: every agent is
    stopped, its snapshot and flows removed, and started again; then their flows.
    `on_restart(host, revision)` is told the store revision at which each one stopped."""
    revision = store_revision(state)
    synced = {}
    for host in state.hosts:
        synced[host.name] = log_of(host).count("in sync at revision")
        services.stop_agent(host)
        on_restart(host.name, revision)
        shutil.rmtree(Path(host.path("agent")) / "snapshot", ignore_errors=True)
        for bridge in (BR_INT, BR_TUN):
            lab.bridge(host, bridge).delete_all()
    state.save()
    for host in state.hosts:
        services.start_agent(state, host)
    for host in state.hosts:
        wait_for(_synced_again(host, synced[host.name]), 30, f"a cold sync of {host.name}")
    return settled_flows(lab, state)


def _synced_again(host: HostState, before: int) -> Callable[[], bool]:
    return lambda: log_of(host).count("in sync at revision") > before


def one_line_503(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.status == 503 and "\n" not in str(exc)
