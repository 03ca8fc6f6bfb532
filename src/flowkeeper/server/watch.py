"""A host's list+watch: GET /v1/hosts/{name}/view and the NDJSON stream /v1/hosts/{name}/watch."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from flowkeeper.model import WatchEvent
from flowkeeper.server.api import ok
from flowkeeper.server.hub import Watcher
from flowkeeper.server.requests import check_query, parse_revision
from flowkeeper.server.state import STATE, ServerState
from flowkeeper.validation import check_name

log = logging.getLogger("flowkeeper.server")
routes = web.RouteTableDef()
CHUNK = 2000  # messages per socket write during a large catch-up


@routes.get("/v1/hosts/{name}/view")
async def view(request: web.Request) -> web.Response:
    check_query(request.query, ("standby_for",))
    st = request.app[STATE]
    name = check_name(request.match_info["name"], "host")
    return ok((await st.hub.view(name, _standby_for(request))).to_dict())


def _standby_for(request: web.Request) -> str:
    """?standby_for=HOST: the view also holds HOST's networks (a hot upgrade's new slot)."""
    other = request.query.get("standby_for", "")
    return check_name(other, "standby_for host") if other else ""


@routes.get("/v1/hosts/{name}/watch")
async def watch(request: web.Request) -> web.StreamResponse:
    """Every message after ?from=R for this host, a heartbeat once the catch-up is sent,
    then live messages, with a heartbeat whenever the stream was idle for a while."""
    check_query(request.query, ("from", "standby_for"))
    st = request.app[STATE]
    name = check_name(request.match_info["name"], "host")
    from_revision = parse_revision(request.query.get("from"))
    watcher = await st.hub.subscribe(name, from_revision, _standby_for(request))  # 410: compacted
    response = web.StreamResponse(
        headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"}
    )
    try:
        await response.prepare(request)
        await _stream(st, watcher, response)
    except ConnectionError:
        log.debug("watcher %s went away", name)
    finally:
        watcher.close("stream ended")
        st.hub.unsubscribe(watcher)
    if watcher.reason and watcher.reason != "stream ended":
        log.info("closed watch stream of %s: %s", name, watcher.reason)
    return response


async def _stream(st: ServerState, watcher: Watcher, response: web.StreamResponse) -> None:
    batch = await watcher.next_batch(0)  # the catch-up, then at once a heartbeat
    first = True
    while batch is not None:
        messages, revision = batch
        for start in range(0, len(messages), CHUNK):
            await _write(st, response, messages[start : start + CHUNK])
        if first or not messages:
            await _write(st, response, [WatchEvent(revision, "heartbeat", "")])
        first = False
        batch = await watcher.next_batch(st.heartbeat_s)


async def _write(st: ServerState, response: web.StreamResponse, msgs: list[WatchEvent]) -> None:
    lines = [json.dumps(m.to_dict(), separators=(",", ":")) for m in msgs]
    await response.write(("\n".join(lines) + "\n").encode())
    for m in msgs:
        st.stats.sent(m.kind)
