"""A bounded ICMP probe between two lab VMs: loss, longest gap, and a per-packet timeline.

Run inside the source VM's namespace: `python -m flowkeeper.lab.probe --dst IP ...`.
It prints one JSON object. Every run is bounded in packet count and in time.

Two measures of an interruption:
- `max_gap_ms`: the longest time without a reply. It includes every delay of the machine
  (a probe or switch thread not scheduled for 20 ms makes a 20 ms gap with nothing lost).
- `max_outage_ms`: the longest stretch of send time in which every probe was lost, from
  the last answered probe before the losses to the first answered one after them (an
  upper bound: the path was broken for at most that long). 0 when nothing was lost. Its
  resolution is the interval, which `--control` lets the caller change while the probe
  runs (a line `interval SECONDS` on standard input), e.g. 1 ms around a cut only; a
  line `stop` ends the sending early (the caller's phase is over; `--seconds` and
  `--count` still bound it when no line comes).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import itertools
import json
import os
import select
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MAX_COUNT = 200_000
MAX_SECONDS = 900.0
MIN_INTERVAL, MAX_INTERVAL = 0.001, 10.0
_ECHO_REQUEST, _ECHO_REPLY = 8, 0
LAB_RANGE = ipaddress.IPv4Network("198.18.0.0/15")  # the only addresses a probe may target


@dataclass
class ProbeResult:
    dst: str
    sent: int
    received: int
    lost: int
    interval_ms: float
    max_gap_ms: float  # longest time without a reply while probing
    max_outage_ms: float  # longest send-time span of lost probes (see the module doc)
    longest_loss_run: int  # most consecutive probes without a reply
    first_reply_ms: float | None  # from the first send to the first reply
    duration_s: float
    start_unix: float = 0.0
    timeline: list[tuple[float, float | None]] = field(default_factory=list)  # (send s, rtt ms)

    def to_json(self, with_timeline: bool = True) -> str:
        data = asdict(self)
        if not with_timeline:
            data.pop("timeline")
        return json.dumps(data)


def summarize(
    dst: str,
    send_times: list[float],
    reply_times: dict[int, float],
    interval: float,
    end_time: float,
) -> ProbeResult:
    """Pure: turn send and reply timestamps (seconds, one clock) into a ProbeResult."""
    sent = len(send_times)
    received = sum(1 for i in range(sent) if i in reply_times)
    start = send_times[0] if send_times else end_time
    events = [start, *sorted(reply_times[i] for i in range(sent) if i in reply_times)]
    # The probe window closes one interval after the last send.
    events.append(max(end_time, events[-1]))
    max_gap = max((b - a for a, b in itertools.pairwise(events)), default=0.0)
    run = longest = 0
    for i in range(sent):
        run = 0 if i in reply_times else run + 1
        longest = max(longest, run)
    first = min((reply_times[i] for i in range(sent) if i in reply_times), default=None)
    outage = longest_outage(send_times, [i in reply_times for i in range(sent)], end_time)
    timeline = [
        (round(t - start, 6), round((reply_times[i] - t) * 1000, 3) if i in reply_times else None)
        for i, t in enumerate(send_times)
    ]
    return ProbeResult(
        dst=dst,
        sent=sent,
        received=received,
        lost=sent - received,
        interval_ms=interval * 1000,
        max_gap_ms=round(max_gap * 1000, 3),
        max_outage_ms=round(outage * 1000, 3),
        longest_loss_run=longest,
        first_reply_ms=None if first is None else round((first - start) * 1000, 3),
        duration_s=round(end_time - start, 3),
        timeline=timeline,
    )


def outages(
    send_times: list[float], answered: list[bool], end_time: float
) -> list[tuple[float, float]]:
    """Pure: every run of lost probes as (from, to) in send time: from the last answered
    probe before the run (or the first send) to the first answered one after it (or
    `end_time`)."""
    spans: list[tuple[float, float]] = []
    last_ok: float | None = None
    lost_from: float | None = None
    for sent, ok in zip(send_times, answered, strict=True):
        if ok:
            if lost_from is not None:
                spans.append((lost_from, sent))
                lost_from = None
            last_ok = sent
        elif lost_from is None:
            lost_from = last_ok if last_ok is not None else sent
    if lost_from is not None:
        spans.append((lost_from, max(end_time, lost_from)))
    return spans


def longest_outage(send_times: list[float], answered: list[bool], end_time: float) -> float:
    return max((b - a for a, b in outages(send_times, answered, end_time)), default=0.0)


def outage_within(res: ProbeResult, start_unix: float, end_unix: float) -> float:
    """Longest outage (s) of a probe's timeline that overlaps [start_unix, end_unix]."""
    offsets = [t for t, _rtt in res.timeline]
    answered = [rtt is not None for _t, rtt in res.timeline]
    end = res.duration_s if res.duration_s else (offsets[-1] if offsets else 0.0)
    lo, hi = start_unix - res.start_unix, end_unix - res.start_unix
    return max(
        (b - a for a, b in outages(offsets, answered, end) if b >= lo and a <= hi),
        default=0.0,
    )


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, index: int) -> bytes:
    payload = struct.pack("!Q", index) + b"flowkeeper-probe"
    header = struct.pack("!BBHHH", _ECHO_REQUEST, 0, 0, ident, index & 0xFFFF)
    csum = checksum(header + payload)
    return struct.pack("!BBHHH", _ECHO_REQUEST, 0, csum, ident, index & 0xFFFF) + payload


def parse_reply(packet: bytes, ident: int) -> int | None:
    """Index of our echo reply in a raw IPv4 packet, or None if it is something else."""
    if len(packet) < 20:
        return None
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if len(icmp) < 16:
        return None
    kind, _code, _csum, rid, _seq = struct.unpack("!BBHHH", icmp[:8])
    if kind != _ECHO_REPLY or rid != ident:
        return None
    return int(struct.unpack("!Q", icmp[8:16])[0])


@dataclass
class Cadence:
    """The sending interval, as control lines change it, and whether `stop` was asked."""

    interval: float
    stop: bool = False


def parse_control(line: str) -> float | None:
    """The interval asked for by a control line (`interval SECONDS`), or None if the line
    is not one (unknown lines are ignored: the probe never stops on its input)."""
    words = line.split()
    if len(words) != 2 or words[0] != "interval":
        return None
    try:
        value = float(words[1])
    except ValueError:
        return None
    return value if MIN_INTERVAL <= value <= MAX_INTERVAL else None


def run_probe(
    dst: str,
    count: int,
    interval: float,
    grace: float,
    *,
    seconds: float | None = None,
    control: int | None = None,
) -> ProbeResult:
    """Send up to `count` echo requests every `interval` s (for at most `seconds` s when
    given), then wait `grace` s for late replies. With `control`, a line `interval S` read
    from it changes the interval from the next probe on."""
    ident = os.getpid() & 0xFFFF
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    send_times: list[float] = []
    replies: dict[int, float] = {}
    start_unix = time.time()
    start = time.monotonic()
    span = count * interval if seconds is None else seconds
    stop_sending = start + min(MAX_SECONDS, span)
    deadline = start + min(MAX_SECONDS, span + grace)
    step = Cadence(interval)
    due = start
    try:
        for i in range(count):
            _receive_until(sock, ident, due, replies, control=control, step=step)
            now = time.monotonic()
            if now > stop_sending or step.stop:
                break
            send_times.append(now)
            with contextlib.suppress(OSError):  # no route or buffer full: counts as lost
                sock.sendto(echo_request(ident, i), (dst, 0))
            # keep the cadence; after a stall, or when the interval was just changed, count
            # the next interval from now (no burst of catch-up probes)
            due = due + step.interval if 0 <= now - due <= step.interval else now + step.interval
        end = time.monotonic()
        _receive_until(sock, ident, min(deadline, end + grace), replies, stop_when=len(send_times))
    finally:
        sock.close()
    last = end + step.interval if send_times else end
    result = summarize(dst, send_times, replies, step.interval, last)
    result.start_unix = start_unix
    return result


def _receive_until(
    sock: socket.socket,
    ident: int,
    until: float,
    replies: dict[int, float],
    *,
    stop_when: int | None = None,
    control: int | None = None,
    step: Cadence | None = None,
) -> None:
    watched: list[Any] = [sock] if control is None else [sock, control]
    while True:
        left = until - time.monotonic()
        if left <= 0 or (stop_when is not None and len(replies) >= stop_when):
            return
        ready, _, _ = select.select(watched, [], [], left)
        if not ready:
            return
        if control is not None and control in ready:
            data = os.read(control, 4096)
            if not data:  # the caller closed its end: no more changes
                watched = [sock]
            lines = data.decode(errors="replace").splitlines()
            valid = [a for a in map(parse_control, lines) if a is not None]
            if step is not None and any(line.strip() == "stop" for line in lines):
                step.stop = True
                return
            if valid and step is not None:
                step.interval = valid[-1]
                return  # send the next probe now, at the new interval
        if sock not in ready:
            continue
        while True:
            try:
                packet = sock.recv(2048)
            except BlockingIOError:
                break
            index = parse_reply(packet, ident)
            if index is not None and index not in replies:
                replies[index] = time.monotonic()


def in_named_netns(run_netns: str = "/run/netns") -> bool:
    """Whether this process runs in a named network namespace (`ip netns add`, as the
    lab's are), not in the machine's own, whose routes lead off the machine."""
    try:
        mine = os.stat("/proc/self/ns/net")
        named = [os.stat(entry) for entry in Path(run_netns).iterdir()]
    except OSError:
        return False  # cannot tell: do not send
    return any((n.st_dev, n.st_ino) == (mine.st_dev, mine.st_ino) for n in named)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowkeeper-probe", description=__doc__)
    parser.add_argument("--dst", required=True)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--grace", type=float, default=1.0)
    parser.add_argument(
        "--seconds", type=float, help="send for this long (count still bounds the probes)"
    )
    parser.add_argument(
        "--control", action="store_true", help="read 'interval SECONDS' and 'stop' lines on stdin"
    )
    parser.add_argument("--no-timeline", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= MAX_COUNT or not MIN_INTERVAL <= args.interval <= MAX_INTERVAL:
        print(f"probe: count must be 1..{MAX_COUNT}, interval 0.001..10 s", file=sys.stderr)
        return 2
    if args.seconds is not None and not 0 < args.seconds <= MAX_SECONDS:
        print(f"probe: seconds must be in (0, {MAX_SECONDS:.0f}]", file=sys.stderr)
        return 2
    try:
        inside = ipaddress.IPv4Address(args.dst) in LAB_RANGE
    except ValueError:
        inside = False
    if not inside:
        print(
            f"probe: destination {args.dst!r} is not a lab address in {LAB_RANGE}", file=sys.stderr
        )
        return 2
    if not in_named_netns():
        print(
            "probe: runs only inside a lab namespace (`ip netns add`), never in the "
            "machine's own, whose routes lead off the machine",
            file=sys.stderr,
        )
        return 2
    result = run_probe(
        args.dst,
        args.count,
        args.interval,
        min(args.grace, 5.0),
        seconds=args.seconds,
        control=sys.stdin.fileno() if args.control else None,
    )
    print(result.to_json(with_timeline=not args.no_timeline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
