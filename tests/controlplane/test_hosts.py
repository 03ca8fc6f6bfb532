"""Host lifecycle on a real server: delete (admin only, refused while ports are bound),
what watchers of other hosts see, and liveness from heartbeats, in the API and the CLI."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowkeeper.cli.main import main
from flowkeeper.client import ApiError, AsyncClient, Client, Event
from flowkeeper.model import Network, Port
from tests.controlplane.conftest import TOKEN, LiveServer, ServerFactory
from tests.unit.cpfake import Replay, normal

Capture = pytest.CaptureFixture[str]


def refused(call: Callable[[], object], status: int) -> str:
    with pytest.raises(ApiError) as exc:
        call()
    assert exc.value.status == status, exc.value
    assert "\n" not in exc.value.message
    return exc.value.message


def two_hosts_on_one_network(c: Client) -> Network:
    """h1 and h2 registered, each with an ACTIVE port (p1, p2) on net1."""
    c.register_host("h1", "198.18.0.1", state="in-sync")
    c.register_host("h2", "198.18.0.2", state="in-sync")
    net = c.create_network("net1", "vxlan", cidr="198.19.1.0/24")
    for i in (1, 2):
        c.create_port(net.id, f"h{i}", f"fa:16:3e:00:00:0{i}", [f"198.19.1.{i}"], id=f"p{i}")
        c.set_port_status(f"p{i}", "ACTIVE")
    return net


def record(c: Client, name: str) -> dict[str, Any]:
    data: dict[str, Any] = c.request("GET", f"/v1/hosts/{name}")
    return data


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_host_with_bound_ports_is_not_deleted(server: LiveServer) -> None:
    c = server.client()
    two_hosts_on_one_network(c)
    before = server.snapshot()
    message = refused(lambda: c.delete_host("h1"), 409)
    assert message == "host 'h1' still has 1 bound port(s); delete or move them first"
    assert server.snapshot() == before
    assert refused(lambda: c.delete_host("nope"), 404) == "host 'nope' not found"
    assert server.snapshot() == before


def test_a_host_token_or_a_read_only_token_cannot_delete_hosts(server: LiveServer) -> None:
    admin = server.client()
    two_hosts_on_one_network(admin)
    admin.delete_port("p2")
    h2 = server.client(admin.create_token("host", "h2")["secret"])
    reader = server.client(admin.create_token("read-only")["secret"])
    before = server.snapshot()
    own = refused(lambda: h2.delete_host("h2"), 403)  # not even its own
    assert own.startswith("host token tk") and "may not DELETE /v1/hosts/{name}" in own
    assert "may not DELETE /v1/hosts/{name}" in refused(lambda: h2.delete_host("h1"), 403)
    assert "may only read" in refused(lambda: reader.delete_host("h2"), 403)
    assert server.snapshot() == before
    admin.delete_host("h2")
    assert [h.name for h in admin.list_hosts()] == ["h1"]


async def follow(ac: AsyncClient, host: str, rev: int, got: list[Event]) -> None:
    async for event in ac.watch(host, rev):
        got.append(event)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


Message = tuple[int, str, str, str, str | None]


def messages(events: list[Event]) -> list[Message]:
    out: list[Message] = []
    for e in events:
        if isinstance(e.object, Port):
            out.append((e.revision, e.kind, e.op, e.object.id, e.object.tunnel_ip))
        elif isinstance(e.object, Network):
            out.append((e.revision, e.kind, e.op, e.object.id, None))
    return out


def test_a_host_delete_reaches_a_watcher_of_another_host_live_and_in_its_catch_up(
    server_factory: ServerFactory,
) -> None:
    """h1 watches while h2's port goes, h2 is deleted, then registers again with another
    tunnel IP and gets a new port. A second watcher of h1 that starts from the same revision
    after all that (the catch-up rewinds through the delete) gets the same messages."""
    server = server_factory(heartbeat_s=0.1)
    c = server.client()
    net = two_hosts_on_one_network(c)
    start = c.revision()
    view = c.view("h1")

    async def scenario() -> tuple[list[Event], list[Event], int, int]:
        live: list[Event] = []
        later: list[Event] = []
        async with AsyncClient(server.url, TOKEN) as ac:
            task = asyncio.create_task(follow(ac, "h1", start, live))
            await until(lambda: bool(live))  # subscribed: the catch-up's heartbeat
            await ac.request("DELETE", "/v1/ports/p2")
            deleted = (await ac.request("DELETE", "/v1/hosts/h2"))["revision"]
            await until(lambda: any(e.kind == "heartbeat" and e.revision >= deleted for e in live))
            await ac.register_host("h2", "198.18.0.22", state="in-sync")
            await ac.create_port(net.id, "h2", "fa:16:3e:00:00:03", ["198.19.1.3"], id="p3")
            head = c.revision()
            await until(lambda: any(e.revision >= head for e in live))
            second = asyncio.create_task(follow(ac, "h1", start, later))
            await until(lambda: any(e.kind == "heartbeat" and e.revision >= head for e in later))
            for t in (task, second):
                t.cancel()
            await asyncio.gather(task, second, return_exceptions=True)
        return live, later, deleted, head

    live, later, deleted, head = asyncio.run(scenario())
    got = messages(live)
    assert [m[1:] for m in got] == [
        ("port", "delete", "p2", "198.18.0.2"),
        ("port", "put", "p3", "198.18.0.22"),
    ]
    assert got[0][0] < deleted < got[1][0]  # the delete itself: no message, the stream moves on
    assert messages(later) == got
    replay = Replay(view)
    replay.apply([e for e in live if e.kind != "heartbeat"])
    assert replay.as_view(head) == normal(c.view("h1"))


def test_liveness_goes_from_alive_to_gone_when_heartbeats_stop_and_fdb_entries_stay(
    server_factory: ServerFactory,
) -> None:
    ttl = 5.0  # generous: h1 must still be alive when first read, on a loaded machine
    server = server_factory(liveness_ttl_s=ttl)
    c = server.client()
    two_hosts_on_one_network(c)
    first = record(c, "h1")
    assert first["alive"] is True and first["since"] == first["last_seen"]
    rev = c.revision()

    def gone() -> bool:
        c.register_host("h2", "198.18.0.2", state="in-sync")  # h2 keeps beating
        return record(c, "h1")["alive"] is False

    wait_until(gone, "h1 to be gone")
    h1 = record(c, "h1")
    assert h1["since"] == pytest.approx(h1["last_seen"] + ttl)  # gone when the TTL ran out
    assert h1["state"] == "in-sync" and h1["tunnel_ip"] == "198.18.0.1"  # still registered
    listed = {h["name"]: h for h in c.request("GET", "/v1/hosts")["hosts"]}
    assert listed["h1"]["alive"] is False and listed["h2"]["alive"] is True
    # A gone host's VMs may still run: its peers keep its FDB entries.
    [p1] = [p for p in c.view("h2").ports if p.id == "p1"]
    assert (p1.status, p1.tunnel_ip) == ("ACTIVE", "198.18.0.1")
    assert c.revision() == rev  # going is no event: no watcher was woken
    c.register_host("h1", "198.18.0.1", state="in-sync")
    back = record(c, "h1")
    assert back["alive"] is True and back["since"] == back["last_seen"] > h1["since"]
    assert c.revision() == rev


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_host_list_shows_alive_or_gone_since_and_host_delete(
    server_factory: ServerFactory, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = server_factory(liveness_ttl_s=2.0)  # h2 must be alive at the list
    monkeypatch.setenv("FLOWKEEPER_SERVER", server.url)
    monkeypatch.setenv("FLOWKEEPER_TOKEN", TOKEN)
    c = server.client()
    two_hosts_on_one_network(c)
    wait_until(lambda: record(c, "h1")["alive"] is False, "h1 to be gone")
    c.register_host("h2", "198.18.0.2", state="in-sync")
    code, out, _ = run(capsys, "host", "list")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert lines["NAME"].split()[:4] == ["NAME", "TUNNEL", "IP", "LIVENESS"]
    assert " alive " in lines["h2"]
    assert " gone since 20" in lines["h1"] and "s ago)" in lines["h1"]
    code, out, err = run(capsys, "host", "delete", "h1")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "host 'h1' still has 1 bound port(s); delete or move them first (HTTP 409)" in err
    c.delete_port("p1")
    code, out, _ = run(capsys, "host", "delete", "h1")
    assert code == 0 and out.startswith("deleted host h1 (revision ")
    code, out, _ = run(capsys, "host", "list", "--json")
    assert [h["name"] for h in json.loads(out)] == ["h2"]
    code, _, err = run(capsys, "host", "delete", "bad name")
    assert code == 2 and "bad host name" in err


def test_a_bad_liveness_ttl_is_refused_before_the_server_starts(
    capsys: Capture, tmp_path: Path
) -> None:
    store = f"sqlite:{tmp_path / 'db' / 'fk.db'}"
    for bad in ("0", "nan", "5000"):
        code, _, err = run(capsys, "server", "--liveness-ttl", bad, "--store", store)
        assert code == 2 and "--liveness-ttl must be between 0.1 and 3600 seconds" in err
    assert not (tmp_path / "db").exists()
