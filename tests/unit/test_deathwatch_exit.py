"""The death watch's exit check: /proc/PID/stat parsing and the peer of a unix socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from flowkeeper.agent.deathwatch import ExitCheck, exiting, peer_pid

ALIVE = b"4242 (ovs-vswitchd) S 1 4242 4242 0 -1 4194560 2300 0 0 0 12 8 0 0 20 0 5 0"
DYING = b"4242 (ovs-vswitchd) R 1 4242 4242 0 -1 4194564 2300 0 0 0 12 8 0 0 20 0 5 0"
ZOMBIE = b"4242 (ovs-vswitchd) Z 1 4242 4242 0 -1 4227332 2300 0 0 0 12 8 0 0 20 0 0 0"


def test_pf_exiting_or_a_zombie_or_nothing_is_exiting() -> None:
    assert not exiting(ALIVE)
    assert exiting(DYING)  # flags 0x400104: PF_EXITING
    assert exiting(ZOMBIE)
    assert exiting(b"")
    # a command name with spaces and parentheses does not shift the fields
    assert not exiting(b"7 (a) b (c)) S 1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0")


def test_a_process_killed_is_seen_exiting_before_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    check = ExitCheck(child.pid)
    try:
        assert not check.exiting()
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not check.exiting() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert check.exiting()
    finally:
        child.kill()
        child.wait()
        check.close()
    assert check.fd is None and not check.exiting()  # closed: no check


def test_the_peer_of_a_unix_socket_is_the_process_that_listens() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mgmt")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(1)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            client.connect(path)
            assert peer_pid(client) == os.getpid()
        finally:
            client.close()
            server.close()
    assert ExitCheck(None).exiting() is False
