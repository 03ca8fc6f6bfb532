"""Faults of the control plane on real processes: one lab (3 hosts with real OVS and
agents, a 3-member etcd cluster, 3 flowkeeper servers) shared by the tests of this module,
which run in order and each leave it whole again.

Each fault happens under port churn (a bounded loop creating and deleting ports on the
lab's hosts through the servers) with probes running between VMs on different hosts:
  a. kill -9 of the server an agent is connected to;
  b. kill -9 of the etcd leader (2 of 3 members: a quorum);
  c. two members down (no quorum), then back;
  d. the watch history of every agent over all of the above.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flowkeeper.client import ApiError
from flowkeeper.errors import FlowkeeperError
from flowkeeper.lab.lab import Lab, UpOptions
from flowkeeper.lab.probe import ProbeResult
from flowkeeper.lab.run import in_ns
from flowkeeper.lab.state import LabState
from flowkeeper.lab.watchcheck import check_history
from flowkeeper.store import open_store
from tests.conformance.conftest import require_etcd
from tests.conftest import _show_lab, leftovers, require_lab, wait_for
from tests.integration.ha_support import (
    Churn,
    client_for,
    cold_reference,
    connected_server,
    flows,
    one_line_503,
    one_server,
    probe_pairs,
    settled_flows,
    store_revision,
    wait_caught_up,
    watch_records,
)

pytestmark = pytest.mark.lab
PROBE_INTERVAL = 0.02


@dataclass
class Ha:
    lab: Lab
    start: int  # a store revision at which every agent was live and caught up
    restarts: dict[str, list[int]] = field(default_factory=dict)  # host -> stop revisions

    @property
    def state(self) -> LabState:
        return self.lab.state()  # always fresh: lab commands save the state they change

    def restarted(self, host: str, revision: int) -> None:
        self.restarts.setdefault(host, []).append(revision)


@pytest.fixture(scope="module")
def ha() -> Iterator[Ha]:
    require_lab()
    require_etcd()
    name = f"fkh{uuid.uuid4().hex[:5]}"
    lab = Lab(Path(f"/tmp/{name}"))
    opts = UpOptions(
        name=name,
        hosts=3,
        vms_per_host=2,
        networks=2,
        store="etcd",
        servers=3,
        watch_log=True,
    )
    try:
        state = lab.up(opts)
        yield Ha(lab, wait_caught_up(state))
    finally:
        lab.down()
        assert leftovers(name, lab.dir) == [], "lab down left things behind"


@pytest.fixture(autouse=True)
def _logs_on_failure(ha: Ha, request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        _show_lab(ha.lab, 80)


def start_probes(ha: Ha, seconds: float) -> list[subprocess.Popen[str]]:
    state = ha.state
    procs = []
    for src, dst in probe_pairs(state):
        assert ha.lab.ping(src, dst, count=3, interval=0.05).lost <= 1  # warm the neighbour
        a, b = state.vm(src), state.vm(dst)
        argv = in_ns(a.ns, ha.lab.probe_argv(a, b.ip, int(seconds / PROBE_INTERVAL), 0.02))
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
    return procs


def probe_results(procs: list[subprocess.Popen[str]]) -> list[ProbeResult]:
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=120)
        out.append(ProbeResult(**json.loads(stdout)))
    return out


def assert_converged_to_cold_reference(ha: Ha) -> None:
    state = ha.state
    wait_caught_up(state)
    live = settled_flows(ha.lab, state)
    reference = cold_reference(ha.lab, state, ha.restarted)
    for host in state.host_names():
        only_live = sorted(live[host] - reference[host])[:3]
        only_ref = sorted(reference[host] - live[host])[:3]
        assert live[host] == reference[host], (host, only_live, only_ref)


def test_a_kill_9_of_the_server_an_agent_uses_fails_over(
    ha: Ha, report_line: Callable[[str], None]
) -> None:
    state = ha.state
    h1 = state.host("h1")
    wait_for(lambda: connected_server(h1) in state.servers, 20, "h1's agent to watch a server")
    victim_url = connected_server(h1)
    victim = state.servers.index(victim_url) + 1
    probes = start_probes(ha, 14.0)
    churn = Churn(ha.lab, state, max_ops=400, max_seconds=40).start()
    time.sleep(2.0)
    seen = len(watch_records(h1))
    assert ha.lab.stop_server(victim, hard=True)
    killed = time.time()

    def failed_over() -> bool:
        later = watch_records(h1)[seen:]
        return any(r["server"] != victim_url for r in later)

    wait_for(failed_over, 30, "h1's agent to watch another server")
    time.sleep(2.0)  # churn goes on through the other two servers
    churn.stop()
    results = probe_results(probes)
    ha.lab.start_server(victim)
    assert churn.acked_after(killed) > 0
    assert churn.errors == [], churn.errors[:3]
    assert churn.check_acknowledged(client_for(ha.state)) == []
    assert [r.lost for r in results] == [0] * len(results), [r.max_gap_ms for r in results]
    assert_converged_to_cold_reference(ha)
    report_line(
        f"server {victim} killed under {churn.ops} churn ops: {len(churn.created)} creates "
        f"and {len(churn.deleted)} deletes acknowledged, {len(churn.uncertain)} uncertain"
    )


def test_b_kill_9_of_the_etcd_leader_keeps_writes_going(
    ha: Ha, report_line: Callable[[str], None]
) -> None:
    cluster = ha.lab.etcd()
    leader = cluster.leader()
    assert leader is not None
    state = ha.state
    probes = start_probes(ha, 10.0)
    churn = Churn(ha.lab, state, max_ops=400, max_seconds=40).start()
    time.sleep(2.0)
    assert ha.lab.stop_etcd(leader, hard=True)
    killed = time.time()
    time.sleep(6.0)  # two members left: a quorum
    churn.stop()
    results = probe_results(probes)
    try:
        # Writes went on: acknowledged after the kill, and any refused during the new
        # leader's election were refused with a one-line 503 before writes came back.
        assert churn.acked_after(killed) > 0
        last_ack = max(t for t, _ in churn.created + churn.deleted)
        assert all(t < last_ack for t, _ in churn.errors), churn.errors[:3]
        assert all("(HTTP 503)" in e and "\n" not in e for _, e in churn.errors)
        assert churn.check_acknowledged(client_for(state)) == []
        assert [r.lost for r in results] == [0] * len(results), [r.max_gap_ms for r in results]
    finally:
        ha.lab.start_etcd(leader)
    wait_caught_up(ha.state)
    report_line(
        f"etcd leader m{leader} killed: {churn.acked_after(killed)} writes acknowledged "
        f"after it, {len(churn.errors)} refused during the election"
    )


def test_c_no_quorum_fails_writes_with_503_and_keeps_the_dataplane(ha: Ha) -> None:
    state = ha.state
    cluster = ha.lab.etcd()
    before = settled_flows(ha.lab, state)
    probes = start_probes(ha, 10.0)
    churn = Churn(ha.lab, state, max_ops=100, max_seconds=30).start()
    time.sleep(1.0)
    down = cluster.running()[:2]
    net = state.networks["1"]
    try:
        for i in down:
            assert ha.lab.stop_etcd(i, hard=True)
        churn.stop()
        for n in range(1, len(state.servers) + 1):
            with pytest.raises(ApiError) as refused:
                one_server(state, n, timeout=20).create_port(
                    net, "h1", f"fa:16:3e:ee:00:{n:02x}", name=f"no-quorum-{n}"
                )
            assert one_line_503(refused.value), str(refused.value)
            assert "127.0.0.1:" in str(refused.value)  # it names the endpoints
        results = probe_results(probes)
        assert [r.lost for r in results] == [0] * len(results), [r.max_gap_ms for r in results]
        now = {h.name: flows(ha.lab, h) for h in state.hosts}
        assert now == before
    finally:
        for i in down:
            ha.lab.start_etcd(i)
    assert churn.check_acknowledged(client_for(state)) == []
    client = client_for(state, timeout=10)

    def writes_again() -> bool:
        try:
            port = client.create_port(net, "h2", "fa:16:3e:ee:01:01", name="quorum-back")
        except (ApiError, FlowkeeperError):
            return False
        client.delete_port(port.id)
        return True

    wait_for(writes_again, 60, "writes to be accepted once the quorum is back")
    again = Churn(ha.lab, state, max_ops=60, max_seconds=20).start()
    time.sleep(3.0)
    again.stop()
    assert again.errors == [], again.errors[:3]
    assert again.check_acknowledged(client_for(state)) == []
    assert_converged_to_cold_reference(ha)


def test_d_every_agents_watch_history_is_whole(ha: Ha, report_line: Callable[[str], None]) -> None:
    state = ha.state
    end = wait_caught_up(state)
    store = open_store(state.store_url)
    try:
        events = store.events_since(0)
        assert store.compact_revision() < ha.start  # the log covers the whole window
    finally:
        store.close()
    assert events and events[-1].revision <= end
    summary = []
    for host in state.hosts:
        records = watch_records(host)
        checks = check_history(
            host.name, records, events, ha.start, end, restarts=ha.restarts.get(host.name, [])
        )
        problems = [p for c in checks for p in c.problems]
        assert problems == [], (host.name, problems[:5])
        servers = set().union(*(c.servers for c in checks))
        summary.append(
            f"{host.name} {sum(c.logged for c in checks)} messages "
            f"({sum(c.dups for c in checks)} repeats ignored) from {len(servers)} servers"
        )
    assert store_revision(state) >= end
    report_line(f"revisions {ha.start}..{end}: " + "; ".join(summary))
