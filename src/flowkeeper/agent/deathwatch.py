"""Notice within a bounded time that a switch slot's ovs-vswitchd died or hung.

One thread per slot holds an OpenFlow connection to the slot's br-int management socket
and does nothing else with it. Three signs of death, whichever comes first:
- The process is exiting: the kernel names the socket's peer (SO_PEERCRED, the vswitchd
  that listens), and the thread reads that process's /proc/PID/stat every EXIT_POLL_S. The
  kernel marks a task PF_EXITING as the first step of its exit (kill -9 included), before
  it frees the memory and closes the files.
- EOF on the connection. The kernel closes a dead process's files in descending fd order,
  and each packet socket's close waits for an RCU grace period (~10-15 ms here), so when
  vswitchd opened VIF devices after this connection was made, EOF comes 100-160 ms after
  the death: the /proc check is what bounds it.
- A hung vswitchd: an echo request every ECHO_S, no reply within HUNG_S counts as dead.
After a death the thread reconnects every RETRY_S; a new connection means the slot's switch
is back (a new process).
"""

from __future__ import annotations

import logging
import os
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
EXIT_POLL_S = 0.002  # /proc/PID/stat reads: ~5 us each, about 1 % of a core per slot
PF_EXITING = 0x4  # include/linux/sched.h
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

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


def exiting(stat: bytes) -> bool:
    """Pure: does a /proc/PID/stat line say the process is exiting or gone? (Empty: the
    process was reaped.) Fields after the command name: state is the first, flags the
    seventh."""
    if not stat:
        return True
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 7:
        return True
    return fields[0] in (b"Z", b"X", b"x") or bool(int(fields[6]) & PF_EXITING)


def peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process that listens on a connected unix socket's other end."""
    try:
        pid, _uid, _gid = _PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
    except OSError:
        return None
    return pid if pid > 0 else None


class ExitCheck:
    """The peer process's /proc/PID/stat, held open and re-read (no check without a pid)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.fd: int | None = None
        if pid is not None:
            try:
                self.fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self.fd = None  # already gone: EOF will tell

    def exiting(self) -> bool:
        if self.fd is None:
            return False
        try:
            return exiting(os.pread(self.fd, 1024, 0))
        except OSError:  # ESRCH: reaped
            return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


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
        check = ExitCheck(peer_pid(sock))
        try:
            return self._hold_checked(sock, check)
        finally:
            check.close()

    def _hold_checked(self, sock: socket.socket, check: ExitCheck) -> str:
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
            poll = EXIT_POLL_S if check.fd is not None else ECHO_S
            readable, _, _ = select.select([sock], [], [], min(timeout, poll))
            if check.exiting():
                return f"is exiting (pid {check.pid}, seen in /proc)"
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
