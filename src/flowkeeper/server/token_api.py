"""Token endpoints under /v1/tokens: create (the secret is shown once), list, revoke."""

from __future__ import annotations

import contextlib
import time
from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field

from flowkeeper.cperrors import Conflict
from flowkeeper.server.endpoint import Input, endpoint
from flowkeeper.server.requests import TOKEN_PATH_PATTERN, Loose, Name, Strict, Text
from flowkeeper.server.state import STATE, ServerState
from flowkeeper.server.tokens import BOOTSTRAP_ID, new_token
from flowkeeper.store.tokens import TOKEN_ID_PATTERN

routes = web.RouteTableDef()
RoleValue = Literal["admin", "read-only", "host"]


class HostTokenCreate(Strict):
    role: Literal["host"]
    host: Name = Field(description="the one host this token may act as")
    note: Text = Field("", description="a free-text label shown by token list")


class AdminTokenCreate(Strict):
    role: Literal["admin"]
    note: Text = Field("", description="a free-text label shown by token list")


class ReadOnlyTokenCreate(Strict):
    role: Literal["read-only"]
    note: Text = Field("", description="a free-text label shown by token list")


AnyTokenCreate = HostTokenCreate | AdminTokenCreate | ReadOnlyTokenCreate
TokenCreate = Annotated[AnyTokenCreate, Field(discriminator="role")]


class TokenInfo(Strict):
    id: str = Field(pattern=TOKEN_ID_PATTERN)
    role: RoleValue
    host: str = Field(description="the host of a host token, else empty")
    created: float = Field(description="Unix time")
    note: str


class TokenCreated(TokenInfo):
    secret: str = Field(description="shown only in this answer; the server keeps its hash")


class TokenList(Strict):
    tokens: list[TokenInfo]


class TokenRevoked(Strict):
    revoked: str
    closed_streams: int = Field(description="watch streams of the token that were ended")


class TokenPath(Loose):
    id: str = Field(pattern=TOKEN_PATH_PATTERN)


def token_lock(st: ServerState) -> contextlib.AbstractAsyncContextManager[object]:
    """This server's own token writes exclude its refresh from the store (tokensync)."""
    return st.token_sync.lock if st.token_sync is not None else contextlib.nullcontext()


@endpoint(
    routes,
    method="POST",
    path="/v1/tokens",
    operation_id="createToken",
    summary="create an API token (admin); the answer holds its secret, shown this once",
    what="token",
    ok_status=201,
    ok_type=TokenCreated,
    body=TokenCreate,
)
async def create_token(request: web.Request, inp: Input) -> web.Response:
    st = request.app[STATE]
    spec: AnyTokenCreate = inp.body
    host = spec.host if isinstance(spec, HostTokenCreate) else ""
    record, secret = new_token(spec.role, host, time.time(), spec.note)
    async with token_lock(st):
        await st.db.run(st.db.store.add_token, record)
        st.tokens.add(record)
    return web.json_response({**record.public(), "secret": secret}, status=201)


@endpoint(
    routes,
    method="GET",
    path="/v1/tokens",
    operation_id="listTokens",
    summary="every API token but the bootstrap one (admin), never a secret or hash",
    what="tokens",
    ok_status=200,
    ok_type=TokenList,
)
async def list_tokens(request: web.Request, _inp: Input) -> web.Response:
    st = request.app[STATE]
    return web.json_response({"tokens": [r.public() for r in st.tokens.records()]})


@endpoint(
    routes,
    method="DELETE",
    path="/v1/tokens/{id}",
    operation_id="revokeToken",
    summary="revoke a token (admin): refused from the next request on, its watches end",
    what="token",
    ok_status=200,
    ok_type=TokenRevoked,
    path_params=TokenPath,
    errors=(404, 409),
)
async def revoke_token(request: web.Request, inp: Input) -> web.Response:
    st = request.app[STATE]
    token_id: str = inp.path.id
    if token_id == BOOTSTRAP_ID:
        raise Conflict(
            "the bootstrap token is not revocable here: change the server's token file "
            "or $FLOWKEEPER_TOKEN and restart it"
        )
    async with token_lock(st):
        record = await st.db.run(st.db.store.delete_token, token_id)
        st.tokens.remove(record.id)
        closed = st.streams.close(record.id)
    return web.json_response({"revoked": record.id, "closed_streams": closed})
