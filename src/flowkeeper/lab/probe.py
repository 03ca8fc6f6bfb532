"""A bounded ICMP probe between lab VMs: loss, longest gap, and a per-packet timeline.

Run inside the source VM's namespace, `python -m flowkeeper.lab.probe --dst IP ...`, it
prints one JSON object. Run anywhere with `--target NAMESPACE=IP` (repeated), one process
probes from each named lab namespace (a socket opened in each, lab/probenet.py) and prints
a JSON list, one object per target. Every run is bounded in packet count and in time.

Two measures of an interruption:
- `max_gap_ms`: the longest time without a reply. It includes every delay of the machine
  (a probe or switch thread not scheduled for 20 ms makes a 20 ms gap with nothing lost).
- `max_outage_ms`: the longest stretch of send time in which every probe was lost, from
  the last answered probe before the losses to the first answered one after them (an
  upper bound: the path was broken for at most that long). 0 when nothing was lost. Its
  resolution is the interval, which `--control` lets the caller change while the probe
  runs (a line `interval SECONDS` on standard input, or `interval SECONDS N` for target N
  only), e.g. 1 ms around a cut only; a line `stop` (or `stop N`) ends the sending early
  (the caller's phase is over; `--seconds` and `--count` still bound it when no line
  comes).
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import os
import struct
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

MAX_COUNT = 200_000
MAX_SECONDS = 900.0
MAX_TARGETS = 256
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
    # indexes into timeline of the probes answered more than once (once per extra reply):
    # the destination got the request twice
    duplicated: list[int] = field(default_factory=list)

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
    *,
    duplicated: Iterable[int] = (),
) -> ProbeResult:
    """Pure: turn send and reply timestamps (seconds, one clock) into a ProbeResult
    (`duplicated`: the indexes of the probes answered more than once, once per extra)."""
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
        duplicated=sorted(i for i in duplicated if 0 <= i < sent),
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


def gap_within(res: ProbeResult, start_unix: float, end_unix: float) -> float:
    """Longest time (s) inside [start_unix, end_unix] with no reply arriving: between the
    window's start, each reply's arrival in it, and the window's end. The probes must be
    sent all through the window (the cadence is part of the gap)."""
    lo, hi = start_unix - res.start_unix, end_unix - res.start_unix
    if hi <= lo:
        return 0.0
    arrivals = sorted(
        t + rtt / 1000 for t, rtt in res.timeline if rtt is not None and lo <= t + rtt / 1000 <= hi
    )
    events = [lo, *arrivals, hi]
    return max(b - a for a, b in itertools.pairwise(events))


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


@dataclass(frozen=True)
class Command:
    """A control line: `interval SECONDS [N]` or `stop [N]`, for target N (from 0) or,
    without N, for every target."""

    kind: str  # "interval" or "stop"
    interval: float | None = None
    target: int | None = None


def parse_command(line: str) -> Command | None:
    """The command of a control line, or None if the line is not one, or its interval is
    out of bounds (unknown lines are ignored: the probe never stops on its input)."""
    words = line.split()
    target: int | None = None
    if not words or words[0] not in ("interval", "stop"):
        return None
    want = 2 if words[0] == "interval" else 1
    if len(words) == want + 1:
        if not words[-1].isdigit():
            return None
        target = int(words[-1])
    elif len(words) != want:
        return None
    if words[0] == "stop":
        return Command("stop", None, target)
    try:
        value = float(words[1])
    except ValueError:
        return None
    if not MIN_INTERVAL <= value <= MAX_INTERVAL:
        return None
    return Command("interval", value, target)


def parse_target(text: str) -> tuple[str, str]:
    """`NAMESPACE=IP` of a `--target`; ValueError if it is not one, or IP is not a lab
    address."""
    ns, sep, ip = text.partition("=")
    if not sep or not ns:
        raise ValueError(f"not NAMESPACE=IP: {text!r}")
    lab_address(ip)
    return ns, ip


def lab_address(ip: str) -> str:
    """`ip` if it is in the lab's range; ValueError if not."""
    try:
        inside = ipaddress.IPv4Address(ip) in LAB_RANGE
    except ValueError:
        inside = False
    if not inside:
        raise ValueError(f"destination {ip!r} is not a lab address in {LAB_RANGE}")
    return ip


def check_bounds(count: int, interval: float, seconds: float | None) -> str | None:
    """The message for a count, interval or duration out of bounds, or None."""
    if not 1 <= count <= MAX_COUNT or not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        return f"count must be 1..{MAX_COUNT}, interval 0.001..10 s"
    if seconds is not None and not 0 < seconds <= MAX_SECONDS:
        return f"seconds must be in (0, {MAX_SECONDS:.0f}]"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowkeeper-probe", description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--dst", help="probe IP from the namespace this process runs in")
    where.add_argument(
        "--target",
        action="append",
        metavar="NAMESPACE=IP",
        help="probe IP from the named namespace (repeat: one process, a socket per target)",
    )
    parser.add_argument("--count", type=int, default=5, help="probes per target, at most")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between probes")
    parser.add_argument("--grace", type=float, default=1.0, help="seconds to wait for replies")
    parser.add_argument(
        "--seconds", type=float, help="send for this long (count still bounds the probes)"
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="read 'interval SECONDS [N]' and 'stop [N]' lines on stdin",
    )
    parser.add_argument("--no-timeline", action="store_true", help="leave out per-probe times")
    args = parser.parse_args(argv)
    bad = check_bounds(args.count, args.interval, args.seconds)
    try:
        pairs = [parse_target(t) for t in args.target or []]
        if args.dst is not None:
            lab_address(args.dst)
    except ValueError as exc:
        bad = bad or str(exc)
    if bad is None and len(pairs) > MAX_TARGETS:
        bad = f"at most {MAX_TARGETS} targets"
    if bad:
        print(f"probe: {bad}", file=sys.stderr)
        return 2
    from flowkeeper.lab import probenet  # its sockets and loop (it imports this module)

    if args.dst is not None and not probenet.in_named_netns():
        print(
            "probe: runs only inside a lab namespace (`ip netns add`), never in the "
            "machine's own, whose routes lead off the machine",
            file=sys.stderr,
        )
        return 2
    try:
        sockets = (
            [(args.dst, probenet.own_socket())]
            if args.dst is not None
            else [(ip, probenet.netns_socket(ns)) for ns, ip in pairs]
        )
    except probenet.ProbeSetupError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    base = os.getpid()
    targets = [
        probenet.Target(ip, sock, (base + n) & 0xFFFF, args.interval)
        for n, (ip, sock) in enumerate(sockets)
    ]
    results = probenet.run_targets(
        targets,
        args.count,
        min(args.grace, 5.0),
        seconds=args.seconds,
        control=sys.stdin.fileno() if args.control else None,
    )
    timeline = not args.no_timeline
    if args.dst is not None:
        print(results[0].to_json(with_timeline=timeline))
    else:
        print("[" + ",".join(r.to_json(with_timeline=timeline) for r in results) + "]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
