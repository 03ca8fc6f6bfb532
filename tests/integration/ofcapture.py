"""What ovs-ofctl sends: a Unix-socket relay to a bridge's management socket that keeps
the bytes from ovs-ofctl to the switch, and the FLOW_MODs in the bundles among them."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

OFPT_FLOW_MOD, OFPT_BUNDLE_ADD_MESSAGE = 14, 34
_BUNDLE_ADD = struct.Struct("!IHH")  # bundle_id, pad, flags


def _relay(src: socket.socket, dst: socket.socket, keep: bytearray | None) -> None:
    try:
        while data := src.recv(1 << 16):
            if keep is not None:
                keep += data
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def ofctl_flow_mods(mgmt_socket: str, lines: Iterable[str], timeout: float = 120.0) -> list[bytes]:
    """The FLOW_MODs (xid zeroed) `ovs-ofctl -O OpenFlow15 --bundle add-flows` sends for
    `lines` to the bridge at `mgmt_socket`, in order; the flows are installed as well."""
    with tempfile.TemporaryDirectory(prefix="fk-ofcap-") as tmp:
        path = str(Path(tmp) / "relay.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(1)
        server.settimeout(0.1)
        done = threading.Event()
        kept: list[bytearray] = []
        threads: list[threading.Thread] = []

        def accept() -> None:  # ovs-ofctl connects more than once (port names first)
            while not done.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                client.settimeout(None)
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                upstream.connect(mgmt_socket)
                keep = bytearray()
                kept.append(keep)
                for args in ((client, upstream, keep), (upstream, client, None)):
                    thread = threading.Thread(target=_relay, args=args, daemon=True)
                    thread.start()
                    threads.append(thread)

        acceptor = threading.Thread(target=accept, daemon=True)
        acceptor.start()
        try:
            subprocess.run(
                ["ovs-ofctl", "-O", "OpenFlow15", "--bundle", "add-flows", f"unix:{path}", "-"],
                input="\n".join(lines) + "\n", text=True, check=True, capture_output=True,
                timeout=timeout, env={**os.environ, "LC_ALL": "C"},
            )  # fmt: skip
        finally:
            done.set()
            acceptor.join(timeout)
            server.close()
            for thread in threads:
                thread.join(timeout)
    return [m for keep in kept for m in flow_mods(bytes(keep))]


def flow_mods(stream: bytes) -> list[bytes]:
    """The FLOW_MODs in a stream of OpenFlow messages, also inside BUNDLE_ADD_MESSAGE."""
    out: list[bytes] = []
    offset = 0
    while offset + 8 <= len(stream):
        msg_type, length = struct.unpack_from("!xBH", stream, offset)
        msg = stream[offset : offset + length]
        offset += length
        if msg_type == OFPT_BUNDLE_ADD_MESSAGE:
            msg = msg[8 + _BUNDLE_ADD.size :]
            msg_type, inner = struct.unpack_from("!xBH", msg)
            msg = msg[:inner]
        if msg_type == OFPT_FLOW_MOD:
            out.append(msg[:4] + b"\x00\x00\x00\x00" + msg[8:])
    return out
