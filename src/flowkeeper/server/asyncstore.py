"""Run the synchronous store on worker threads so its I/O never blocks the event loop:
as many as the store's `concurrency` (sqlite: one, so calls run in order)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from flowkeeper.store.base import Store

P = ParamSpec("P")
T = TypeVar("T")


class AsyncStore:
    """`await db.run(db.store.create_port, port)`: up to `store.concurrency` calls at once
    (with 1, one at a time, in order)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        workers = max(1, int(getattr(store, "concurrency", 1)))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flowkeeper-store")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def close(self) -> None:
        await self.run(self.store.close)
        self._pool.shutdown(wait=True)
