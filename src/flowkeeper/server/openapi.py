"""The OpenAPI 3 description of the /v1 API, written by hand; served at /v1/openapi.json."""

from __future__ import annotations

from typing import Any

from flowkeeper import __version__
from flowkeeper.server.token_doc import TOKEN_PATHS

J = dict[str, Any]


def _ref(name: str) -> J:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: J, description: str) -> J:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> J:
    text = {
        400: "bad input: malformed JSON, unknown field, wrong type, invalid value",
        401: "missing or wrong bearer token (writes only)",
        404: "no such object (also: a port's network_id names no network)",
        409: "conflict: duplicate name/MAC/IP/segment/id, or a network that still has ports",
        410: "the revision was compacted away or is ahead of the server: list the view again",
    }
    return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes if c in text}


def _body(schema: J) -> J:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _listing(key: str, item: str) -> J:
    return {
        "type": "object",
        "required": ["revision", key],
        "properties": {
            "revision": {"type": "integer"},
            key: {"type": "array", "items": _ref(item)},
        },
    }


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_HOST = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_DELETED = {
    "type": "object",
    "properties": {"deleted": {"type": "string"}, "revision": {"type": "integer"}},
}
_WRITE: list[J] = [{"bearer": []}]

SCHEMAS: J = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Network": {
        "type": "object",
        "required": ["id", "name", "type", "segmentation_id", "cidr", "revision"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"},
            "type": {"type": "string", "enum": ["vxlan", "gre"]},
            "segmentation_id": {
                "type": "integer",
                "minimum": 1,
                "description": "vxlan 1..16777215, gre 1..4294967295",
            },
            "cidr": {"type": ["string", "null"], "example": "198.19.1.0/24"},
            "revision": {"type": "integer", "description": "store revision of the last change"},
        },
    },
    "NetworkCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "type"],
        "properties": {
            "name": {"type": "string"},
            "type": {"type": "string", "enum": ["vxlan", "gre"]},
            "segmentation_id": {"type": "integer", "description": "lowest free if omitted"},
            "cidr": {"type": ["string", "null"]},
            "id": {"type": "string", "description": "a UUID is generated if omitted"},
        },
    },
    "Port": {
        "type": "object",
        "required": ["id", "network_id", "host", "mac", "fixed_ips", "status", "revision"],
        "properties": {
            "id": {"type": "string"},
            "network_id": {"type": "string"},
            "host": {"type": "string"},
            "mac": {"type": "string", "example": "fa:16:3e:00:00:01"},
            "fixed_ips": {"type": "array", "items": {"type": "string"}},
            "status": {"type": "string", "enum": ["DOWN", "ACTIVE"]},
            "name": {"type": "string"},
            "device_id": {"type": "string"},
            "revision": {"type": "integer"},
            "tunnel_ip": {
                "type": ["string", "null"],
                "description": "the binding host's tunnel IP; filled in only in views and "
                "watch messages (null when the host is not registered)",
            },
        },
    },
    "PortCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["network_id", "host", "mac"],
        "properties": {
            "network_id": {"type": "string"},
            "host": {"type": "string"},
            "mac": {"type": "string"},
            "fixed_ips": {"type": "array", "items": {"type": "string"}},
            "name": {"type": "string"},
            "device_id": {"type": "string"},
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["DOWN", "ACTIVE"]},
        },
    },
    "PortStatus": {
        "type": "object",
        "additionalProperties": False,
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["DOWN", "ACTIVE"]},
            "host": {"type": "string", "description": "the reporting host: 409 if not bound there"},
        },
    },
    "PortBinding": {
        "type": "object",
        "additionalProperties": False,
        "required": ["host"],
        "properties": {"host": {"type": "string"}},
    },
    "Host": {
        "type": "object",
        "required": ["name", "tunnel_ip", "l2pop", "virtual", "state", "revision", "last_seen"],
        "properties": {
            "name": {"type": "string"},
            "tunnel_ip": {"type": "string"},
            "l2pop": {"type": "boolean"},
            "virtual": {"type": "boolean"},
            "state": {"type": "string", "example": "in-sync"},
            "revision": {"type": "integer", "description": "last revision the agent applied"},
            "last_seen": {"type": "number", "description": "Unix time, set by the server"},
        },
    },
    "HostPut": {
        "type": "object",
        "additionalProperties": False,
        "required": ["tunnel_ip"],
        "properties": {
            "tunnel_ip": {"type": "string"},
            "l2pop": {"type": "boolean"},
            "virtual": {"type": "boolean"},
            "state": {"type": "string"},
            "revision": {"type": "integer"},
        },
    },
    "View": {
        "type": "object",
        "required": ["revision", "networks", "ports"],
        "properties": {
            "revision": {"type": "integer"},
            "networks": {"type": "array", "items": _ref("Network")},
            "ports": {"type": "array", "items": _ref("Port")},
        },
    },
    "WatchMessage": {
        "description": "one line of the NDJSON watch stream",
        "type": "object",
        "required": ["revision", "kind"],
        "properties": {
            "revision": {"type": "integer"},
            "kind": {"type": "string", "enum": ["network", "port", "heartbeat"]},
            "op": {"type": "string", "enum": ["put", "delete"]},
            "object": {"oneOf": [_ref("Network"), _ref("Port")]},
        },
    },
    "Stats": {"type": "object", "additionalProperties": True},
}


def _paths() -> J:
    net, port, host = _ref("Network"), _ref("Port"), _ref("Host")
    return {
        "/v1/networks": {
            "get": {
                "summary": "list networks",
                "responses": {"200": _json(_listing("networks", "Network"), "networks")},
            },
            "post": {
                "summary": "create a network",
                "security": _WRITE,
                "requestBody": _body(_ref("NetworkCreate")),
                "responses": {"201": _json(net, "created"), **_errors(400, 401, 409)},
            },
        },
        "/v1/networks/{id}": {
            "parameters": [_ID],
            "get": {
                "summary": "one network",
                "responses": {"200": _json(net, "network"), **_errors(404)},
            },
            "delete": {
                "summary": "delete a network without ports",
                "security": _WRITE,
                "responses": {"200": _json(_DELETED, "deleted"), **_errors(401, 404, 409)},
            },
        },
        "/v1/ports": {
            "get": {
                "summary": "list ports",
                "parameters": [
                    {"name": "network_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "host", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": _json(_listing("ports", "Port"), "ports"), **_errors(400)},
            },
            "post": {
                "summary": "create a port",
                "security": _WRITE,
                "requestBody": _body(_ref("PortCreate")),
                "responses": {"201": _json(port, "created"), **_errors(400, 401, 404, 409)},
            },
        },
        "/v1/ports/{id}": {
            "parameters": [_ID],
            "get": {
                "summary": "one port",
                "responses": {"200": _json(port, "port"), **_errors(404)},
            },
            "delete": {
                "summary": "delete a port",
                "security": _WRITE,
                "responses": {"200": _json(_DELETED, "deleted"), **_errors(401, 404)},
            },
        },
        "/v1/ports/{id}/status": {
            "parameters": [_ID],
            "put": {
                "summary": "an agent reports a port ACTIVE or DOWN",
                "security": _WRITE,
                "requestBody": _body(_ref("PortStatus")),
                "responses": {"200": _json(port, "port"), **_errors(400, 401, 404, 409)},
            },
        },
        "/v1/ports/{id}/binding": {
            "parameters": [_ID],
            "put": {
                "summary": "move a port to another host (migration; plug the VIF there first)",
                "security": _WRITE,
                "requestBody": _body(_ref("PortBinding")),
                "responses": {"200": _json(port, "port"), **_errors(400, 401, 404)},
            },
        },
        "/v1/hosts": {
            "get": {
                "summary": "list hosts",
                "responses": {"200": _json(_listing("hosts", "Host"), "hosts")},
            },
        },
        "/v1/hosts/{name}": {
            "parameters": [_HOST],
            "get": {
                "summary": "one host",
                "responses": {"200": _json(host, "host"), **_errors(400, 404)},
            },
            "put": {
                "summary": "agent registration and heartbeat",
                "security": _WRITE,
                "requestBody": _body(_ref("HostPut")),
                "responses": {"200": _json(host, "host"), **_errors(400, 401)},
            },
        },
        "/v1/hosts/{name}/view": {
            "parameters": [_HOST],
            "get": {
                "summary": "the networks where the host has ports and all their ports",
                "responses": {"200": _json(_ref("View"), "view"), **_errors(400)},
            },
        },
        "/v1/hosts/{name}/watch": {
            "parameters": [
                _HOST,
                {"name": "from", "in": "query", "required": True, "schema": {"type": "integer"}},
            ],
            "get": {
                "summary": "NDJSON stream of the host's messages after revision `from`",
                "description": "One WatchMessage per line: the catch-up, a heartbeat, then "
                "live messages and a heartbeat whenever idle for a few seconds.",
                "responses": {
                    "200": {
                        "description": "stream",
                        "content": {"application/x-ndjson": {"schema": _ref("WatchMessage")}},
                    },
                    **_errors(400, 410),
                },
            },
        },
        "/v1/stats": {
            "get": {"summary": "counters", "responses": {"200": _json(_ref("Stats"), "stats")}}
        },
        "/v1/openapi.json": {
            "get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI 3"}}}
        },
    }


def openapi_document() -> J:
    responses = {
        f"E{code}": _json(_ref("Error"), text)
        for code, text in (
            (400, "bad request"),
            (401, "unauthorized"),
            (404, "not found"),
            (409, "conflict"),
            (410, "gone: re-list"),
        )
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "flowkeeper control plane", "version": __version__},
        "servers": [{"url": "http://127.0.0.1:9696"}],
        "paths": {**_paths(), **TOKEN_PATHS},
        "components": {
            "schemas": SCHEMAS,
            "responses": responses,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
