"""REST handlers for networks, ports, hosts and stats under /v1 (JSON in, JSON out)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from flowkeeper.model import Host
from flowkeeper.server import responses as out
from flowkeeper.server.endpoint import Input, endpoint
from flowkeeper.server.openapi import openapi_document
from flowkeeper.server.requests import (
    HostPath,
    HostPut,
    NetworkCreate,
    NetworkPath,
    PortBinding,
    PortCreate,
    PortPath,
    PortsQuery,
    PortStatusUpdate,
)
from flowkeeper.server.sg_api import create_port_with_groups, referenced_is_conflict
from flowkeeper.server.sg_requests import PORT_SECURITY_RELATIONS, PortSecurityUpdate
from flowkeeper.server.state import STATE, ServerState, principal
from flowkeeper.store.base import HostLiveness, Store

routes = web.RouteTableDef()


def _st(request: web.Request) -> ServerState:
    return request.app[STATE]


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _link(op_id: str, param: str, expr: str) -> dict[str, Any]:
    return {"operationId": op_id, "parameters": {param: f"$response.body#/{expr}"}}


NETWORK_LINKS = {
    "GetNetwork": _link("getNetwork", "id", "id"),
    "DeleteNetwork": _link("deleteNetwork", "id", "id"),
}
PORT_LINKS = {
    "GetPort": _link("getPort", "id", "id"),
    "DeletePort": _link("deletePort", "id", "id"),
    "SetPortStatus": _link("setPortStatus", "id", "id"),
    "BindPort": _link("bindPort", "id", "id"),
    "UpdatePort": _link("updatePort", "id", "id"),
}
HOST_LINKS = {
    "GetHost": _link("getHost", "name", "name"),
    "GetView": _link("getView", "name", "name"),
    "Watch": _link("watch", "name", "name"),
    "DeleteHost": _link("deleteHost", "name", "name"),
}


# --- networks -----------------------------------------------------------------
@endpoint(
    routes,
    method="GET",
    path="/v1/networks",
    operation_id="listNetworks",
    summary="list networks",
    what="networks",
    ok_status=200,
    ok_type=out.NetworkList,
)
async def list_networks(request: web.Request, _inp: Input) -> web.Response:
    st = _st(request)
    nets, rev = await st.db.run(st.db.store.list_networks)
    return ok({"revision": rev, "networks": [n.to_dict() for n in nets]})


@endpoint(
    routes,
    method="POST",
    path="/v1/networks",
    operation_id="createNetwork",
    summary="create a network",
    what="network",
    ok_status=201,
    ok_type=out.Network,
    body=NetworkCreate,
    errors=(409,),
    links=NETWORK_LINKS,
)
async def create_network(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    spec = inp.body
    net = await st.db.run(
        st.db.store.create_network,
        spec.name,
        spec.type,
        spec.segmentation_id,
        spec.cidr,
        spec.id,
        project_id=spec.project_id,
    )
    await st.hub.settle(net.revision)
    return ok(net.to_dict(), 201)


@endpoint(
    routes,
    method="GET",
    path="/v1/networks/{id}",
    operation_id="getNetwork",
    summary="one network",
    what="network",
    ok_status=200,
    ok_type=out.Network,
    path_params=NetworkPath,
    errors=(404,),
)
async def get_network(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    net = await st.db.run(st.db.store.get_network, inp.path.id)
    return ok(net.to_dict())


@endpoint(
    routes,
    method="DELETE",
    path="/v1/networks/{id}",
    operation_id="deleteNetwork",
    summary="delete a network without ports",
    what="network",
    ok_status=200,
    ok_type=out.Deleted,
    path_params=NetworkPath,
    errors=(404, 409),
)
async def delete_network(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    net = await st.db.run(st.db.store.delete_network, inp.path.id)
    revision = await st.hub.settle_delete()
    return ok({"deleted": net.id, "revision": revision})


# --- ports ----------------------------------------------------------------------
@endpoint(
    routes,
    method="GET",
    path="/v1/ports",
    operation_id="listPorts",
    summary="list ports",
    what="ports",
    ok_status=200,
    ok_type=out.PortList,
    query=PortsQuery,
)
async def list_ports(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    ports, rev = await st.db.run(st.db.store.list_ports, inp.query.network_id, inp.query.host)
    return ok({"revision": rev, "ports": [p.to_dict() for p in ports]})


@endpoint(
    routes,
    method="POST",
    path="/v1/ports",
    operation_id="createPort",
    summary="create a port",
    what="port",
    ok_status=201,
    ok_type=out.Port,
    body=PortCreate,
    errors=(404, 409),
    links=PORT_LINKS,
    description="Security as in Neutron: " + PORT_SECURITY_RELATIONS + " Groups must exist "
    "(404) and be of the port's project (409).",
)
async def create_port(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    spec: PortCreate = inp.body
    stored = await st.db.run(create_port_with_groups, st.db.store, spec)
    await st.hub.settle(stored.revision)
    return ok(stored.to_dict(), 201)


@endpoint(
    routes,
    method="PATCH",
    path="/v1/ports/{id}",
    operation_id="updatePort",
    summary="change a port's security groups, port security or allowed address pairs",
    what="port",
    ok_status=200,
    ok_type=out.Port,
    path_params=PortPath,
    body=PortSecurityUpdate,
    errors=(404, 409),
    description="Fields left out are kept. " + PORT_SECURITY_RELATIONS + " 404: no such "
    "port; 409: a group that does not exist or is of another project, or the port would "
    "keep its stored "
    "groups or pairs without port security (or get them while it has none).",
)
async def update_port(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    body: PortSecurityUpdate = inp.body
    pairs = body.allowed_address_pairs
    with referenced_is_conflict():
        port = await st.db.run(
            st.db.store.update_port_security,
            inp.path.id,
            security_groups=None if body.security_groups is None else tuple(body.security_groups),
            port_security_enabled=body.port_security_enabled,
            allowed_address_pairs=None if pairs is None else tuple(p.to_pair() for p in pairs),
        )
    await st.hub.settle(port.revision)
    return ok(port.to_dict())


@endpoint(
    routes,
    method="GET",
    path="/v1/ports/{id}",
    operation_id="getPort",
    summary="one port",
    what="port",
    ok_status=200,
    ok_type=out.Port,
    path_params=PortPath,
    errors=(404,),
)
async def get_port(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    port = await st.db.run(st.db.store.get_port, inp.path.id)
    return ok(port.to_dict())


@endpoint(
    routes,
    method="DELETE",
    path="/v1/ports/{id}",
    operation_id="deletePort",
    summary="delete a port",
    what="port",
    ok_status=200,
    ok_type=out.Deleted,
    path_params=PortPath,
    errors=(404,),
)
async def delete_port(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    port = await st.db.run(st.db.store.delete_port, inp.path.id)
    revision = await st.hub.settle_delete()
    return ok({"deleted": port.id, "revision": revision})


@endpoint(
    routes,
    method="PUT",
    path="/v1/ports/{id}/status",
    operation_id="setPortStatus",
    summary="an agent reports a port ACTIVE or DOWN",
    what="port status",
    ok_status=200,
    ok_type=out.Port,
    path_params=PortPath,
    body=PortStatusUpdate,
    errors=(404, 409),
)
async def set_port_status(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    body: PortStatusUpdate = inp.body
    host = body.host
    who = principal(request)
    if who is not None and who.role == "host":
        host = host or who.host  # a host token reports only as its own host
    port = await st.db.run(st.db.store.set_port_status, inp.path.id, body.status, host)
    await st.hub.settle(port.revision)
    return ok(port.to_dict())


@endpoint(
    routes,
    method="PUT",
    path="/v1/ports/{id}/binding",
    operation_id="bindPort",
    summary="move a port to another host (migration; plug the VIF there first)",
    what="port binding",
    ok_status=200,
    ok_type=out.Port,
    path_params=PortPath,
    body=PortBinding,
    errors=(404,),
)
async def bind_port(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    port = await st.db.run(st.db.store.bind_port, inp.path.id, inp.body.host)
    await st.hub.settle(port.revision)
    return ok(port.to_dict())


# --- hosts ----------------------------------------------------------------------
@endpoint(
    routes,
    method="GET",
    path="/v1/hosts",
    operation_id="listHosts",
    summary="list hosts",
    what="hosts",
    ok_status=200,
    ok_type=out.HostList,
)
async def list_hosts(request: web.Request, _inp: Input) -> web.Response:
    st = _st(request)
    hosts, rev, alive = await st.db.run(_hosts_and_liveness, st.db.store)
    return ok({"revision": rev, "hosts": [_host_status(h, alive) for h in hosts]})


def _hosts_and_liveness(store: Store) -> tuple[list[Host], int, dict[str, HostLiveness]]:
    hosts, rev = store.list_hosts()
    return hosts, rev, store.host_liveness()


def _host_status(host: Host, alive: dict[str, HostLiveness]) -> dict[str, Any]:
    """The host record with its liveness: `alive`, and alive or gone `since` when."""
    # Registered after the liveness was read: no heartbeat counted yet, so not alive.
    state = alive.get(host.name) or HostLiveness(False, host.last_seen)
    return {**host.to_dict(), "alive": state.alive, "since": state.since}


@endpoint(
    routes,
    method="GET",
    path="/v1/hosts/{name}",
    operation_id="getHost",
    summary="one host",
    what="host",
    ok_status=200,
    ok_type=out.HostStatus,
    path_params=HostPath,
    errors=(404,),
)
async def get_host(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    host, alive = await st.db.run(_host_and_liveness, st.db.store, inp.path.name)
    return ok(_host_status(host, alive))


def _host_and_liveness(store: Store, name: str) -> tuple[Host, dict[str, HostLiveness]]:
    host = store.get_host(name)
    return host, store.host_liveness()


@endpoint(
    routes,
    method="DELETE",
    path="/v1/hosts/{name}",
    operation_id="deleteHost",
    summary="remove a host's registration (admin; refused while ports are bound to it)",
    what="host",
    ok_status=200,
    ok_type=out.Deleted,
    path_params=HostPath,
    errors=(404, 409),
    description="Stop the host's agent first: a running agent registers its host again at "
    "its next heartbeat.",
)
async def delete_host(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    host = await st.db.run(st.db.store.delete_host, inp.path.name)
    revision = await st.hub.settle_delete()
    return ok({"deleted": host.name, "revision": revision})


@endpoint(
    routes,
    method="PUT",
    path="/v1/hosts/{name}",
    operation_id="putHost",
    summary="agent registration and heartbeat",
    what="host",
    ok_status=200,
    ok_type=out.Host,
    path_params=HostPath,
    body=HostPut,
    links=HOST_LINKS,
)
async def put_host(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    body: HostPut = inp.body
    host = body.to_host(inp.path.name, time.time())
    known = st.hub.world.hosts.get(host.name)
    stored = await st.db.run(st.db.store.put_host, host)
    if known is None or not known.same_spec(host):  # a heartbeat alone is no event
        await st.hub.sync()
    return ok(stored.to_dict())


# --- stats and the API's own description ------------------------------------------
@endpoint(
    routes,
    method="GET",
    path="/v1/stats",
    operation_id="stats",
    summary="counters",
    what="stats",
    ok_status=200,
    ok_type=out.Stats,
)
async def stats(request: web.Request, _inp: Input) -> web.Response:
    st = _st(request)
    hub = st.hub
    counters = st.stats.to_dict(hub.revision, len(hub.watchers), hub.world.host_count())
    return ok({"cluster_id": st.db.store.cluster_id(), **counters})


@endpoint(
    routes,
    method="GET",
    path="/v1/openapi.json",
    operation_id="openapi",
    summary="this document (OpenAPI 3.1)",
    what="openapi",
    ok_status=200,
    ok_type=out.OpenApiDocument,
)
async def openapi(_request: web.Request, _inp: Input) -> web.Response:
    return ok(openapi_document())
