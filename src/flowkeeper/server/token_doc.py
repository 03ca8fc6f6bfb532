"""The OpenAPI description of the /v1/tokens endpoints (admin tokens only)."""

from __future__ import annotations

from typing import Any

J = dict[str, Any]
_ADMIN: list[J] = [{"bearer": []}]
_PUBLIC: J = {
    "type": "object",
    "required": ["id", "role", "host", "created", "note"],
    "properties": {
        "id": {"type": "string", "pattern": "^tk[0-9a-f]{12}$"},
        "role": {"type": "string", "enum": ["admin", "read-only", "host"]},
        "host": {"type": "string", "description": "the one host a host token may act as"},
        "created": {"type": "number", "description": "Unix time"},
        "note": {"type": "string"},
    },
}
_CREATE: J = {
    "type": "object",
    "additionalProperties": False,
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["admin", "read-only", "host"]},
        "host": {"type": "string", "description": "required for a host token"},
        "note": {"type": "string"},
    },
}
_CREATED: J = {
    **_PUBLIC,
    "required": [*_PUBLIC["required"], "secret"],
    "properties": {
        **_PUBLIC["properties"],
        "secret": {"type": "string", "description": "shown once; only its hash is stored"},
    },
}


def _json(schema: J, description: str) -> J:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(*codes: int) -> J:
    return {str(c): _json({"$ref": "#/components/schemas/Error"}, "error") for c in codes}


TOKEN_PATHS: J = {
    "/v1/tokens": {
        "get": {
            "summary": "list API tokens (never their secrets)",
            "security": _ADMIN,
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"tokens": {"type": "array", "items": _PUBLIC}},
                    },
                    "tokens",
                ),
                **_err(401, 403),
            },
        },
        "post": {
            "summary": "create an API token; the answer holds its secret, shown this once",
            "security": _ADMIN,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _CREATE}}},
            "responses": {"201": _json(_CREATED, "the new token"), **_err(400, 401, 403)},
        },
    },
    "/v1/tokens/{id}": {
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "delete": {
            "summary": "revoke a token: refused from the next request on, its watches end",
            "security": _ADMIN,
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "revoked": {"type": "string"},
                            "closed_streams": {"type": "integer"},
                        },
                    },
                    "revoked",
                ),
                **_err(400, 401, 403, 404),
            },
        },
    },
}
