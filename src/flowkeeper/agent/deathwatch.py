"""Notice within a bounded time that a switch slot's ovs-vswitchd died or hung.

One thread per slot holds an OpenFlow connection to the slot's br-int management socket
and does nothing else with it. When ovs-vswitchd dies (kill -9 included) the kernel closes
the socket, so the thread reads EOF at once. A hung vswitchd is caught by an echo request
every ECHO_S: no reply within HUNG_S counts as dead. After a death the thread reconnects
every RETRY_S; a new connection means the slot's switch is back (a new process).
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

log = logging.getLogger("flowkeeper.agent")

OFP_VERSION = 0x06  # OpenFlow 1.5
HELLO, ECHO_REQUEST, ECHO_REPLY = 0, 2, 3
HEADER = struct.Struct("!BBHI")
ECHO_S = 0.5
HUNG_S = 1.5
RETRY_S = 0.1

Callback = Callable[[str, bool, float], None]  # (slot, alive, monotonic time seen)


def header(msg_type: int, xid: int, body: bytes = b"") -> bytes:
    return HEADER.pack(OFP_VERSION, msg_type, HEADER.size + len(body), xid) + body


def messages(buffer: bytearray) -> list[tuple[int, int, bytes]]:
    """Whole messages at the front of `buffer` (removed from it): (type, xid, body)."""
    out = []
    while len(buffer) >= HEADER.size:
        _version, msg_type, length, xid = HEADER.unpack_from(buffer)
        if length < HEADER.size:
            raise ValueError(f"bad OpenFlow length {length}")
        if len(buffer) < length:
            break
        out.append((msg_type, xid, bytes(buffer[HEADER.size : length])))
        del buffer[:length]
    return out


class DeathWatch:
    """Watch one slot's switch; `callback(slot, alive, when)` on every change of state."""

    def __init__(self, slot: str, mgmt_socket: str, callback: Callback) -> None:
        self.slot = slot
        self.path = mgmt_socket
        self.callback = callback
        self.alive: bool | None = None  # unknown until the first connect or failure
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"deathwatch-{slot}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * ECHO_S)

    def _set(self, alive: bool) -> None:
        if alive != self.alive:
            self.alive = alive
            self.callback(self.slot, alive, time.monotonic())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(HUNG_S)
                sock.connect(self.path)
            except OSError:
                sock.close()
                self._set(False)
                self._stop.wait(RETRY_S)
                continue
            try:
                why = self._hold(sock)
            except (OSError, ValueError) as exc:  # reset while connecting, a bad frame
                why = f"connection lost ({exc})"
            except Exception as exc:  # the watch must outlive any one failure
                log.exception("slot %s: death watch", self.slot)
                why = f"watch failed ({exc})"
            finally:
                sock.close()
            if self._stop.is_set():
                break
            if self.alive:
                log.warning("slot %s: ovs-vswitchd %s", self.slot, why)
            self._set(False)
            self._stop.wait(RETRY_S)

    def _hold(self, sock: socket.socket) -> str:
        """Until the switch goes away: the reason it is taken for dead."""
        sock.sendall(header(HELLO, 1))
        # Alive only once the switch speaks: a dying vswitchd's socket can still accept a
        # connection for a moment, but it sends no HELLO.
        buffer = bytearray()
        xid = 1
        waiting: float | None = None  # when the outstanding echo was sent
        next_echo = time.monotonic() + ECHO_S
        while not self._stop.is_set():
            now = time.monotonic()
            if waiting is not None and now - waiting > HUNG_S:
                return f"answered no echo within {HUNG_S:.1f} s (hung)"
            if waiting is None and now >= next_echo:
                xid = xid % 0xFFFFFFF0 + 2
                try:
                    sock.sendall(header(ECHO_REQUEST, xid))
                except OSError as exc:
                    return f"connection lost ({exc})"
                waiting = now
            timeout = max(0.0, min(next_echo, (waiting or now) + HUNG_S) - time.monotonic())
            readable, _, _ = select.select([sock], [], [], min(timeout, ECHO_S))
            if not readable:
                continue
            try:
                data = sock.recv(65536)
            except OSError as exc:
                return f"connection lost ({exc})"
            if not data:
                return "closed its OpenFlow connection (exited)"
            buffer += data
            try:
                for msg_type, msg_xid, body in messages(buffer):
                    if msg_type == HELLO:
                        self._set(True)
                    elif msg_type == ECHO_REQUEST:
                        sock.sendall(header(ECHO_REPLY, msg_xid, body))
                    elif msg_type == ECHO_REPLY:
                        waiting = None
                        next_echo = time.monotonic() + ECHO_S
            except (ValueError, OSError) as exc:
                return f"connection broken ({exc})"
        return "no longer watched"
