"""A real flowkeeper server on 127.0.0.1 (free port), run in a thread with its own event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowkeeper.client import Client
from flowkeeper.server.app import RunningServer, ServerConfig, start

TOKEN = "test-token-0123456789"


@dataclass
class LiveServer:
    url: str
    token: str
    db: Path
    running: RunningServer

    def client(self, token: str | None = TOKEN) -> Client:
        return Client(self.url, token)

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a client can see of the store, to check a bad request changed nothing."""
        c = self.client()
        ports = c.list_ports()
        return (c.list_networks(), ports, c.list_hosts(), c.revision())


class ServerThread:
    def __init__(self, config: ServerConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running = self.call(start(config))

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=20)

    def stop(self) -> None:
        self.call(self.running.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


ServerFactory = Callable[..., LiveServer]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    made: list[ServerThread] = []

    def make(
        keep_events: int = 100_000, heartbeat_s: float = 5.0, name: str = "s", **extra: Any
    ) -> LiveServer:
        db = tmp_path / name / "fk.db"
        config = ServerConfig(
            listen="127.0.0.1:0",
            store=f"sqlite:{db}",
            keep_events=keep_events,
            heartbeat_s=heartbeat_s,
            env={"FLOWKEEPER_TOKEN": TOKEN},
            **extra,
        )
        thread = ServerThread(config)
        made.append(thread)
        return LiveServer(thread.running.url, TOKEN, db, thread.running)

    yield make
    for thread in made:
        thread.stop()


@pytest.fixture
def server(server_factory: ServerFactory) -> LiveServer:
    return server_factory()
