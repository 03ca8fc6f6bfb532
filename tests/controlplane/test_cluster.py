"""The server says which store it serves: a header on every response and in /v1/stats."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

from flowkeeper.client import AsyncClient
from flowkeeper.model import CLUSTER_HEADER
from tests.controlplane.conftest import TOKEN, LiveServer, ServerFactory


def header(server: LiveServer, path: str) -> str | None:
    try:
        with urllib.request.urlopen(server.url + path, timeout=10) as resp:
            return str(resp.headers.get(CLUSTER_HEADER))
    except urllib.error.HTTPError as exc:
        return str(exc.headers.get(CLUSTER_HEADER))


def test_every_response_names_the_store(server: LiveServer) -> None:
    cid = server.client().stats()["cluster_id"]
    assert cid
    assert header(server, "/v1/networks") == cid
    assert header(server, "/v1/no-such-thing") == cid  # errors too
    assert header(server, "/v1/ports/nope") == cid


def test_two_servers_on_two_stores_have_two_ids(server_factory: ServerFactory) -> None:
    a = server_factory(name="a")
    b = server_factory(name="b")
    ida, idb = a.client().stats()["cluster_id"], b.client().stats()["cluster_id"]
    assert ida != idb
    a.client().create_network("n", "vxlan")  # writes do not change it
    assert a.client().stats()["cluster_id"] == ida


def test_the_async_client_sees_the_id_on_view_and_watch(server: LiveServer) -> None:
    cid = server.client().stats()["cluster_id"]

    async def go() -> tuple[str | None, str | None]:
        async with AsyncClient(server.url, TOKEN) as client:
            await client.register_host("h1", "198.18.0.1")
            client.cluster_id = None
            await client.view("h1")
            on_view = client.cluster_id
            client.cluster_id = None
            async for _event in client.watch("h1", 0):
                break  # the catch-up heartbeat: the headers are in
            return on_view, client.cluster_id

    assert asyncio.run(go()) == (cid, cid)
