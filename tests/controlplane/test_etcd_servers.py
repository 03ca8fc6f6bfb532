"""Real servers (threads with their own loops) on a shared store: several servers on one
etcd prefix see each other's writes at once and in order; non-event writes (tokens) never
make a write wait for a revision that no event has."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkeeper.client import AsyncClient
from flowkeeper.lab.etcdcluster import EtcdCluster
from flowkeeper.model import Port, WatchEvent
from flowkeeper.server import hub as hub_module
from flowkeeper.server.app import ServerConfig
from tests.conformance.conftest import one_member_cluster
from tests.controlplane.conftest import TOKEN, ServerThread


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    yield from one_member_cluster(tmp_path_factory, "etcd-cp")


@pytest.fixture
def servers() -> Iterator[list[ServerThread]]:
    made: list[ServerThread] = []
    yield made
    for thread in made:
        thread.stop()


def serve(made: list[ServerThread], store: str) -> str:
    config = ServerConfig(listen="127.0.0.1:0", store=store, env={"FLOWKEEPER_TOKEN": TOKEN})
    thread = ServerThread(config)
    made.append(thread)
    return str(thread.running.url)


def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:{tmp_path / 'fk.db'}"
    cluster: EtcdCluster = request.getfixturevalue("etcd")
    return f"{cluster.url}/cp-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("backend", ["sqlite", "etcd"])
def test_token_writes_do_not_make_later_writes_wait(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, servers: list[ServerThread]
) -> None:
    from flowkeeper.client import Client

    c = Client(serve(servers, store_url(backend, tmp_path, request)), TOKEN)
    rev = c.revision()
    c.create_token("admin", note="not an event")
    c.create_token("host", host="h1")
    assert c.revision() == rev  # tokens are not events
    net = c.create_network("net1", "vxlan")
    c.create_port(net.id, "h1", "fa:16:3e:00:00:01")  # waits for its own event only
    view = c.view("h1")  # so does the view
    assert [p.host for p in view.ports] == ["h1"] and view.revision == c.revision() > rev


def test_a_write_acknowledged_by_one_server_is_in_the_others_watch_in_order(
    etcd: EtcdCluster, servers: list[ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No idle poll: B learns of A's writes only from its store's watch (on_change).
    monkeypatch.setattr(hub_module, "IDLE_POLL_S", 3600.0)
    url = f"{etcd.url}/two-{uuid.uuid4().hex[:12]}"
    a_url, b_url = serve(servers, url), serve(servers, url)

    from flowkeeper.client import Client

    net = Client(a_url, TOKEN).create_network("net1", "vxlan")
    first = Client(a_url, TOKEN).create_port(net.id, "h1", "fa:16:3e:00:00:01", id="p0")

    async def scenario() -> tuple[list[Port], list[WatchEvent]]:
        async with AsyncClient(a_url, TOKEN) as a, AsyncClient(b_url, TOKEN) as b:
            seen: list[WatchEvent] = []
            acked: list[Port] = []

            async def follow() -> None:
                async for msg in b.watch("h1", first.revision):
                    seen.append(msg)

            task = asyncio.create_task(follow())
            for _ in range(200):  # bounded: until B's stream is open (its first heartbeat)
                if seen:
                    break
                await asyncio.sleep(0.01)
            for i in range(1, 21):  # through A and B in turn; h1's watch is on B
                writer = a if i % 2 else b
                acked.append(
                    await writer.create_port(
                        net.id, f"h{i % 3 + 1}", f"fa:16:3e:00:01:{i:02x}", [], id=f"p{i}"
                    )
                )
            want = {p.id for p in acked}
            for _ in range(500):  # bounded: until every acknowledged port came through B
                got = {m.object.id for m in seen if isinstance(m.object, Port)}
                if want <= got:
                    break
                await asyncio.sleep(0.01)
            task.cancel()
            return acked, seen

    acked, seen = asyncio.run(asyncio.wait_for(scenario(), 60.0))  # a hang fails, not stalls
    ports = [(m.revision, m.object) for m in seen if isinstance(m.object, Port)]
    assert [p.id for _, p in ports] == [p.id for p in acked]  # all of them, in order
    assert [r for r, _ in ports] == [p.revision for p in acked]
    revs = [m.revision for m in seen]
    assert revs == sorted(revs)


@pytest.mark.parametrize("backend", ["sqlite", "etcd"])
def test_a_token_made_or_revoked_through_one_server_holds_on_every_server(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, servers: list[ServerThread]
) -> None:
    from flowkeeper.client import ApiError, Client

    url = store_url(backend, tmp_path, request)
    a_url, b_url = serve(servers, url), serve(servers, url)
    made = Client(a_url, TOKEN).create_token("host", host="h1")
    Client(a_url, TOKEN).register_host("h1", "198.18.0.1")
    b = Client(b_url, made["secret"])
    assert b.view("h1").revision >= 0  # made through A a moment ago: B re-reads on a miss

    async def watch_until_revoked() -> str:
        async with AsyncClient(b_url, made["secret"]) as client:
            stream = client.watch("h1", 0, idle_timeout=30.0)
            await stream.__anext__()  # B's stream is open (its first message)
            Client(a_url, TOKEN).revoke_token(made["id"])  # through the OTHER server
            try:
                async for _msg in stream:  # bounded by idle_timeout: B must end it
                    pass
            except Exception as exc:  # the stream's end is what we check
                return type(exc).__name__
            return "ended"

    assert asyncio.run(asyncio.wait_for(watch_until_revoked(), 20.0)) in (
        "ended",
        "ServerUnavailable",
    )
    with pytest.raises(ApiError) as refused:
        b.view("h1")
    assert refused.value.status == 401


def test_known_tokens_never_wait_for_a_token_re_read(
    tmp_path: Path, servers: list[ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowkeeper.client import ApiError, Client
    from flowkeeper.server import tokensync

    monkeypatch.setattr(tokensync, "REFRESH_S", 3600.0)  # no periodic re-read here
    serve(servers, f"sqlite:{tmp_path / 'fk.db'}")
    thread = servers[0]
    store = thread.running.state.db.store
    reads: list[int] = []
    real = store.list_tokens

    def counted() -> list[Any]:
        reads.append(1)
        return list(real())

    store.list_tokens = counted
    admin = Client(thread.running.url, TOKEN)
    made = admin.create_token("host", host="h1")
    admin.register_host("h1", "198.18.0.1")
    reads.clear()
    host = Client(thread.running.url, made["secret"])
    for _ in range(40):  # the bootstrap token and a held token: no re-read per request
        admin.list_networks()
        host.view("h1")
    assert reads == []
    with pytest.raises(ApiError):
        Client(thread.running.url, "fk_tk0123456789ab_unknown").view("h1")
    assert reads == [1]  # a token id it does not hold: one re-read, then 401
