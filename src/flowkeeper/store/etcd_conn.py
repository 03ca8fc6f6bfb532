"""The etcd connection: an asyncio loop on a daemon thread, one gRPC channel per member,
failover between members, and a deadline on every call (StoreUnavailable, never a hang)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import aetcd
from aetcd import rpc

from flowkeeper.cperrors import StoreError, StoreUnavailable
from flowkeeper.store.etcd_keys import EtcdUrl

T = TypeVar("T")

ATTEMPT_TIMEOUT_S = 2.0  # one RPC on one member
DEADLINE_S = 5.0  # one store call, all attempts and members included
GRPC_OPTIONS: dict[str, Any] = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 3_000,
    "grpc.max_receive_message_length": 256 * 1024 * 1024,
}
RETRY_CODES = {
    rpc.StatusCode.UNAVAILABLE,
    rpc.StatusCode.DEADLINE_EXCEEDED,
    rpc.StatusCode.CANCELLED,
    rpc.StatusCode.UNKNOWN,
    rpc.StatusCode.INTERNAL,
}
LEADER = (("hasleader", "true"),)  # watches: the member must have a leader


class Transient(Exception):
    """One attempt failed in a way another attempt (maybe on another member) may not."""


class CompactedError(Exception):
    """etcd: the revision asked for was compacted."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"compacted at {revision}")
        self.revision = revision


def is_compacted(exc: rpc.AioRpcError) -> bool:
    return exc.code() == rpc.StatusCode.OUT_OF_RANGE and "compacted" in str(exc.details())


def classify(exc: BaseException) -> BaseException:
    """A gRPC failure as Transient (retry), CompactedError, or StoreError."""
    if isinstance(exc, rpc.AioRpcError):
        if is_compacted(exc):
            return CompactedError(0)
        if exc.code() in RETRY_CODES:
            return Transient(f"{exc.code().name.lower()}: {exc.details()}")
        return StoreError(f"etcd: {exc.code().name.lower()}: {exc.details()}")
    if isinstance(exc, TimeoutError | OSError | aetcd.exceptions.ClientError):
        return Transient(str(exc) or type(exc).__name__)
    return exc


class Conn:
    """Calls into etcd from any thread: `conn.call(op)` runs `await op(ambiguous)` on the
    loop, moving to the next member after a failure, until DEADLINE_S."""

    def __init__(
        self, url: EtcdUrl, attempt_s: float = ATTEMPT_TIMEOUT_S, deadline_s: float = DEADLINE_S
    ) -> None:
        self.url = url
        self.attempt_s = attempt_s
        self.deadline_s = deadline_s
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="flowkeeper-etcd", daemon=True
        )
        self._thread.start()
        self._clients: list[aetcd.Client | None] = [None] * len(url.endpoints)
        self._index = 0
        self.closed = False

    # --- members ------------------------------------------------------------
    @property
    def index(self) -> int:
        return self._index

    def endpoint(self, index: int) -> str:
        host, port = self.url.endpoints[index]
        return f"{host}:{port}"

    async def client(self, index: int | None = None) -> aetcd.Client:
        i = self._index if index is None else index
        found = self._clients[i]
        if found is None:
            host, port = self.url.endpoints[i]
            found = aetcd.Client(host, port, options=GRPC_OPTIONS)
            await found.connect()
            self._clients[i] = found
        return found

    def rotate(self, failed: int) -> None:
        """The member at `failed` did not answer: use the next one (once per failure)."""
        if self._index == failed:
            self._index = (failed + 1) % len(self.url.endpoints)

    async def kv(self) -> tuple[int, Any]:
        i = self._index
        return i, (await self.client(i)).kvstub

    # --- calls --------------------------------------------------------------
    def unavailable(self, last: str) -> StoreUnavailable:
        line = " ".join(last.split())[:200]
        return StoreUnavailable(
            f"etcd unavailable at {self.url.names()} (no member answered with a quorum "
            f"within {self.deadline_s:.0f}s): {line}"
        )

    async def run_op(self, op: Callable[[bool], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self.deadline_s
        ambiguous = False
        last = "no attempt"
        attempt = 0
        while True:
            index = self._index
            budget = min(self.attempt_s, deadline - time.monotonic())
            try:
                return await asyncio.wait_for(op(ambiguous), max(budget, 0.05))
            except TimeoutError:
                last = f"{self.endpoint(index)} did not answer within {budget:.1f}s"
            except Transient as exc:
                last = f"{self.endpoint(index)}: {exc}"
            except BaseException as exc:
                found = classify(exc)
                if not isinstance(found, Transient):
                    if found is exc:
                        raise
                    raise found from None
                last = f"{self.endpoint(index)}: {found}"
            ambiguous = True  # a write may have happened although its answer was lost
            self.rotate(index)
            attempt += 1
            pause = min(0.05 * attempt, 0.5)
            if time.monotonic() + pause + 0.05 >= deadline:
                raise self.unavailable(last)
            await asyncio.sleep(pause)

    def call(self, op: Callable[[bool], Awaitable[T]]) -> T:
        """Run `op` on the loop from another thread; StoreUnavailable past the deadline."""
        return self.submit(self.run_op(op), self.deadline_s + 2.0)

    def submit(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        if self.closed:
            coro.close()
            raise StoreError("the etcd store is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise self.unavailable("the call did not finish") from None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        if self.closed:
            return
        self.submit(self._close(), 10.0)
        self.closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()

    async def _close(self) -> None:
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        for c in self._clients:
            if c is not None:
                with contextlib.suppress(Exception):
                    await c.close()
