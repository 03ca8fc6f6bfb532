"""REST handlers for networks, ports, hosts and stats under /v1 (JSON in, JSON out)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web

from flowkeeper.server.openapi import openapi_document
from flowkeeper.server.requests import (
    check_query,
    parse_host_put,
    parse_json,
    parse_network_create,
    parse_port_binding,
    parse_port_create,
    parse_port_status,
)
from flowkeeper.server.state import STATE, ServerState, principal
from flowkeeper.validation import check_name

routes = web.RouteTableDef()


def _st(request: web.Request) -> ServerState:
    return request.app[STATE]


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


async def _body(request: web.Request) -> Any:
    return parse_json(await request.read())


# --- networks -----------------------------------------------------------------
@routes.get("/v1/networks")
async def list_networks(request: web.Request) -> web.Response:
    check_query(request.query, ())
    st = _st(request)
    nets, rev = await st.db.run(st.db.store.list_networks)
    return ok({"revision": rev, "networks": [n.to_dict() for n in nets]})


@routes.post("/v1/networks")
async def create_network(request: web.Request) -> web.Response:
    st = _st(request)
    spec = parse_network_create(await _body(request))
    net = await st.db.run(
        st.db.store.create_network, spec.name, spec.type, spec.segmentation_id, spec.cidr, spec.id
    )
    await st.hub.sync()
    return ok(net.to_dict(), 201)


@routes.get("/v1/networks/{id}")
async def get_network(request: web.Request) -> web.Response:
    st = _st(request)
    net = await st.db.run(st.db.store.get_network, request.match_info["id"])
    return ok(net.to_dict())


@routes.delete("/v1/networks/{id}")
async def delete_network(request: web.Request) -> web.Response:
    st = _st(request)
    net = await st.db.run(st.db.store.delete_network, request.match_info["id"])
    revision = await st.hub.sync()
    return ok({"deleted": net.id, "revision": revision})


# --- ports ----------------------------------------------------------------------
@routes.get("/v1/ports")
async def list_ports(request: web.Request) -> web.Response:
    check_query(request.query, ("network_id", "host"))
    st = _st(request)
    ports, rev = await st.db.run(
        st.db.store.list_ports, request.query.get("network_id"), request.query.get("host")
    )
    return ok({"revision": rev, "ports": [p.to_dict() for p in ports]})


@routes.post("/v1/ports")
async def create_port(request: web.Request) -> web.Response:
    st = _st(request)
    port = parse_port_create(await _body(request), str(uuid.uuid4()))
    stored = await st.db.run(st.db.store.create_port, port)
    await st.hub.sync()
    return ok(stored.to_dict(), 201)


@routes.get("/v1/ports/{id}")
async def get_port(request: web.Request) -> web.Response:
    st = _st(request)
    port = await st.db.run(st.db.store.get_port, request.match_info["id"])
    return ok(port.to_dict())


@routes.delete("/v1/ports/{id}")
async def delete_port(request: web.Request) -> web.Response:
    st = _st(request)
    port = await st.db.run(st.db.store.delete_port, request.match_info["id"])
    revision = await st.hub.sync()
    return ok({"deleted": port.id, "revision": revision})


@routes.put("/v1/ports/{id}/status")
async def set_port_status(request: web.Request) -> web.Response:
    st = _st(request)
    status, host = parse_port_status(await _body(request))
    who = principal(request)
    if who is not None and who.role == "host":
        host = host or who.host  # a host token reports only as its own host
    port = await st.db.run(st.db.store.set_port_status, request.match_info["id"], status, host)
    await st.hub.sync()
    return ok(port.to_dict())


@routes.put("/v1/ports/{id}/binding")
async def bind_port(request: web.Request) -> web.Response:
    st = _st(request)
    host = parse_port_binding(await _body(request))
    port = await st.db.run(st.db.store.bind_port, request.match_info["id"], host)
    await st.hub.sync()
    return ok(port.to_dict())


# --- hosts ----------------------------------------------------------------------
@routes.get("/v1/hosts")
async def list_hosts(request: web.Request) -> web.Response:
    check_query(request.query, ())
    st = _st(request)
    hosts, rev = await st.db.run(st.db.store.list_hosts)
    return ok({"revision": rev, "hosts": [h.to_dict() for h in hosts]})


@routes.get("/v1/hosts/{name}")
async def get_host(request: web.Request) -> web.Response:
    st = _st(request)
    name = check_name(request.match_info["name"], "host")
    host = await st.db.run(st.db.store.get_host, name)
    return ok(host.to_dict())


@routes.put("/v1/hosts/{name}")
async def put_host(request: web.Request) -> web.Response:
    st = _st(request)
    host = parse_host_put(request.match_info["name"], await _body(request), time.time())
    stored = await st.db.run(st.db.store.put_host, host)
    await st.hub.sync()
    return ok(stored.to_dict())


# --- stats and the API's own description ------------------------------------------
@routes.get("/v1/stats")
async def stats(request: web.Request) -> web.Response:
    check_query(request.query, ())
    st = _st(request)
    hub = st.hub
    return ok(st.stats.to_dict(hub.revision, len(hub.watchers), hub.world.host_count()))


@routes.get("/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return ok(openapi_document())
