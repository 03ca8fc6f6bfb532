"""The persistent OpenFlow connection against a fake switch: ports, bundles, reconnecting."""

from __future__ import annotations

import contextlib
import socket
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkeeper.ovs.errors import OpenFlowError
from flowkeeper.ovs.ofconn import OpenFlowConnection, parse_port_desc
from flowkeeper.ovs.ofsocket import ConnectionLost, encode_flow_mod_table20

PORTS = [(1, "patch-int"), (2, "vxlan-c6120002"), (0xFFFFFFFE, "br-tun")]


def _msg(msg_type: int, xid: int, body: bytes = b"") -> bytes:
    return struct.pack("!BBHI", 6, msg_type, 8 + len(body), xid) + body


def _port(number: int, name: str) -> bytes:
    """An OF1.4+ ofp_port with one 8-byte property (so entries differ in length)."""
    fixed = struct.pack("!IH2x6s2x16sII", number, 48, b"\x02" * 6, name.encode(), 0, 0)
    return fixed + struct.pack("!HH4x", 0xFFFF, 8)


class FakeSwitch:
    """Accepts connections one after another; drops the first after `drop_after` commits,
    or on the commit request itself if `drop_on_commit`."""

    def __init__(self, path: str, drop_after: int = 0, drop_on_commit: bool = False) -> None:
        self.drop_after, self.drop_on_commit = drop_after, drop_on_commit
        self.sessions = self.commits = 0
        self.adds: list[bytes] = []
        self.echo_replies = 0
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        self.srv.settimeout(10)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.srv.accept()
                self.sessions += 1
                with conn:
                    self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        conn.sendall(_msg(0, 1, struct.pack("!HHI", 1, 8, 1 << 6)) + _msg(2, 0xEEEE))
        buf = b""
        while chunk := conn.recv(65536):
            buf += chunk
            while len(buf) >= 8 and len(buf) >= struct.unpack_from("!H", buf, 2)[0]:
                length = struct.unpack_from("!H", buf, 2)[0]
                msg, buf = buf[:length], buf[length:]
                if not self._handle(conn, msg):
                    return

    def _handle(self, conn: socket.socket, msg: bytes) -> bool:
        msg_type, xid = msg[1], struct.unpack_from("!I", msg, 4)[0]
        if msg_type == 3:
            self.echo_replies += 1
        elif msg_type == 18:  # PORT_DESC, answered in two parts
            assert struct.unpack_from("!HHI", msg, 8) == (13, 0, 0)
            assert struct.unpack_from("!I", msg, 16)[0] == 0xFFFFFFFF
            head = struct.pack("!HH4x", 13, 1)
            conn.sendall(_msg(19, xid, head + _port(*PORTS[0]) + _port(*PORTS[1])))
            conn.sendall(_msg(19, xid, struct.pack("!HH4x", 13, 0) + _port(*PORTS[2])))
        elif msg_type == 20:
            conn.sendall(_msg(21, xid))
        elif msg_type == 34:
            self.adds.append(msg)
        elif msg_type == 33:
            bundle_id, ctrl_type, flags = struct.unpack_from("!IHH", msg, 8)
            if ctrl_type == 4 and self.drop_on_commit and self.sessions == 1:
                return False
            reply = struct.pack("!IHH", bundle_id, ctrl_type + 1, flags)
            conn.sendall(_msg(33, xid, reply))
            if ctrl_type == 4:
                self.commits += 1
                if self.sessions == 1 and self.commits == self.drop_after:
                    return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.srv.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.srv.close()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def sock_path() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="ofc") as tmp:  # short: AF_UNIX path limit
        yield str(Path(tmp) / "br.mgmt")


def _flows(n: int) -> list[bytes]:
    return [encode_flow_mod_table20(v, "aa:bb:cc:dd:ee:01", v, 2) for v in range(1, n + 1)]


def test_port_desc_parsing() -> None:
    body = b"".join(_port(n, name) for n, name in PORTS)
    assert parse_port_desc(body) == {name: n for n, name in PORTS}
    with pytest.raises(OpenFlowError, match="malformed"):
        parse_port_desc(struct.pack("!IH2x6s2x16s", 1, 8, b"", b"x"))


def test_one_session_for_many_requests(sock_path: str) -> None:
    switch = FakeSwitch(sock_path)
    with OpenFlowConnection(sock_path, timeout=5) as conn:
        assert conn.port_numbers() == {name: n for n, name in PORTS}
        conn.bundle(_flows(3))
        conn.bundle(_flows(2))
        conn.bundle([])  # nothing to send, nothing sent
        assert conn.port_numbers()["br-tun"] == 0xFFFFFFFE
    switch.close()
    assert (switch.sessions, switch.commits, len(switch.adds)) == (1, 2, 5)
    assert switch.echo_replies == 1
    xids = [struct.unpack_from("!I", m, 4)[0] for m in switch.adds]
    assert len(set(xids)) == 5
    bundle_ids = [struct.unpack_from("!I", m, 8)[0] for m in switch.adds]
    assert bundle_ids == [1, 1, 1, 2, 2]


def test_reconnects_once_after_the_switch_closed_the_session(sock_path: str) -> None:
    switch = FakeSwitch(sock_path, drop_after=1)
    with OpenFlowConnection(sock_path, timeout=5) as conn:
        conn.bundle(_flows(2))  # the switch hangs up after this commit (a restart)
        conn.bundle(_flows(3))
        assert conn.port_numbers()["patch-int"] == 1
        assert conn.reconnects == 1
    switch.close()
    assert (switch.sessions, switch.commits, len(switch.adds)) == (2, 2, 5)


def test_no_retry_once_the_commit_was_sent(sock_path: str) -> None:
    switch = FakeSwitch(sock_path, drop_on_commit=True)
    with OpenFlowConnection(sock_path, timeout=5) as conn:
        with pytest.raises(ConnectionLost, match="closed by peer"):
            conn.bundle(_flows(2))  # committed or not: unknown, so not sent again
        assert switch.commits == 0
        conn.bundle(_flows(1))  # the next request opens a new session
    switch.close()
    assert (switch.sessions, switch.commits) == (2, 1)


def test_connect_failure_is_an_openflow_error(sock_path: str) -> None:
    with pytest.raises(OpenFlowError, match="no such socket"):
        OpenFlowConnection(sock_path, timeout=1).port_numbers()
