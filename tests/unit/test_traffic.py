"""The lab's traffic tool: its pure parts, and one stream over 127.0.0.1."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path
from typing import Any

import pytest

from flowkeeper.lab import probe, traffic


def test_sequence_is_the_counter_mod_251() -> None:
    data = traffic.sequence(0, 600)
    assert list(data[:3]) == [0, 1, 2]
    assert data[251] == 0 and data[599] == 599 % 251
    assert traffic.sequence(500, 100) == data[500:600]


def test_sequence_errors_counts_bytes_out_of_place() -> None:
    good = traffic.sequence(1000, 300)
    assert traffic.sequence_errors(1000, good) == 0
    bad = bytearray(good)
    bad[7] ^= 0xFF
    bad[200] ^= 0x01
    assert traffic.sequence_errors(1000, bytes(bad)) == 2
    # A lost chunk shows as errors in what follows it.
    assert traffic.sequence_errors(1000, good[10:]) > 0


def test_only_lab_addresses() -> None:
    assert traffic.lab_address("198.19.1.5") == "198.19.1.5"
    for bad in ("10.0.0.1", "127.0.0.1", "198.20.0.1", "nonsense"):
        with pytest.raises(traffic.UsageError):
            traffic.lab_address(bad)
    assert traffic.main(["connect", "--dst", "8.8.8.8", "--port", "80"]) == 2


def test_durations_are_bounded() -> None:
    with pytest.raises(traffic.UsageError):
        traffic.seconds(traffic.MAX_SECONDS + 1)
    with pytest.raises(traffic.UsageError):
        traffic.seconds(0)


def test_udp_frame_headers() -> None:
    src = traffic.Endpoint("fa:16:3e:00:00:01", "198.19.1.9", 40000)
    dst = traffic.Endpoint("fa:16:3e:00:00:02", "198.19.1.2", 6000)
    frame = traffic.udp_frame(src, dst, b"x")
    assert frame[:6] == bytes.fromhex("fa163e000002")
    assert frame[6:12] == bytes.fromhex("fa163e000001")
    assert frame[12:14] == b"\x08\x00"
    ip = frame[14:34]
    assert probe.checksum(ip) == 0  # a correct header sums to zero
    assert socket.inet_ntoa(ip[12:16]) == "198.19.1.9"
    sport, dport, length, _ = struct.unpack("!HHHH", frame[34:42])
    assert (sport, dport, length) == (40000, 6000, 9)


def test_stream_over_loopback(tmp_path: Path) -> None:
    """A short stream between the two halves: every byte counted, no errors."""
    ready = tmp_path / "ready"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server: dict[str, Any] = {}

    def serve() -> None:
        server.update(traffic.stream_server(port, 10.0, str(ready)))

    thread = threading.Thread(target=serve)
    thread.start()
    for _ in range(500):
        if ready.exists():
            break
        threading.Event().wait(0.01)
    client = traffic.stream_client("127.0.0.1", port, duration=0.5, rate=100_000, grace=5.0)
    thread.join(15)
    assert client["connected"] and client["resets"] == 0 and client["error"] == ""
    assert client["sent"] > 0 and client["server_count"] == client["sent"]
    assert client["acked"] == client["sent"]
    assert server["received"] == client["sent"] and server["sequence_errors"] == 0
    assert server["eof"] and server["resets"] == 0


def test_connect_verdicts_over_loopback() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert traffic.connect("127.0.0.1", port, 1.0)["verdict"] == "refused"
        sock.listen(1)
        assert traffic.connect("127.0.0.1", port, 1.0)["verdict"] == "connected"


def test_tags_of_marked_datagrams() -> None:
    assert traffic.tag_of(traffic.MARKER + b"spoofmac:17") == "spoofmac"
    assert traffic.tag_of(traffic.MARKER + b":3") == ""
