"""What every request handler can reach: the store, the hub, the stats and the API token."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from flowkeeper.server.asyncstore import AsyncStore
from flowkeeper.server.hub import Hub
from flowkeeper.server.stats import Stats


@dataclass
class ServerState:
    db: AsyncStore
    hub: Hub
    stats: Stats
    token: str
    heartbeat_s: float = 5.0


STATE = web.AppKey("flowkeeper", ServerState)
