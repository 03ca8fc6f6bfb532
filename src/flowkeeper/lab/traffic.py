"""Bounded TCP, UDP and raw-frame tools run inside lab VM namespaces; each prints one JSON.

`python -m flowkeeper.lab.traffic COMMAND ...`:

- `listen`: accept TCP connections on a port (and close them) until a deadline.
- `connect`: one TCP connect: "connected", "refused" (an RST came back) or "dropped"
  (no answer within the timeout: a firewall dropped the SYN).
- `stream-server` / `stream-client`: one long-lived TCP connection. The client sends a
  counted byte sequence (byte i is i mod 251) at a steady rate for N seconds, then
  half-closes; the server checks every byte, answers with the count it received and
  closes. Both report bytes, sequence errors and resets; both are bounded in time.
- `udp-count`: count UDP datagrams that carry this tool's marker, by source address.
- `spoof-send`: send UDP datagrams in raw Ethernet frames with any source MAC and IP
  (AF_PACKET), to check anti-spoofing.

Only lab addresses (198.18.0.0/15) may be targeted; every run is capped at MAX_SECONDS.
`--ready PATH` (servers): the file is written once the socket listens.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import select
import socket
import struct
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowkeeper.lab import probe
from flowkeeper.lab.probe import checksum

MAX_SECONDS = 600.0
MAX_RATE = 50_000_000  # bytes per second
MAX_COUNT = 100_000
SEQ_MOD = 251  # byte i of a stream is i % 251: a prime, so no chunk size aligns with it
MARKER = b"flowkeeper-udp"
CHUNK = 1024
TICK_S = 0.01
SPOOF_SOURCE_PORT = 40000

Result = dict[str, Any]


class UsageError(ValueError):
    pass


def lab_address(ip: str) -> str:
    try:
        return probe.lab_address(ip)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def seconds(value: float) -> float:
    if not 0 < value <= MAX_SECONDS:
        raise UsageError(f"a duration must be in (0, {MAX_SECONDS:.0f}] s, got {value}")
    return value


# --- the counted byte sequence (pure) ---------------------------------------------
def sequence(offset: int, length: int) -> bytes:
    """Bytes offset..offset+length-1 of the stream."""
    start = offset % SEQ_MOD
    period = bytes(range(SEQ_MOD))
    reps = (start + length) // SEQ_MOD + 1
    return (period * reps)[start : start + length]


def sequence_errors(offset: int, data: bytes) -> int:
    """How many bytes of `data` (starting at stream offset `offset`) are not the sequence."""
    want = sequence(offset, len(data))
    if want == data:
        return 0
    return sum(1 for a, b in zip(want, data, strict=True) if a != b)


# --- TCP --------------------------------------------------------------------------
def _listener(port: int, ready: str | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))  # noqa: S104 - inside a lab VM namespace
    sock.listen(64)
    if ready:
        Path(ready).write_text(str(os.getpid()))
    return sock


def listen(port: int, duration: float, ready: str | None) -> Result:
    """Accept connections (closing each) until `duration` s have passed."""
    sock = _listener(port, ready)
    peers: list[str] = []
    deadline = time.monotonic() + duration
    with sock:
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], left)
            if readable:
                conn, addr = sock.accept()
                conn.close()
                peers.append(str(addr[0]))
    return {"accepted": len(peers), "peers": sorted(set(peers))}


def connect(dst: str, port: int, timeout: float) -> Result:
    """One TCP connect and its verdict."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    t0 = time.monotonic()
    try:
        sock.connect((dst, port))
        verdict = "connected"
    except ConnectionRefusedError:
        verdict = "refused"
    except TimeoutError:
        verdict = "dropped"
    except OSError as exc:
        verdict = {errno.EHOSTUNREACH: "unreachable", errno.ENETUNREACH: "unreachable"}.get(
            exc.errno or 0, f"error: {exc}"
        )
    finally:
        sock.close()
    return {"verdict": verdict, "dst": dst, "port": port, "ms": _ms(time.monotonic() - t0)}


def _ms(s: float) -> float:
    return round(s * 1000, 3)


def stream_server(port: int, duration: float, ready: str | None) -> Result:
    """Take one stream, check it byte by byte, send back the count received."""
    sock = _listener(port, ready)
    out: Result = {
        "connected": False,
        "received": 0,
        "sequence_errors": 0,
        "resets": 0,
        "eof": False,
        "peer": "",
        "peer_port": 0,
    }
    deadline = time.monotonic() + duration
    with sock:
        readable, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            return out
        conn, addr = sock.accept()
    out["connected"], out["peer"], out["peer_port"] = True, str(addr[0]), int(addr[1])
    with conn:
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([conn], [], [], left)
            if not readable:
                break
            try:
                data = conn.recv(65536)
            except ConnectionResetError:
                out["resets"] += 1
                break
            if not data:
                out["eof"] = True
                with contextlib.suppress(OSError):
                    conn.sendall(struct.pack("!Q", out["received"]))
                break
            out["sequence_errors"] += sequence_errors(out["received"], data)
            out["received"] += len(data)
    return out


def _unacked(sock: socket.socket) -> int:
    """Bytes in the socket's send queue: sent by us but not yet acknowledged by the peer."""
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", raw)[0])


def stream_client(
    dst: str,
    port: int,
    *,
    duration: float,
    rate: int,
    grace: float,
    clock: Callable[[], float] = time.monotonic,
) -> Result:
    """Send the counted sequence at `rate` bytes/s for `duration` s, half-close, and wait
    up to `grace` s for the server's count. `acked` is what the peer's TCP acknowledged;
    `max_stall_s` the longest time acked did not grow while it had bytes to acknowledge."""
    out: Result = {
        "connected": False,
        "sent": 0,
        "acked": 0,
        "server_count": None,
        "resets": 0,
        "error": "",
        "max_stall_s": 0.0,
    }
    try:
        sock = socket.create_connection((dst, port), timeout=min(grace, 10.0))
    except OSError as exc:
        out["error"] = f"connect: {exc}"
        return out
    out["connected"] = True
    sock.setblocking(False)
    start = clock()
    end = start + duration
    last_acked, last_progress = 0, start

    def progress(now: float) -> None:
        nonlocal last_acked, last_progress
        acked = out["sent"] - _unacked(sock)
        if acked > last_acked or acked == out["sent"]:
            last_acked, last_progress = acked, now
        out["acked"] = acked
        out["max_stall_s"] = max(out["max_stall_s"], round(now - last_progress, 3))

    with sock:
        try:
            while (now := clock()) < end:
                due = int((now - start) * rate) - out["sent"]
                while due > 0:
                    chunk = sequence(out["sent"], min(due, CHUNK))
                    try:
                        n = sock.send(chunk)
                    except BlockingIOError:
                        break
                    out["sent"] += n
                    due -= n
                progress(now)
                time.sleep(TICK_S)
            _finish(sock, out, clock() + grace, progress, clock)
        except ConnectionResetError:
            out["resets"] += 1
        except OSError as exc:
            out["error"] = str(exc)
    return out


def _finish(
    sock: socket.socket,
    out: Result,
    deadline: float,
    progress: Callable[[float], None],
    clock: Callable[[], float],
) -> None:
    """Half-close, then read the server's 8-byte count (or give up at the deadline)."""
    sock.shutdown(socket.SHUT_WR)
    answer = b""
    while (now := clock()) < deadline and len(answer) < 8:
        progress(now)
        readable, _, _ = select.select([sock], [], [], min(0.1, max(0.0, deadline - now)))
        if readable:
            data = sock.recv(8 - len(answer))
            if not data:
                break
            answer += data
    progress(clock())
    if len(answer) == 8:
        out["server_count"] = int(struct.unpack("!Q", answer)[0])


# --- UDP and raw frames -----------------------------------------------------------
def tag_of(data: bytes) -> str:
    """The sender's tag in a marked datagram: MARKER TAG ":" INDEX."""
    return data[len(MARKER) :].rsplit(b":", 1)[0].decode(errors="replace")


def udp_count(port: int, duration: float, ready: str | None) -> Result:
    """Count marked UDP datagrams by source IP and by sender's tag until the deadline."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))  # noqa: S104 - inside a lab VM namespace
    if ready:
        Path(ready).write_text(str(os.getpid()))
    by_source: dict[str, int] = {}
    by_tag: dict[str, int] = {}
    deadline = time.monotonic() + duration
    with sock:
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], left)
            if readable:
                data, addr = sock.recvfrom(2048)
                if data.startswith(MARKER):
                    by_source[str(addr[0])] = by_source.get(str(addr[0]), 0) + 1
                    tag = tag_of(data)
                    by_tag[tag] = by_tag.get(tag, 0) + 1
    return {"received": sum(by_source.values()), "by_source": by_source, "by_tag": by_tag}


def mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6:
        raise UsageError(f"not a MAC address: {mac!r}")
    return bytes(int(p, 16) for p in parts)


@dataclass(frozen=True)
class Endpoint:
    mac: str
    ip: str
    port: int


def udp_frame(src: Endpoint, dst: Endpoint, payload: bytes) -> bytes:
    """One Ethernet/IPv4/UDP frame (UDP checksum 0: none, as IPv4 allows)."""
    udp = struct.pack("!HHHH", src.port, dst.port, 8 + len(payload), 0) + payload
    addrs = socket.inet_aton(src.ip), socket.inet_aton(dst.ip)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, *addrs)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return mac_bytes(dst.mac) + mac_bytes(src.mac) + b"\x08\x00" + header + udp


def spoof_send(
    iface: str, src: Endpoint, dst: Endpoint, *, count: int, interval: float, tag: str = ""
) -> Result:
    """Send `count` marked UDP datagrams from any MAC and IP, as raw frames on `iface`."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sent = 0
    with sock:
        sock.bind((iface, 0))
        for i in range(count):
            frame = udp_frame(src, dst, MARKER + tag.encode() + b":%d" % i)
            with contextlib.suppress(OSError):
                sock.send(frame)
                sent += 1
            time.sleep(interval)
    return {"sent": sent, "src_mac": src.mac, "src_ip": src.ip, "dst_ip": dst.ip, "tag": tag}


# --- command line -------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flowkeeper-traffic", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("listen", "stream-server", "udp-count"):
        s = sub.add_parser(name)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--seconds", type=float, required=True)
        s.add_argument("--ready")
        s.add_argument("--out", help="write the JSON result here too")
    c = sub.add_parser("connect")
    c.add_argument("--dst", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--timeout", type=float, default=2.0)
    c.add_argument("--out")
    sc = sub.add_parser("stream-client")
    sc.add_argument("--dst", required=True)
    sc.add_argument("--port", type=int, required=True)
    sc.add_argument("--seconds", type=float, required=True)
    sc.add_argument("--rate", type=int, default=200_000, help="bytes per second")
    sc.add_argument("--grace", type=float, default=10.0)
    sc.add_argument("--out")
    sp = sub.add_parser("spoof-send")
    sp.add_argument("--iface", default="eth0")
    sp.add_argument("--src-mac", required=True)
    sp.add_argument("--dst-mac", required=True)
    sp.add_argument("--src-ip", required=True)
    sp.add_argument("--dst-ip", required=True)
    sp.add_argument("--port", type=int, required=True)
    sp.add_argument("--count", type=int, default=5)
    sp.add_argument("--interval", type=float, default=0.05)
    sp.add_argument("--tag", default="", help="a label the counter reports datagrams by")
    sp.add_argument("--out")
    return p


def run(args: argparse.Namespace) -> Result:
    if hasattr(args, "port") and not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be 1..65535, got {args.port}")
    if args.cmd == "listen":
        return listen(args.port, seconds(args.seconds), args.ready)
    if args.cmd == "stream-server":
        return stream_server(args.port, seconds(args.seconds), args.ready)
    if args.cmd == "udp-count":
        return udp_count(args.port, seconds(args.seconds), args.ready)
    if args.cmd == "connect":
        return connect(lab_address(args.dst), args.port, seconds(args.timeout))
    if args.cmd == "stream-client":
        if not 1 <= args.rate <= MAX_RATE:
            raise UsageError(f"--rate must be 1..{MAX_RATE}")
        seconds(args.seconds + args.grace)
        return stream_client(
            lab_address(args.dst),
            args.port,
            duration=args.seconds,
            rate=args.rate,
            grace=seconds(args.grace),
        )
    if args.cmd == "spoof-send":
        if not args.tag.isalnum() and args.tag:
            raise UsageError("--tag must be letters and digits")
        if not 1 <= args.count <= MAX_COUNT or not 0 <= args.interval <= 1:
            raise UsageError(f"--count must be 1..{MAX_COUNT}, --interval 0..1 s")
        seconds(max(args.count * args.interval, 0.001))
        return spoof_send(
            args.iface,
            Endpoint(args.src_mac, lab_address(args.src_ip), SPOOF_SOURCE_PORT),
            Endpoint(args.dst_mac, lab_address(args.dst_ip), args.port),
            count=args.count,
            interval=args.interval,
            tag=args.tag,
        )
    raise UsageError(f"unknown command {args.cmd!r}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = run(args)
    except UsageError as exc:
        print(f"traffic: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, sort_keys=True)
    if args.out:
        tmp = Path(f"{args.out}.tmp")
        tmp.write_text(text + "\n")
        tmp.replace(args.out)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
