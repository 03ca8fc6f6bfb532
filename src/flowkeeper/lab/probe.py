"""A bounded ICMP probe between two lab VMs: loss, longest gap, and a per-packet timeline.

Run inside the source VM's namespace: `python -m flowkeeper.lab.probe --dst IP ...`.
It prints one JSON object. Every run is bounded in packet count and in time.
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

MAX_COUNT = 200_000
MAX_SECONDS = 900.0
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
        longest_loss_run=longest,
        first_reply_ms=None if first is None else round((first - start) * 1000, 3),
        duration_s=round(end_time - start, 3),
        timeline=timeline,
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


def run_probe(dst: str, count: int, interval: float, grace: float) -> ProbeResult:
    """Send `count` echo requests every `interval` s, then wait `grace` s for late replies."""
    ident = os.getpid() & 0xFFFF
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    send_times: list[float] = []
    replies: dict[int, float] = {}
    start_unix = time.time()
    start = time.monotonic()
    deadline = start + min(MAX_SECONDS, count * interval + grace)
    try:
        for i in range(count):
            due = start + i * interval
            _receive_until(sock, ident, due, replies)
            now = time.monotonic()
            if now > deadline:
                break
            send_times.append(now)
            with contextlib.suppress(OSError):  # no route or buffer full: counts as lost
                sock.sendto(echo_request(ident, i), (dst, 0))
        end = time.monotonic()
        _receive_until(sock, ident, min(deadline, end + grace), replies, stop_when=len(send_times))
    finally:
        sock.close()
    result = summarize(dst, send_times, replies, interval, end + interval if send_times else end)
    result.start_unix = start_unix
    return result


def _receive_until(
    sock: socket.socket,
    ident: int,
    until: float,
    replies: dict[int, float],
    stop_when: int | None = None,
) -> None:
    while True:
        left = until - time.monotonic()
        if left <= 0 or (stop_when is not None and len(replies) >= stop_when):
            return
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return
        while True:
            try:
                packet = sock.recv(2048)
            except BlockingIOError:
                break
            index = parse_reply(packet, ident)
            if index is not None and index not in replies:
                replies[index] = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowkeeper-probe", description=__doc__)
    parser.add_argument("--dst", required=True)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--grace", type=float, default=1.0)
    parser.add_argument("--no-timeline", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= MAX_COUNT or not 0.001 <= args.interval <= 10:
        print(f"probe: count must be 1..{MAX_COUNT}, interval 0.001..10 s", file=sys.stderr)
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
    result = run_probe(args.dst, args.count, args.interval, min(args.grace, 5.0))
    print(result.to_json(with_timeline=not args.no_timeline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
