"""The probe's sockets and its sending loop: one process probes any number of VM pairs.

Each target has a raw ICMP socket of its own, opened inside the source VM's named network
namespace (`ip netns add`, as the lab's are): the process enters that namespace with
setns(2) only to create the socket, then returns to its own. A socket stays in the
namespace it was created in, so one process sends from every VM with no process per VM
(40 probe processes alone were a fifth of this 2-core machine). Nothing is ever sent from
the machine's own namespace, nor from a name that stands for it.

The loop wakes when the earliest target is due, sends every due target's probe, and reads
replies in between; targets with the same interval share their wake-ups.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import select
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from flowkeeper.lab.probe import (
    MAX_SECONDS,
    Command,
    ProbeResult,
    echo_request,
    parse_command,
    parse_reply,
    summarize,
)

RUN_NETNS = "/run/netns"
CLONE_NEWNET = 0x40000000
_NS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ProbeSetupError(Exception):
    """A namespace that is not a lab's, or a socket that could not be opened in it."""


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def in_named_netns(run_netns: str = RUN_NETNS) -> bool:
    """Whether this process runs in a named network namespace (`ip netns add`, as the
    lab's are), not in the machine's own, whose routes lead off the machine."""
    try:
        mine = os.stat("/proc/self/ns/net")
        named = [os.stat(entry) for entry in Path(run_netns).iterdir()]
    except OSError:
        return False  # cannot tell: do not send
    return any(_same(n, mine) for n in named)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _own_namespaces() -> list[os.stat_result]:
    """This process's network namespace and, where it may be read, PID 1's."""
    own = [os.stat("/proc/self/ns/net")]
    with contextlib.suppress(OSError):  # PID 1 may be out of reach (ptrace rules)
        own.append(os.stat("/proc/1/ns/net"))
    return own


def netns_socket(name: str, run_netns: str = RUN_NETNS) -> socket.socket:
    """A non-blocking raw ICMP socket in the named namespace `name`; this thread is back in
    its own namespace when it returns. ProbeSetupError if `name` is not a named namespace,
    or is the machine's own (PID 1's) or this process's."""
    if not _NS_NAME.match(name):
        raise ProbeSetupError(f"probe: not a namespace name: {name!r}")
    path = Path(run_netns) / name
    try:
        there = os.stat(path)
    except OSError as exc:
        raise ProbeSetupError(f"probe: no namespace {name!r} under {run_netns}: {exc}") from None
    if any(_same(there, own) for own in _own_namespaces()):
        raise ProbeSetupError(f"probe: namespace {name!r} is the machine's own: not a lab's")
    home_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        ns_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(ns_fd)
        except OSError as exc:
            raise ProbeSetupError(f"probe: cannot enter namespace {name!r}: {exc}") from None
        finally:
            os.close(ns_fd)
        try:
            if not _same(os.stat("/proc/thread-self/ns/net"), there):
                raise ProbeSetupError(f"probe: entering {name!r} did not take")
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        finally:
            try:
                _setns(home_fd)
            except OSError:  # cannot go home: stop before anything else runs here
                os._exit(3)
    finally:
        os.close(home_fd)
    sock.setblocking(False)
    return sock


def own_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    return sock


@dataclass
class Target:
    """One probed destination: its socket, cadence and what was sent and answered."""

    dst: str
    sock: socket.socket
    ident: int
    interval: float
    due: float = 0.0
    done: bool = False
    send_times: list[float] = field(default_factory=list)
    replies: dict[int, float] = field(default_factory=dict)
    duplicated: list[int] = field(default_factory=list)  # indexes answered once more

    def send(self, now: float) -> None:
        index = len(self.send_times)
        self.send_times.append(now)
        with contextlib.suppress(OSError):  # no route or buffer full: counts as lost
            self.sock.sendto(echo_request(self.ident, index), (self.dst, 0))
        # keep the cadence; after a stall, or when the interval was just changed, count
        # the next interval from now (no burst of catch-up probes)
        step = self.interval
        self.due = self.due + step if 0 <= now - self.due <= step else now + step

    def drain(self) -> None:
        while True:
            try:
                packet = self.sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            index = parse_reply(packet, self.ident)
            if index is None or index >= len(self.send_times):
                continue
            if index in self.replies:
                self.duplicated.append(index)
            else:
                self.replies[index] = time.monotonic()


def run_targets(
    targets: list[Target],
    count: int,
    grace: float,
    *,
    seconds: float | None = None,
    control: int | None = None,
) -> list[ProbeResult]:
    """Probe every target up to `count` times at its interval (for at most `seconds` s
    when given), then wait `grace` s for late replies. With `control`, command lines read
    from it (`interval S [N]`, `stop [N]`) change a target's interval or end its sending."""
    start_unix = time.time()
    start = time.monotonic()
    longest = max((t.interval for t in targets), default=0.0)
    span = count * longest if seconds is None else seconds
    stop_sending = start + min(MAX_SECONDS, span)
    for t in targets:
        t.due = start
    by_fd = {t.sock.fileno(): t for t in targets}
    try:
        while True:
            live = [t for t in targets if not t.done]
            if not live:
                break
            control = _wait(by_fd, min(t.due for t in live), targets, control)
            now = time.monotonic()
            if now > stop_sending:
                break
            for t in live:
                if not t.done and t.due <= now:
                    t.send(now)
                    t.done = len(t.send_times) >= count
        end = time.monotonic()
        deadline = min(start + MAX_SECONDS + grace, end + grace)
        while time.monotonic() < deadline and any(
            len(t.replies) < len(t.send_times) for t in targets
        ):
            _wait(by_fd, deadline, targets, None)
    finally:
        for t in targets:
            t.sock.close()
    results = []
    for t in targets:
        last = end + t.interval if t.send_times else end
        res = summarize(t.dst, t.send_times, t.replies, t.interval, last, duplicated=t.duplicated)
        # every target's timeline counts from its own first send
        res.start_unix = start_unix + ((t.send_times[0] - start) if t.send_times else 0.0)
        results.append(res)
    return results


def _wait(
    by_fd: dict[int, Target], until: float, targets: list[Target], control: int | None
) -> int | None:
    """Read replies (and commands) until `until`, or until a command may make a target due
    now. Returns the control fd, or None once the caller closed its end."""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return control
        watched = [*by_fd] if control is None else [*by_fd, control]
        ready, _, _ = select.select(watched, [], [], left)
        if not ready:
            return control
        for fd in ready:
            if fd in by_fd:
                by_fd[fd].drain()
        if control is not None and control in ready:
            data = os.read(control, 4096)
            if not data:  # the caller closed its end: no more commands
                return None
            lines = data.decode(errors="replace").splitlines()
            commands = [c for c in map(parse_command, lines) if c is not None]
            if commands:
                apply_commands(commands, targets, time.monotonic())
                return control


def apply_commands(commands: list[Command], targets: list[Target], now: float) -> None:
    """Change intervals (the changed target sends next at once) or end targets' sending.
    A command naming a target that is not there is ignored."""
    for cmd in commands:
        chosen = targets if cmd.target is None else targets[cmd.target : cmd.target + 1]
        for t in chosen:
            if cmd.kind == "stop":
                t.done = True
            elif cmd.interval is not None:
                t.interval = cmd.interval
                t.due = now
