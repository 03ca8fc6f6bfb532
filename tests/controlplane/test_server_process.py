"""`flowkeeper server` as a real process: token file, private files, restart, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkeeper.client import AsyncClient, Client, ServerUnavailable


class Proc:
    """A `flowkeeper server` process; `url` reaches it on 127.0.0.1 whatever it listens on."""

    def __init__(self, db: Path, *extra: str, listen: str = "127.0.0.1:0") -> None:
        argv = [
            sys.executable,
            "-m",
            "flowkeeper",
            "server",
            "--listen",
            listen,
            "--store",
            f"sqlite:{db}",
            "--heartbeat",
            "0.2",
            *extra,
        ]
        env = {k: v for k, v in os.environ.items() if k != "FLOWKEEPER_TOKEN"}
        self.p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.p.stderr is not None
        self.lines: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.p.stderr.readline()
            assert line, f"server exited: {self.lines}"
            self.lines.append(line)
            m = re.search(r"listening on (https?)://[0-9.]+:(\d+)", line)
            if m:
                self.url = f"{m.group(1)}://127.0.0.1:{m.group(2)}"
                self.lines.append(self.p.stderr.readline())  # the token line
                return
        raise AssertionError("server did not start")

    def stop(self) -> tuple[int, float]:
        started = time.monotonic()
        self.p.send_signal(signal.SIGTERM)
        code = self.p.wait(timeout=10)
        assert self.p.stderr is not None
        self.lines += self.p.stderr.readlines()
        return code, time.monotonic() - started


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    made: list[Proc] = []
    yield made
    for proc in made:
        if proc.p.poll() is None:
            proc.p.kill()
            proc.p.wait()


def test_server_process_lifecycle(tmp_path: Path, procs: list[Proc]) -> None:
    db = tmp_path / "state" / "fk.db"
    first = Proc(db)
    procs.append(first)
    token_file = db.parent / "token"
    assert f"admin token from {token_file} (generated)" in "".join(first.lines)
    for f in (db, token_file, db.parent):
        mode = stat.S_IMODE(f.stat().st_mode)
        assert mode == (0o700 if f.is_dir() else 0o600), (f, oct(mode))
    token = token_file.read_text().strip()
    c = Client(first.url, token)
    net = c.create_network("net1", "vxlan", segmentation_id=1001, cidr="198.19.1.0/24")
    c.create_port(net.id, "h1", "fa:16:3e:00:00:01", ["198.19.1.10"])

    async def watch_until_shutdown() -> str:
        async with AsyncClient(first.url, token) as ac:
            try:
                async for e in ac.watch("h1", 0):
                    if e.kind == "heartbeat":
                        first.p.send_signal(signal.SIGTERM)
            except ServerUnavailable as exc:
                return str(exc)
        return "no error"

    started = time.monotonic()
    message = asyncio.run(watch_until_shutdown())
    assert "ended the watch stream" in message or "broke" in message
    assert first.p.wait(timeout=10) == 0
    assert time.monotonic() - started < 5, "graceful shutdown took too long"

    second = Proc(db)  # same store: same token, same data, revisions continue
    procs.append(second)
    assert "(generated)" not in "".join(second.lines)
    c = Client(second.url, token)
    # network, the project's default security group (made for the port), port
    assert c.revision() == 3 and [n.name for n in c.list_networks()] == ["net1"]
    assert c.create_network("net2", "gre").revision == 4
    code, took = second.stop()
    assert code == 0 and took < 5
    assert "stopped" in "".join(second.lines)


def test_token_file_option(tmp_path: Path, procs: list[Proc]) -> None:
    tok = tmp_path / "tok"
    tok.write_text("from-a-file\n")
    proc = Proc(tmp_path / "fk.db", "--token-file", str(tok))
    procs.append(proc)
    assert not (tmp_path / "token").exists()
    Client(proc.url, "from-a-file").create_network("net1", "vxlan")
    assert proc.stop()[0] == 0
