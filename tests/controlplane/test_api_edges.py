"""The API's edges on a real server: junk in any query or path is a one-line 4xx; a bounded
watch; watchers per host limited; a paged catch-up while writes go on; 405 with Allow."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from pydantic import TypeAdapter

from flowkeeper.client import AsyncClient, Event
from flowkeeper.server import hub as hub_module
from flowkeeper.server.openapi import openapi_document
from flowkeeper.server.policy import is_public
from flowkeeper.server.responses import WatchMessage
from tests.controlplane.conftest import TOKEN, LiveServer, ServerFactory
from tests.unit.cpfake import Replay, normal

VALID = {"id": "x1", "name": "h1", "rule_id": "r1"}
JUNK_QUERIES = [
    "from=%C2%B2",  # '²'.isdigit() is True
    "from=-1",
    "from=1.5",
    "from=99999999999999999999999",
    "from=0&from=1",
    "from=0&timeout=nan",
    "from=0&timeout=-1",
    "from=0&timeout=1e999",
    "from=0&colour=red",  # an unknown parameter beside a valid one
    "colour=red",
    "from=0&%FF=1",
    "network_id=%00",
    "host=a%2Fb",
]
JUNK_PATHS = ["-x", "%C2%B2", "a%00b", "x" * 70, "%FF"]


def get(server: LiveServer, path: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def assert_one_line_error(status: int, body: bytes, what: str) -> None:
    assert 400 <= status < 500, (what, status, body)
    answer = json.loads(body)
    assert set(answer) == {"error"} and answer["error"], (what, answer)
    assert "\n" not in answer["error"], what


def get_paths() -> list[str]:
    return [p for p, ops in openapi_document()["paths"].items() if "get" in ops]


def test_junk_in_any_query_string_is_a_one_line_4xx(server: LiveServer) -> None:
    before = server.snapshot()
    for template in get_paths():
        path = template.format(**VALID)
        for query in JUNK_QUERIES:
            status, _headers, body = get(server, f"{path}?{query}")
            if status == 200:  # a query this endpoint declares, with a value it accepts
                assert template == "/v1/ports" and query.startswith(("network_id", "host"))
                continue
            assert_one_line_error(status, body, f"{path}?{query}")
    assert server.snapshot() == before


def test_junk_in_any_path_parameter_is_a_one_line_4xx(server: LiveServer) -> None:
    for template in get_paths():
        if "{" not in template:
            continue
        for junk in JUNK_PATHS:
            path = template.replace("{id}", junk).replace("{name}", junk)
            status, _headers, body = get(server, path + "?from=0&timeout=0")
            assert_one_line_error(status, body, path)


def test_a_watch_with_a_timeout_ends_and_every_line_is_a_watch_message(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(heartbeat_s=0.05)
    c = server.client()
    net = c.create_network("net1", "vxlan", cidr="198.19.1.0/24")
    c.create_port(net.id, "h1", "fa:16:3e:00:00:01", ["198.19.1.10"])
    status, headers, body = get(server, "/v1/hosts/h1/watch?from=0&timeout=0.3")
    assert status == 200 and headers["Content-Type"] == "application/x-ndjson"
    check = TypeAdapter(WatchMessage)
    messages = [check.validate_python(json.loads(line)) for line in body.decode().splitlines()]
    kinds = [m.kind for m in messages]
    assert kinds[:2] == ["network", "port"] and kinds[-1] == "heartbeat"
    assert kinds.count("heartbeat") >= 2  # after the catch-up, while idle, and the last one
    status, _headers, body = get(server, "/v1/hosts/h1/watch?from=0&timeout=0")
    assert status == 200 and [json.loads(x)["kind"] for x in body.splitlines()][-1] == "heartbeat"


def test_watchers_per_host_are_limited(server_factory: ServerFactory) -> None:
    server = server_factory(heartbeat_s=0.05, max_watchers_per_host=2)
    for i in (1, 2):  # agents register their host before they watch
        server.client().register_host(f"h{i}", f"198.18.0.{i}")

    async def scenario() -> tuple[int, Any, int]:
        async with AsyncClient(server.url, TOKEN) as ac:
            opened = asyncio.Event()
            seen = [0, 0]  # messages per stream: both must be open before the third

            async def hold(i: int) -> None:
                async for _event in ac.watch("h1", 0):
                    seen[i] += 1
                    if all(seen):
                        opened.set()

            tasks = [asyncio.create_task(hold(i)) for i in range(2)]
            await asyncio.wait_for(opened.wait(), 10)
            loop = asyncio.get_running_loop()
            # timeout=5: were it wrongly accepted, the stream ends and the test fails.
            third = await loop.run_in_executor(
                None, get, server, "/v1/hosts/h1/watch?from=0&timeout=5"
            )
            other = await loop.run_in_executor(
                None, get, server, "/v1/hosts/h2/watch?from=0&timeout=0"
            )
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return third[0], json.loads(third[2]), other[0]

    status, answer, other = asyncio.run(scenario())
    assert status == 429 and answer == {
        "error": "host 'h1' already has 2 watch streams (the most this server allows per host)"
    }
    assert other == 200


def test_a_paged_catch_up_while_writes_go_on_loses_nothing(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "PAGE", 3)  # many pages, many chances to interleave
    c = server.client()
    nets = [c.create_network(f"net{i}", "vxlan", cidr=f"198.19.{i}.0/24") for i in range(3)]
    for i in range(30):
        net = nets[i % 3]
        c.create_port(net.id, f"h{i % 4}", f"fa:16:3e:00:01:{i:02x}", [f"198.19.{i % 3}.{i + 10}"])
    start = c.view("h1")
    for i in range(30, 60):  # h1 joins and leaves networks while it is away
        p = c.create_port(nets[i % 3].id, f"h{i % 4}", f"fa:16:3e:00:01:{i:02x}")
        if i % 5 == 0:
            c.delete_port(p.id)
    done = threading.Event()

    def writer() -> None:  # more writes while the catch-up runs
        w = server.client()
        for i in range(60, 120):
            p = w.create_port(nets[i % 3].id, f"h{i % 4}", f"fa:16:3e:00:01:{i:02x}")
            if i % 3 == 0:
                w.delete_port(p.id)
        done.set()

    async def watch() -> list[Event]:
        out: list[Event] = []
        async with AsyncClient(server.url, TOKEN) as ac:
            thread = threading.Thread(target=writer)
            thread.start()
            async for event in ac.watch("h1", start.revision):
                if event.kind == "heartbeat" and done.is_set():
                    if event.revision >= c.revision():
                        break
                elif event.kind != "heartbeat":
                    out.append(event)
            thread.join(timeout=30)
        return out

    messages = asyncio.run(watch())
    replay = Replay(start)
    replay.apply(messages)
    head = c.view("h1")
    assert replay.as_view(head.revision) == normal(head)


def test_a_405_names_the_allowed_methods(server: LiveServer) -> None:
    req = urllib.request.Request(
        server.url + "/v1/networks", method="PATCH", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 405
    assert set(exc.value.headers["Allow"].split(",")) >= {"GET", "POST"}
    assert json.loads(exc.value.read()) == {"error": "method PATCH not allowed on /v1/networks"}


def test_every_operation_declares_bearer_security_and_its_errors() -> None:
    doc = openapi_document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            want: list[dict[str, list[str]]] = (
                [] if is_public(method.upper(), path) else [{"bearer": []}]
            )
            assert op["security"] == want, (method, path)
            assert {"400", "401", "403"} <= set(op["responses"]), (method, path)
    assert [p for p, ops in doc["paths"].items() if not ops.get("get", {}).get("security", 1)] == [
        "/v1/openapi.json"
    ]
    net = doc["components"]["schemas"]["VxlanNetworkCreate"]["properties"]["segmentation_id"]
    assert {"maximum": 16777215, "minimum": 1, "type": "integer"} in net["anyOf"]
    assert doc["components"]["schemas"]["PortCreate"]["additionalProperties"] is False
