"""What every request handler can reach: the store, the hub, the stats and the API tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from flowkeeper.server.asyncstore import AsyncStore
from flowkeeper.server.hub import Hub
from flowkeeper.server.policy import Principal
from flowkeeper.server.stats import Stats
from flowkeeper.server.tokens import TokenTable

if TYPE_CHECKING:
    from flowkeeper.server.tokensync import TokenSync


class Streams:
    """The watch streams open under each token, so that a revocation can end them."""

    def __init__(self) -> None:
        self._tasks: dict[str, set[asyncio.Task[object]]] = {}

    @contextmanager
    def track(self, token_id: str) -> Iterator[None]:
        task = asyncio.current_task()
        if task is None:
            yield
            return
        tasks = self._tasks.setdefault(token_id, set())
        tasks.add(task)
        try:
            yield
        finally:
            tasks.discard(task)
            if not tasks:
                self._tasks.pop(token_id, None)

    def close(self, token_id: str) -> int:
        """Cancel the streams of `token_id`; returns how many there were."""
        tasks = self._tasks.pop(token_id, set())
        for task in tasks:
            task.cancel()
        return len(tasks)

    def count(self, token_id: str) -> int:
        return len(self._tasks.get(token_id, ()))


@dataclass
class ServerState:
    db: AsyncStore
    hub: Hub
    stats: Stats
    tokens: TokenTable
    heartbeat_s: float = 5.0
    streams: Streams = field(default_factory=Streams)
    token_sync: TokenSync | None = None  # with several servers on one store


STATE = web.AppKey("flowkeeper", ServerState)
PRINCIPAL = web.RequestKey("flowkeeper_principal", Principal)  # who a request comes from


def principal(request: web.Request) -> Principal | None:
    """Who the request comes from (None on the public routes)."""
    who = request.get(PRINCIPAL)
    return who if isinstance(who, Principal) else None
