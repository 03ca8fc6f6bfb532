"""Several real `flowkeeper server` processes on one SQLite file, and clients that fail
over between them: the agent's follower resumes its watch on another server when its
server is kill -9'd, without a re-list, and every event reaches it exactly once."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flowkeeper.agent.follow import ServerFollower
from flowkeeper.agent.mirror import Mirror
from flowkeeper.agent.persist import Persistence
from flowkeeper.agent.watchlog import WatchLog
from flowkeeper.client import AsyncClient, Client, MaybeApplied, ServerUnavailable
from flowkeeper.model import WatchEvent
from tests.controlplane.test_server_process import Proc

SUBNET = "198.19.7"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Proc]]:
    """Three servers sharing one SQLite file (each hub polls the event log)."""
    db = tmp_path / "state" / "fk.db"
    made: list[Proc] = []
    try:
        for _ in range(3):
            made.append(Proc(db))
        yield made
    finally:
        for proc in made:
            if proc.p.poll() is None:
                proc.p.kill()
                proc.p.wait()


def token_of(servers: list[Proc]) -> str:
    """The admin token the first server generated next to the database (all share it)."""
    line = next(x for x in servers[0].lines if "admin token from" in x)
    path = line.split("admin token from ", 1)[1].split(" ", 1)[0].strip()
    return Path(path).read_text().strip()


def wait_for(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


# --- the agent's follower, without OVS ------------------------------------------------


@dataclass
class Cfg:
    host: str = "h1"
    tunnel_ip: str = "198.18.0.1"
    l2pop: bool = True


@dataclass
class Status:
    state: str = "starting"
    applied_revision: int = 0
    reported: dict[str, str] = field(default_factory=dict)


class Follower(ServerFollower):
    """The agent's real list+watch code (ServerFollower), run in a thread of its own."""

    def __init__(self, urls: list[str], token: str, state: Path, watch_log: Path) -> None:
        self.cfg = Cfg()  # type: ignore[assignment]
        self.urls, self.token = urls, token
        self.mirror = Mirror()
        self.persist = Persistence(state)
        self.status = Status()  # type: ignore[assignment]
        self.in_sync = False
        self.cluster_id = ""
        self.failures = 0
        self.log_file = WatchLog(watch_log)
        self.watch_log = self.log_file
        self.watched = ""
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.lock = threading.Lock()

    def start(self) -> None:
        self.thread.start()

        async def setup() -> None:
            self.wake = asyncio.Event()
            self.stop = asyncio.Event()
            self.client = AsyncClient(self.urls, self.token, timeout=10)
            self.task = asyncio.ensure_future(self._control_plane(True))

        asyncio.run_coroutine_threadsafe(setup(), self.loop).result(timeout=10)

    def read(self, fn: Callable[[Follower], Any]) -> Any:
        async def get() -> Any:
            return fn(self)

        return asyncio.run_coroutine_threadsafe(get(), self.loop).result(timeout=10)

    def close(self) -> None:
        async def down() -> None:
            self.stop.set()
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            await self.client.close()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.log_file.close()


def catch_up(url: str, token: str, host: str, after: int) -> list[WatchEvent]:
    """A fresh watch's catch-up from `after` up to its first heartbeat."""

    async def go() -> list[WatchEvent]:
        out: list[WatchEvent] = []
        async with AsyncClient(url, token, timeout=10) as ac:
            async for e in ac.watch(host, after):
                if e.kind == "heartbeat":
                    return out
                out.append(e)
        return out

    return asyncio.run(go())


def key(e: WatchEvent | dict[str, Any]) -> tuple[int, str, str, str]:
    if isinstance(e, dict):
        return (e["revision"], e["kind"], e["op"], e["id"])
    assert e.object is not None
    return (e.revision, e.kind, e.op, e.object.id)


def test_the_follower_fails_over_and_resumes_without_a_relist(
    servers: list[Proc], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    token = token_of(servers)
    urls = [s.url for s in servers]
    admin = Client(urls, token)
    net = admin.create_network("net1", "vxlan", segmentation_id=1001, cidr=f"{SUBNET}.0/24")
    admin.register_host("h2", "198.18.0.2")
    admin.create_port(net.id, "h1", "fa:16:3e:00:01:01", [f"{SUBNET}.11"])
    wlog = tmp_path / "watch.ndjson"
    follower = Follower(urls, token, tmp_path / "agent", wlog)
    follower.start()
    try:
        wait_for(lambda: follower.read(lambda f: f.in_sync), "the first list")
        listed_at = follower.read(lambda f: f.mirror.revision)
        assert follower.read(lambda f: f.client.base_url) == urls[0]
        # Writes through another server reach the follower's stream on the first one.
        other = Client(urls[1], token)
        for i in range(3):
            other.create_port(net.id, "h2", f"fa:16:3e:00:02:{i:02x}", [f"{SUBNET}.{20 + i}"])
        head = other.revision()
        wait_for(lambda: follower.read(lambda f: f.mirror.revision) >= head, "live events")
        before = follower.read(lambda f: f.mirror.resume_from())

        servers[0].p.kill()  # kill -9 of the server the follower watches
        servers[0].p.wait(timeout=10)
        rest = Client(urls[1:], token)
        made = []
        for i in range(8):
            port = rest.create_port(net.id, "h2", f"fa:16:3e:00:03:{i:02x}", [f"{SUBNET}.{40 + i}"])
            made.append(port.id)
        rest.delete_port(made[0])
        rest.set_port_status(made[1], "ACTIVE")
        # A revision whose events come as several messages: h1 joins a network that
        # already has ports (the network and each of its ports at that one revision).
        net2 = rest.create_network("net2", "vxlan", segmentation_id=1002)
        for i in range(3):
            rest.create_port(net2.id, "h2", f"fa:16:3e:00:04:{i:02x}")
        joined = rest.create_port(net2.id, "h1", "fa:16:3e:00:04:10")
        head = rest.revision()
        wait_for(lambda: follower.read(lambda f: f.mirror.revision) >= head, "every write")
        mirror = follower.read(lambda f: f.mirror.copy())
        now_on = follower.read(lambda f: f.client.base_url)
        lists = follower.read(lambda f: f.persist.list_epoch)
    finally:
        follower.close()

    # It failed over, said so in one line naming both servers, and did not list again.
    assert now_on in urls[1:]
    moves = [r.getMessage() for r in caplog.records if "failing over to" in r.getMessage()]
    assert any(urls[0] in m and now_on in m for m in moves), moves
    assert lists == 1, "the follower listed its view again"
    resumed = [r.getMessage() for r in caplog.records if "resuming the watch" in r.getMessage()]
    assert resumed, "no resumed watch"
    resumed_from = int(resumed[-1].rsplit(" ", 1)[1])
    assert resumed_from >= before  # from its own revision, not from scratch

    # The final mirror equals a fresh list.
    view = Client(urls[1], token).view("h1")
    assert mirror.revision == view.revision
    assert {n.id: n for n in view.networks} == mirror.networks
    assert {p.id: p.to_dict() for p in view.ports} == {
        p.id: p.to_dict() for p in mirror.ports.values()
    }
    assert joined.id in mirror.ports and net2.id in mirror.networks

    # Every event exactly once, in revision order: what the watch log says was applied
    # equals a fresh catch-up of the whole history since the list.
    lines = [json.loads(x) for x in wlog.read_text().splitlines()]
    assert lines[0]["kind"] == "list" and lines[0]["revision"] == listed_at
    kinds = ("network", "port", "security_group", "member")
    applied = [x for x in lines if x["kind"] in kinds and not x.get("dup")]
    assert len({key(x) for x in applied}) == len(applied), "an event applied twice"
    revs = [x["revision"] for x in applied]
    assert revs == sorted(revs)
    reference = catch_up(urls[2], token, "h1", listed_at)
    assert [key(x) for x in applied] == [key(e) for e in reference]
    assert revs.count(joined.revision) > 1  # that revision came as several messages
    seen = [x["server"] for x in lines]
    last_old = max(i for i, u in enumerate(seen) if u == urls[0])
    assert seen[last_old + 1 :] and set(seen[last_old + 1 :]) == {now_on}
    assert wlog.stat().st_mode & 0o777 == 0o600


# --- the CLI client: reads fail over, writes are not repeated blindly --------------------


class Cut(threading.Thread):
    """A real TCP hop on 127.0.0.1 that breaks each connection after the request: with
    `upstream`, it first forwards the request and waits for the answer to begin (the
    server applied it), then closes without passing the answer on; without, it reads the
    request and closes (nothing reached a server)."""

    def __init__(self, upstream: str | None = None) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.upstream = upstream
        self.done = threading.Event()
        self.requests = 0

    def run(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                request = _read_request(conn)
                self.requests += 1
                if self.upstream is not None and request:
                    host, port = self.upstream.removeprefix("http://").split(":")
                    with socket.create_connection((host, int(port)), timeout=5) as up:
                        up.sendall(request)
                        up.recv(1)  # the answer begins: the server has done it

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=5)
        self.sock.close()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    for _ in range(100):  # bounded: a request is one small head and body
        if b"\r\n\r\n" in data:
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(body) >= length:
                return data
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data


@pytest.fixture
def cut() -> Iterator[Callable[[str | None], Cut]]:
    made: list[Cut] = []

    def make(upstream: str | None = None) -> Cut:
        c = Cut(upstream)
        c.start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def dead_url() -> str:
    """A 127.0.0.1 port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_reads_and_writes_go_to_the_next_server_when_one_is_down(
    servers: list[Proc],
) -> None:
    token = token_of(servers)
    c = Client([dead_url(), servers[1].url], token)
    net = c.create_network("n1", "vxlan")  # refused: surely not sent, so sent again
    assert c.base_url == servers[1].url
    assert [n.id for n in Client(servers[2].url, token).list_networks()] == [net.id]


def test_every_server_down_is_one_line_naming_them_all() -> None:
    urls = [dead_url(), dead_url()]
    with pytest.raises(ServerUnavailable) as exc:
        Client(urls, "t").list_networks()
    message = str(exc.value)
    assert "\n" not in message and "cannot reach the server" in message
    assert all(u in message for u in urls)


def test_a_create_whose_answer_was_lost_is_found_not_repeated(
    servers: list[Proc], cut: Callable[[str | None], Cut]
) -> None:
    token = token_of(servers)
    net = Client(servers[1].url, token).create_network("n1", "vxlan")
    hop = cut(servers[1].url)  # forwards the create, loses the answer
    c = Client([hop.url, servers[2].url], token)
    port = c.create_port(net.id, "h1", "fa:16:3e:00:00:01", name="vm1")
    assert hop.requests == 1
    ports = Client(servers[2].url, token).list_ports()
    assert [p.id for p in ports] == [port.id]  # applied once, not twice
    net2 = Client([cut(servers[1].url).url, servers[2].url], token).create_network("n2", "gre")
    assert [n.name for n in Client(servers[1].url, token).list_networks()] == ["n1", "n2"]
    assert net2.type == "gre"


def test_a_create_that_never_arrived_is_sent_again(
    servers: list[Proc], cut: Callable[[str | None], Cut]
) -> None:
    token = token_of(servers)
    net = Client(servers[1].url, token).create_network("n1", "vxlan")
    hop = cut(None)  # reads the request, drops it
    port = Client([hop.url, servers[2].url], token).create_port(net.id, "h1", "fa:16:3e:00:00:02")
    assert hop.requests == 1
    assert [p.id for p in Client(servers[1].url, token).list_ports()] == [port.id]


def test_a_delete_whose_answer_was_lost_is_reported_not_repeated(
    servers: list[Proc], cut: Callable[[str | None], Cut]
) -> None:
    token = token_of(servers)
    plain = Client(servers[1].url, token)
    net = plain.create_network("n1", "vxlan")
    port = plain.create_port(net.id, "h1", "fa:16:3e:00:00:03")
    hop = cut(servers[1].url)
    c = Client([hop.url, servers[2].url], token)
    with pytest.raises(MaybeApplied, match=r"DELETE /v1/ports/\S+ may have been applied") as exc:
        c.delete_port(port.id)
    assert "\n" not in str(exc.value)
    assert hop.requests == 1 and plain.list_ports() == []
    assert c.base_url == servers[2].url  # the next call goes to the other server
    # An idempotent write is simply sent again: the status is set once it is there.
    port = plain.create_port(net.id, "h1", "fa:16:3e:00:00:04")
    again = Client([cut(servers[1].url).url, servers[2].url], token)
    assert again.set_port_status(port.id, "ACTIVE").status == "ACTIVE"


def test_the_agent_client_moves_with_its_watch(servers: list[Proc]) -> None:
    """A broken watch moves the client on, so the heartbeat goes to the new server."""
    token = token_of(servers)

    async def go() -> tuple[str, str]:
        async with AsyncClient([servers[0].url, servers[1].url], token, timeout=10) as ac:
            await ac.register_host("h1", "198.18.0.1")
            try:
                async for e in ac.watch("h1", 0):
                    if e.kind == "heartbeat":
                        servers[0].p.kill()
            except ServerUnavailable:
                pass
            host = await ac.register_host("h1", "198.18.0.1", state="in-sync")
            return ac.base_url, host.state

    url, state = asyncio.run(go())
    assert url == servers[1].url and state == "in-sync"


# --- the commands ---------------------------------------------------------------------


def test_cli_commands_take_a_server_list(
    servers: list[Proc], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowkeeper.cli.main import main

    monkeypatch.setenv("FLOWKEEPER_TOKEN", token_of(servers))
    listed = f"{dead_url()},{servers[1].url}"
    assert main(["network", "create", "n1", "--server", listed]) == 0
    monkeypatch.setenv("FLOWKEEPER_SERVER", f"{dead_url()},{servers[2].url}")
    assert main(["network", "list", "--json"]) == 0
    out = capsys.readouterr().out
    assert [n["name"] for n in json.loads(out[out.index("[") :])] == ["n1"]
    for bad, message in (
        (f"{servers[1].url},,", "empty server URL"),
        (f"{servers[1].url},ftp://x", "bad server URL 'ftp://x'"),
        (f"{servers[1].url},{servers[1].url}", "is given twice"),
    ):
        assert main(["network", "list", "--server", bad]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["agent", "--host", "h1", "--tunnel-ip", "198.18.0.1", "--server", "x,y"]) == 2
    assert "bad server URL 'x'" in capsys.readouterr().err
