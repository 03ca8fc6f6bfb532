"""A host's list+watch: GET /v1/hosts/{name}/view and the NDJSON stream /v1/hosts/{name}/watch."""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web

from flowkeeper.cperrors import Compacted
from flowkeeper.model import WatchEvent
from flowkeeper.server import responses as out
from flowkeeper.server.api import ok
from flowkeeper.server.endpoint import Input, endpoint
from flowkeeper.server.hub import Watcher
from flowkeeper.server.requests import HostPath, WatchQuery
from flowkeeper.server.state import STATE, ServerState

log = logging.getLogger("flowkeeper.server")
routes = web.RouteTableDef()
CHUNK = 2000  # messages per socket write


@endpoint(
    routes,
    method="GET",
    path="/v1/hosts/{name}/view",
    operation_id="getView",
    summary="the networks where the host has ports and all their ports",
    what="view",
    ok_status=200,
    ok_type=out.View,
    path_params=HostPath,
    errors=(404,),
)
async def view(request: web.Request, inp: Input) -> web.Response:
    st = request.app[STATE]
    return ok((await st.hub.view(inp.path.name)).to_dict())


WATCH_DESCRIPTION = (
    "One WatchMessage per line: the catch-up (every message after `from`, read from the "
    "store in bounded pages), a heartbeat, then live messages and a heartbeat whenever "
    "idle for a few seconds. With `timeout` the server ends the stream that many seconds "
    "after the catch-up, after a last heartbeat. At most a configured number of streams "
    "per host (429 beyond)."
)


@endpoint(
    routes,
    method="GET",
    path="/v1/hosts/{name}/watch",
    operation_id="watch",
    summary="NDJSON stream of the host's messages after revision `from`",
    description=WATCH_DESCRIPTION,
    what="watch",
    ok_status=200,
    ok_type=out.WatchMessage,
    media_type="application/x-ndjson",
    path_params=HostPath,
    query=WatchQuery,
    errors=(404, 410, 429),
)
async def watch(request: web.Request, inp: Input) -> web.StreamResponse:
    """Every message after ?from=R for this host, a heartbeat once the catch-up is sent,
    then live messages, with a heartbeat whenever the stream was idle for a while."""
    st = request.app[STATE]
    name, query = inp.path.name, inp.query
    watcher = await st.hub.subscribe(name, query.from_)  # 410, 429
    response = web.StreamResponse(
        headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"}
    )
    try:
        await response.prepare(request)
        await _stream(st, watcher, response, query.timeout)
    except ConnectionError:
        log.debug("watcher %s went away", name)
    except Compacted as exc:  # compacted while catching up: the agent re-lists
        watcher.close(str(exc))
    finally:
        watcher.close("stream ended")
        st.hub.unsubscribe(watcher)
    if watcher.reason and watcher.reason != "stream ended":
        log.info("closed watch stream of %s: %s", name, watcher.reason)
    return response


async def _stream(
    st: ServerState, watcher: Watcher, response: web.StreamResponse, timeout: float | None
) -> None:
    await watcher.catch_up(lambda msgs: _write(st, response, msgs))
    await _write(st, response, [WatchEvent(watcher.revision, "heartbeat", "")])
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = st.heartbeat_s
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                await _write(st, response, [WatchEvent(watcher.revision, "heartbeat", "")])
                return
        batch = await watcher.next_batch(wait)
        if batch is None:
            return
        messages, revision = batch
        for start in range(0, len(messages), CHUNK):
            await _write(st, response, messages[start : start + CHUNK])
        if not messages and (deadline is None or time.monotonic() < deadline):
            await _write(st, response, [WatchEvent(revision, "heartbeat", "")])


async def _write(st: ServerState, response: web.StreamResponse, msgs: list[WatchEvent]) -> None:
    if not msgs:
        return
    lines = [json.dumps(m.to_dict(), separators=(",", ":")) for m in msgs]
    await response.write(("\n".join(lines) + "\n").encode())
    for m in msgs:
        st.stats.sent(m.kind)
