"""Token endpoints under /v1/tokens: create (the secret is shown once), list, revoke."""

from __future__ import annotations

import time

from aiohttp import web

from flowkeeper import validation as v
from flowkeeper.server.requests import check_query, parse_json
from flowkeeper.server.state import STATE
from flowkeeper.server.tokens import BOOTSTRAP_ID, new_token
from flowkeeper.store.tokens import check_token_id
from flowkeeper.validation import ValidationError

routes = web.RouteTableDef()


@routes.post("/v1/tokens")
async def create_token(request: web.Request) -> web.Response:
    """Body {"role": "admin"|"read-only"|"host", "host": NAME (host tokens), "note": TEXT}."""
    st = request.app[STATE]
    body = parse_json(await request.read())
    v.check_fields(body, ["role"], ["host", "note"], "token")
    record, secret = new_token(
        v.get_str(body, "role"),
        v.get_str(body, "host", ""),
        time.time(),
        v.check_text(v.get_str(body, "note", ""), "token note"),
    )
    await st.db.run(st.db.store.add_token, record)
    st.tokens.add(record)
    return web.json_response({**record.public(), "secret": secret}, status=201)


@routes.get("/v1/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    """Every token but the bootstrap one, without secrets or hashes."""
    check_query(request.query, ())
    st = request.app[STATE]
    return web.json_response({"tokens": [r.public() for r in st.tokens.records()]})


@routes.delete("/v1/tokens/{id}")
async def revoke_token(request: web.Request) -> web.Response:
    """Refused from the next request on; the token's open watch streams end now."""
    st = request.app[STATE]
    token_id = request.match_info["id"]
    if token_id == BOOTSTRAP_ID:
        raise ValidationError(
            "the bootstrap token is not revocable here: change the server's token file "
            "or $FLOWKEEPER_TOKEN and restart it"
        )
    record = await st.db.run(st.db.store.delete_token, check_token_id(token_id))
    st.tokens.remove(record.id)
    closed = st.streams.close(record.id)
    return web.json_response({"revoked": record.id, "closed_streams": closed})
