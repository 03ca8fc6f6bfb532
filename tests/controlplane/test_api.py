"""The REST API on a real server: CRUD; bad input is refused with a 4xx and stores nothing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from flowkeeper.client import ApiError
from tests.controlplane.conftest import TOKEN, LiveServer

Answer = tuple[int, Any]


def raw(
    server: LiveServer, method: str, path: str, body: bytes | None = None, token: str | None = TOKEN
) -> Answer:
    req = urllib.request.Request(server.url + path, data=body, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def call(
    server: LiveServer, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> Answer:
    return raw(server, method, path, None if body is None else json.dumps(body).encode(), token)


def seed(server: LiveServer) -> dict[str, Any]:
    c = server.client()
    net = c.create_network("net1", "vxlan", segmentation_id=1001, cidr="198.19.1.0/24")
    p = c.create_port(net.id, "h1", "fa:16:3e:00:00:01", ["198.19.1.10"], name="vm1")
    return {"net": net.id, "port": p.id}


def test_network_crud(server: LiveServer) -> None:
    status, net = call(
        server, "POST", "/v1/networks", {"name": "net1", "type": "vxlan", "cidr": "198.19.1.0/24"}
    )
    assert status == 201 and net["segmentation_id"] == 1 and net["revision"] == 1
    status, got = call(server, "GET", f"/v1/networks/{net['id']}")
    assert (status, got) == (200, net)
    status, listing = call(server, "GET", "/v1/networks")
    assert listing == {"revision": 1, "networks": [net]}
    status, gone = call(server, "DELETE", f"/v1/networks/{net['id']}")
    assert (status, gone) == (200, {"deleted": net["id"], "revision": 2})
    status, err = call(server, "GET", f"/v1/networks/{net['id']}")
    assert status == 404 and err == {"error": f"network {net['id']!r} not found"}


def test_port_crud_status_and_filters(server: LiveServer) -> None:
    ids = seed(server)
    c = server.client()
    p2 = c.create_port(ids["net"], "h2", "FA:16:3E:00:00:02", ["198.19.1.11"], id="port-2")
    assert p2.id == "port-2" and p2.mac == "fa:16:3e:00:00:02" and p2.status == "DOWN"
    assert [p.id for p in c.list_ports(host="h2")] == ["port-2"]
    assert len(c.list_ports(network_id=ids["net"])) == 2
    assert c.set_port_status("port-2", "ACTIVE").status == "ACTIVE"
    assert c.get_port("port-2").status == "ACTIVE"
    c.delete_port("port-2")
    with pytest.raises(ApiError, match="port 'port-2' not found") as exc:
        c.get_port("port-2")
    assert exc.value.status == 404


def test_binding_a_port_to_another_host_moves_it_and_keeps_its_status(server: LiveServer) -> None:
    ids = seed(server)
    c = server.client()
    assert c.set_port_status(ids["port"], "ACTIVE").status == "ACTIVE"
    before = c.get_port(ids["port"])
    moved = c.bind_port(ids["port"], "h9")
    assert (moved.host, moved.status) == ("h9", "ACTIVE")
    assert moved.revision > before.revision
    assert [p.id for p in c.list_ports(host="h9")] == [ids["port"]]
    # Binding to where it already is writes nothing.
    assert c.bind_port(ids["port"], "h9").revision == moved.revision
    # A late report from the host it left is refused; one from its new host counts.
    status, answer = call(
        server, "PUT", f"/v1/ports/{ids['port']}/status", {"status": "DOWN", "host": "h1"}
    )
    assert status == 409 and "bound to 'h9'" in answer["error"]
    status, answer = call(
        server, "PUT", f"/v1/ports/{ids['port']}/status", {"status": "DOWN", "host": "h9"}
    )
    assert (status, answer["status"]) == (200, "DOWN")


def test_hosts_register_and_heartbeat(server: LiveServer) -> None:
    c = server.client()
    h = c.register_host("h1", "198.18.0.1", state="syncing")
    rev = c.revision()
    assert h.last_seen > 0 and rev == 1
    h2 = c.register_host("h1", "198.18.0.1", state="in-sync", revision=1)
    assert c.revision() == rev  # a heartbeat is not an event
    assert (h2.state, h2.revision) == ("in-sync", 1) and h2.last_seen >= h.last_seen
    assert [x.name for x in c.list_hosts()] == ["h1"]
    assert c.get_host("h1").state == "in-sync"
    c.register_host("h1", "198.18.0.9")
    assert c.revision() == rev + 1  # a new tunnel IP is


def test_view_fills_in_tunnel_ips(server: LiveServer) -> None:
    ids = seed(server)
    c = server.client()
    c.create_port(ids["net"], "h2", "fa:16:3e:00:00:02", ["198.19.1.11"])
    c.register_host("h2", "198.18.0.2")
    view = c.view("h1")
    assert view.revision == c.revision()
    assert [n.id for n in view.networks] == [ids["net"]]
    assert {p.host: p.tunnel_ip for p in view.ports} == {"h1": None, "h2": "198.18.0.2"}
    with pytest.raises(ApiError) as unknown:  # neither registered nor bound to: 404
        c.view("h9")
    assert unknown.value.status == 404


BAD_WRITES: list[tuple[str, str, str, Any, int, str]] = [
    # (what, method, path, body, status, message fragment)
    (
        "malformed MAC",
        "POST",
        "/v1/ports",
        {
            "network_id": "{net}",
            "host": "h2",
            "mac": "zz:16:3e:00:00:02",
            "fixed_ips": ["198.19.1.20"],
        },
        400,
        "port: mac: bad value 'zz:16:3e:00:00:02': expected a unicast",
    ),
    (
        "malformed IP",
        "POST",
        "/v1/ports",
        {
            "network_id": "{net}",
            "host": "h2",
            "mac": "fa:16:3e:00:00:02",
            "fixed_ips": ["198.19.1.300"],
        },
        400,
        "port: fixed_ips: 0: bad value '198.19.1.300'",
    ),
    (
        "IP outside cidr",
        "POST",
        "/v1/ports",
        {
            "network_id": "{net}",
            "host": "h2",
            "mac": "fa:16:3e:00:00:02",
            "fixed_ips": ["10.1.1.1"],
        },
        409,
        "IP 10.1.1.1 is outside network 'net1' cidr",
    ),
    (
        "duplicate MAC",
        "POST",
        "/v1/ports",
        {
            "network_id": "{net}",
            "host": "h2",
            "mac": "fa:16:3e:00:00:01",
            "fixed_ips": ["198.19.1.20"],
        },
        409,
        "MAC fa:16:3e:00:00:01 is already used",
    ),
    (
        "duplicate IP",
        "POST",
        "/v1/ports",
        {
            "network_id": "{net}",
            "host": "h2",
            "mac": "fa:16:3e:00:00:02",
            "fixed_ips": ["198.19.1.10"],
        },
        409,
        "IP 198.19.1.10 is already used",
    ),
    (
        "unknown network",
        "POST",
        "/v1/ports",
        {"network_id": "no-such-net", "host": "h2", "mac": "fa:16:3e:00:00:02"},
        404,
        "network 'no-such-net' not found",
    ),
    (
        "segment out of range",
        "POST",
        "/v1/networks",
        {"name": "net2", "type": "vxlan", "segmentation_id": 20000000},
        400,
        "network: segmentation_id: must be <= 16777215 for vxlan, got 20000000",
    ),
    (
        "duplicate segment",
        "POST",
        "/v1/networks",
        {"name": "net2", "type": "vxlan", "segmentation_id": 1001},
        409,
        "segmentation_id 1001 is already used",
    ),
    (
        "duplicate name",
        "POST",
        "/v1/networks",
        {"name": "net1", "type": "gre"},
        409,
        "network name 'net1' already exists",
    ),
    (
        "unknown field",
        "POST",
        "/v1/networks",
        {"name": "n2", "type": "gre", "vlan": 4},
        400,
        "network: unknown field 'vlan'",
    ),
    (
        "wrong type",
        "POST",
        "/v1/networks",
        {"name": "n2", "type": "gre", "segmentation_id": "4"},
        400,
        "network: segmentation_id: must be an integer for gre, got string '4'",
    ),
    (
        "missing field",
        "POST",
        "/v1/ports",
        {"network_id": "{net}", "host": "h2"},
        400,
        "port: missing field 'mac'",
    ),
    (
        "bad status",
        "PUT",
        "/v1/ports/{port}/status",
        {"status": "UP"},
        400,
        "port status: status: bad value 'UP': use 'DOWN' or 'ACTIVE'",
    ),
    (
        "network with ports",
        "DELETE",
        "/v1/networks/{net}",
        None,
        409,
        "network 'net1' still has 1 port(s)",
    ),
    (
        "bad binding host",
        "PUT",
        "/v1/ports/{port}/binding",
        {"host": "-x"},
        400,
        "port binding: host: bad value '-x'",
    ),
    ("binding, no host", "PUT", "/v1/ports/{port}/binding", {}, 400, "missing field 'host'"),
    ("bind unknown port", "PUT", "/v1/ports/nope/binding", {"host": "h2"}, 404, "not found"),
    (
        "bad host name",
        "PUT",
        "/v1/hosts/-x",
        {"tunnel_ip": "198.18.0.1"},
        400,
        "host: name: bad value '-x'",
    ),
    (
        "bad tunnel ip",
        "PUT",
        "/v1/hosts/h1",
        {"tunnel_ip": "198.18.0"},
        400,
        "host: tunnel_ip: bad value '198.18.0'",
    ),
    (
        "not an object",
        "POST",
        "/v1/networks",
        [1, 2],
        400,
        "network: must be a JSON object, got list",
    ),
]


@pytest.mark.parametrize("case", BAD_WRITES, ids=[c[0] for c in BAD_WRITES])
def test_bad_writes_are_refused_and_store_nothing(
    server: LiveServer, case: tuple[str, str, str, Any, int, str]
) -> None:
    _what, method, path, body, want_status, fragment = case
    ids = seed(server)
    text = json.dumps(body).replace("{net}", ids["net"]) if body is not None else None
    before = server.snapshot()
    status, answer = raw(server, method, path.format(**ids), text.encode() if text else None)
    assert status == want_status
    assert set(answer) == {"error"} and "\n" not in answer["error"]
    assert fragment in answer["error"]
    assert server.snapshot() == before


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "missing token"),
        ("wrong-token", "unknown or revoked token"),
        (TOKEN + "x", "unknown or revoked token"),
    ],
)
def test_requests_need_a_valid_token(server: LiveServer, token: str | None, message: str) -> None:
    seed(server)
    before = server.snapshot()
    for method, path, body in [
        ("POST", "/v1/networks", {"name": "n2", "type": "gre"}),
        ("PUT", "/v1/hosts/h1", {"tunnel_ip": "198.18.0.1"}),
        ("DELETE", "/v1/networks/whatever", None),
        ("PUT", "/v1/ports/whatever/binding", {"host": "h2"}),
        ("GET", "/v1/networks", None),
        ("GET", "/v1/hosts/h1/view", None),
        ("GET", "/v1/stats", None),
    ]:
        status, answer = call(server, method, path, body, token=token or None)
        assert status == 401 and answer["error"].startswith(message), answer
    assert server.snapshot() == before
    # the API's own description is public
    assert call(server, "GET", "/v1/openapi.json", token=None)[0] == 200


def test_bad_json_and_unknown_routes(server: LiveServer) -> None:
    status, answer = raw(server, "POST", "/v1/networks", b'{"name": "x",')
    assert status == 400 and answer["error"].startswith("bad JSON in request body")
    status, answer = raw(server, "POST", "/v1/networks", b"")
    assert status == 400 and "empty request body" in answer["error"]
    status, answer = call(server, "GET", "/v1/nothing")
    assert (status, answer) == (404, {"error": "no such endpoint: GET /v1/nothing"})
    status, answer = call(server, "PATCH", "/v1/networks", {})
    assert status == 405 and "not allowed" in answer["error"]
    status, answer = call(server, "GET", "/v1/ports?colour=red")
    assert status == 400 and answer["error"] == "ports: unknown query parameter 'colour'"
    assert server.client().revision() == 0


def test_openapi_describes_every_route(server: LiveServer) -> None:
    status, doc = call(server, "GET", "/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    routes = {r.resource.canonical for r in server.running.runner.app.router.routes()}  # type: ignore[union-attr]
    assert routes == set(doc["paths"])
    for path in doc["paths"].values():
        for op in ("get", "post", "put", "delete"):
            if op in path:
                assert path[op]["responses"]
