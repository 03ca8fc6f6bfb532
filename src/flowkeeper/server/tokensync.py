"""Keep a server's token table equal to the store's, with several servers on one store.

A token created through one server must work on every server, and a token revoked
through one must stop working on every server and end its watch streams there too.
Each server re-reads the store's token list every REFRESH_S; a request whose token id
the table does not know re-reads it at once (at most every MISS_REFRESH_S, so unknown
tokens cannot make a server hammer its store) before it is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from flowkeeper.errors import FlowkeeperError

if TYPE_CHECKING:
    from flowkeeper.server.state import ServerState

log = logging.getLogger("flowkeeper.server")

REFRESH_S = 1.0
MISS_REFRESH_S = 0.25


class TokenSync:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._started = float("-inf")  # when the last refresh began reading
        self._miss = asyncio.Lock()
        # Held by refresh and by this server's own token writes: a refresh that read the
        # list just before a create must not then drop the new token from the table.
        self.lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Read the store's tokens; end the watch streams of tokens revoked elsewhere."""
        async with self.lock:
            st = self.state
            self._started = time.monotonic()
            records = await st.db.run(st.db.store.list_tokens)
            for token_id in st.tokens.replace(records):
                closed = st.streams.close(token_id)
                log.info("token %s was revoked: %d watch stream(s) ended", token_id, closed)

    async def on_miss(self) -> None:
        """A request named a token id the table does not hold: maybe it is new. Returns
        once a refresh that began after the request arrived is done; misses that come
        together share one, and they begin at most every MISS_REFRESH_S."""
        arrived = time.monotonic()
        async with self._miss:
            if self._started >= arrived:
                return
            await asyncio.sleep(max(0.0, self._started + MISS_REFRESH_S - time.monotonic()))
            try:
                await self.refresh()
            except FlowkeeperError as exc:
                log.warning("reading the store's tokens failed: %s", exc)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="flowkeeper-tokens")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await self.refresh()
            except FlowkeeperError as exc:
                log.warning("reading the store's tokens failed: %s; retrying", exc)
