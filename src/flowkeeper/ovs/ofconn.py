"""A persistent OpenFlow 1.5 connection to one bridge: bundles and port numbers, reconnecting."""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from flowkeeper.ovs import ofsocket
from flowkeeper.ovs.errors import OpenFlowError
from flowkeeper.ovs.ofsocket import ConnectionLost, Stream

OFPMP_PORT_DESC = 13
_PORT = struct.Struct("!IH2x6s2x16s")  # ofp_port (OF1.4+) up to the name: 32 bytes
T = TypeVar("T")


def parse_port_desc(body: bytes) -> dict[str, int]:
    """Port name -> number from the concatenated ofp_port entries of a PORT_DESC reply."""
    ports: dict[str, int] = {}
    offset = 0
    while offset + _PORT.size <= len(body):
        number, length, _mac, raw_name = _PORT.unpack_from(body, offset)
        if length < _PORT.size:
            raise OpenFlowError(f"malformed PORT_DESC reply (port length {length})")
        name = raw_name.split(b"\0", 1)[0].decode("utf-8", "replace")
        ports[name] = number
        offset += length
    return ports


class OpenFlowConnection:
    """One OpenFlow 1.5 session with a switch, kept open across requests.

    Connects (HELLO) on first use, answers echo requests whenever it reads, and if the
    switch closed the connection (e.g. ovs-vswitchd restarted) reconnects once,
    transparently, as long as nothing could have been committed. After any other error
    the session is closed, so no open bundle or late error leaks into the next request.
    Thread-safe: requests are serialized.
    """

    def __init__(self, socket_path: str, timeout: float = 30.0) -> None:
        self.path = socket_path
        self.timeout = timeout
        self.reconnects = 0  # sessions opened after the first
        self._stream: Stream | None = None
        self._xid = 1
        self._bundle_id = 0
        self._sessions = 0
        self._lock = threading.Lock()

    def __enter__(self) -> OpenFlowConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def bundle(self, flow_mods: Iterable[bytes]) -> None:
        """Install OF1.5 messages as one ATOMIC|ORDERED bundle (nothing on OpenFlowError).

        A generator is consumed while sending (an exception from it abandons the bundle);
        after a lost connection it is retried only if it had not been started.
        """
        if isinstance(flow_mods, Sequence) and not flow_mods:
            return
        replayable = isinstance(flow_mods, Sequence)

        def run(stream: Stream) -> None:
            if self._xid > 0xF0000000:
                self._xid = 2  # wrap around; 0 and 1 were the handshake's
            self._bundle_id = self._bundle_id % 0xFFFFFFFF + 1
            self._xid = ofsocket.run_bundle(stream, flow_mods, self._bundle_id, self._xid)

        def retry(stream: Stream) -> bool:
            return not stream.commit_sent and (replayable or not stream.filling)

        self._request(run, retry_if=retry)

    def port_numbers(self) -> dict[str, int]:
        """Every port of the bridge by name (the bridge's own port is LOCAL, 0xfffffffe)."""

        def run(stream: Stream) -> dict[str, int]:
            xid = self._next_xid()
            stream.xid_names[xid] = "port description request"
            body = struct.pack("!HH4xI4x", OFPMP_PORT_DESC, 0, ofsocket.OFPP_ANY)
            msg = ofsocket.encode_header(ofsocket.OFPT_MULTIPART_REQUEST, 8 + len(body), xid)
            stream.send(msg + body)
            reply = stream.wait("waiting for port descriptions", xid)
            del stream.xid_names[xid]
            return parse_port_desc(reply)

        return self._request(run, retry_if=lambda _stream: True)

    def _request(self, run: Callable[[Stream], T], retry_if: Callable[[Stream], bool]) -> T:
        with self._lock:
            for attempt in (1, 2):
                stream = self._connected()
                try:
                    return run(stream)
                except ConnectionLost:
                    self._drop()
                    if attempt == 2 or not retry_if(stream):
                        raise
                except BaseException:
                    self._drop()
                    raise
        raise AssertionError("unreachable")

    def _connected(self) -> Stream:
        """The open stream, after reading what arrived meanwhile; a new one if it was closed."""
        if self._stream is not None:
            try:
                self._stream.receive()  # queues echo replies, notices a closed peer
                self._stream.send(b"")
                self._stream.raise_errors()
            except OpenFlowError:
                self._drop()
        if self._stream is None:
            stream = Stream(self.path, self.timeout)
            try:
                stream.connect()
                stream.handshake()
            except BaseException:
                stream.close()
                raise
            self._stream = stream
            self._xid = 2
            self.reconnects += self._sessions > 0
            self._sessions += 1
        self._stream.replies.clear()
        return self._stream

    def _next_xid(self) -> int:
        xid = self._xid
        self._xid = xid + 1 if xid < 0xFFFFFFF0 else 2
        return xid

    def _drop(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
