"""The OpenAPI 3.1 document at /v1/openapi.json, generated from the registered operations' types."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter

from flowkeeper import __version__
from flowkeeper.model import CLUSTER_HEADER
from flowkeeper.server.endpoint import OPERATIONS, Operation
from flowkeeper.server.policy import is_public
from flowkeeper.server.requests import NetworkCreate
from flowkeeper.server.responses import Error, WatchMessage
from flowkeeper.server.token_api import TokenCreate

J = dict[str, Any]
REF = "#/components/schemas/{model}"
# Types that are not classes (discriminated unions) get their component name here.
NAMED: dict[int, str] = {
    id(NetworkCreate): "NetworkCreate",
    id(WatchMessage): "WatchMessage",
    id(TokenCreate): "TokenCreate",
}
ERRORS = {
    400: "bad input: malformed JSON, unknown field or parameter, wrong type, invalid value",
    401: "missing or wrong bearer token",
    403: "the token may not do this",
    404: "no such object (also: a port's network_id names no network, a port's or rule's "
    "security group does not exist)",
    409: "conflict with what is stored: duplicate name/MAC/IP/segment/id, a network that "
    "still has ports, a host that still has bound ports, an IP outside the network's CIDR "
    "or its network/broadcast address, "
    "a status report from a host the port is not bound to, "
    "a second default security group in a project, a rule a group already has, "
    "a security group of another project, "
    "a security group still used by ports or named by other groups' rules",
    410: "the revision was compacted away or is ahead of the server: list the view again",
    413: "request body too large",
    429: "too many watch streams for this host",
}


def _name(kind: Any) -> str:
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return kind.__name__
    return NAMED[id(kind)]


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            k: _strip_titles(v)
            for k, v in schema.items()
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


class _Components:
    def __init__(self) -> None:
        self.schemas: J = {}

    def ref(self, kind: Any) -> J:
        name = _name(kind)
        if name not in self.schemas:
            schema = TypeAdapter(kind).json_schema(ref_template=REF)
            for sub, sub_schema in schema.pop("$defs", {}).items():
                self.schemas.setdefault(sub, _strip_titles(sub_schema))
            self.schemas[name] = _strip_titles(schema)
        return {"$ref": REF.format(model=name)}


def _parameters(model: type[BaseModel], where: str) -> list[J]:
    schema = _strip_titles(model.model_json_schema(ref_template=REF))
    required = set(schema.get("required", []))
    out = []
    for name, spec in schema.get("properties", {}).items():
        prop = dict(spec)
        description = prop.pop("description", None)
        prop.pop("default", None)
        options = [s for s in prop.get("anyOf", []) if s.get("type") != "null"]
        if len(options) == 1:  # Optional[X]: a parameter is either there or not
            prop = options[0]
        param: J = {"name": name, "in": where, "required": where == "path" or name in required}
        if description:
            param["description"] = description
        param["schema"] = prop
        out.append(param)
    return out


def _json(schema: J, description: str, media_type: str = "application/json") -> J:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def _operation(op: Operation, comps: _Components) -> J:
    params = _parameters(op.path_params, "path") + _parameters(op.query, "query")
    ok_schema = comps.ref(op.ok_type) if op.ok_type is not None else {"type": "object"}
    ok = _json(ok_schema, op.summary, op.media_type)
    if op.links:
        ok["links"] = op.links
    ok["headers"] = {CLUSTER_HEADER: _CLUSTER_HEADER_SCHEMA, **op.headers}
    codes = {400, 401, 403, *op.errors} | ({413} if op.body is not None else set())
    responses: J = {str(op.ok_status): ok}
    for code in sorted(codes):
        responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    out: J = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "security": [] if is_public(op.method, op.path) else [{"bearer": []}],
        "parameters": params,
        "responses": responses,
    }
    if op.description:
        out["description"] = op.description
    if op.body is not None:
        schema = comps.ref(op.body)
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return out


_CLUSTER_HEADER_SCHEMA: J = {
    "required": True,
    "description": "the identity of the store behind this server, made with the store",
    "schema": {"type": "string"},
}


@cache
def openapi_document() -> J:
    comps = _Components()
    paths: J = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, comps)
    error = comps.ref(Error)
    responses: J = {f"E{code}": _json(error, text) for code, text in ERRORS.items()}
    responses["E401"]["headers"] = {
        "WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "flowkeeper control plane", "version": __version__},
        "servers": [{"url": "http://127.0.0.1:9696"}],
        "paths": paths,
        "components": {
            "schemas": comps.schemas,
            "responses": responses,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
