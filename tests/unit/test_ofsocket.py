"""Unit tests for the OpenFlow 1.5 bundle client: wire encoding and a fake local switch."""

from __future__ import annotations

import contextlib
import socket
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowkeeper.ovs.errors import OpenFlowError
from flowkeeper.ovs.ofsocket import (
    OFPBF_ATOMIC,
    OFPBF_ORDERED,
    encode_bundle_add,
    encode_bundle_control,
    encode_flow_mod_table20,
    encode_header,
    encode_hello,
    error_name,
    send_bundle,
)

FLAGS = OFPBF_ATOMIC | OFPBF_ORDERED


def _flow(**kw: int) -> bytes:
    args = {"vlan": 100, "tun_id": 0x1234567890, "out_port": 2} | kw
    return encode_flow_mod_table20(
        args.pop("vlan"), "aa:bb:cc:dd:ee:01", args.pop("tun_id"), args.pop("out_port"), **args
    )


def test_flow_mod_header_and_fixed_part() -> None:
    msg = _flow(priority=7, cookie=0xABC)
    assert len(msg) == 120
    assert struct.unpack_from("!BBHI", msg) == (6, 14, 120, 0)
    cookie, cookie_mask, table, command = struct.unpack_from("!QQBB", msg, 8)
    assert (cookie, cookie_mask, table, command) == (0xABC, 0, 20, 0)
    idle, hard, prio, buffer_id, out_port, out_group, flags, importance = struct.unpack_from(
        "!HHHIIIHH", msg, 26
    )
    assert (idle, hard, prio) == (0, 0, 7)
    assert (buffer_id, out_port, out_group) == (0xFFFFFFFF,) * 3
    assert (flags, importance) == (0, 0)


def test_flow_mod_match_is_oxm_padded_to_8() -> None:
    msg = _flow(vlan=100)
    match_type, match_len = struct.unpack_from("!HH", msg, 48)
    assert (match_type, match_len) == (1, 20)  # length excludes the padding
    oxm_vlan, vid = struct.unpack_from("!IH", msg, 52)
    assert (oxm_vlan, vid) == (0x80000C02, 0x1000 | 100)  # OFPVID_PRESENT | vlan
    assert struct.unpack_from("!I", msg, 58)[0] == 0x80000606
    assert msg[62:68] == bytes.fromhex("aabbccddee01")
    assert msg[68:72] == b"\x00" * 4  # (20 + 7) // 8 * 8 = 24 bytes of match


def test_flow_mod_instruction_and_actions() -> None:
    msg = _flow(tun_id=0x1234567890, out_port=2)
    assert struct.unpack_from("!HHI", msg, 72) == (4, 48, 0)  # APPLY_ACTIONS, len, pad
    assert struct.unpack_from("!HHI", msg, 80) == (18, 8, 0)  # POP_VLAN
    assert struct.unpack_from("!HHIQ", msg, 88) == (25, 16, 0x80004C08, 0x1234567890)
    port_action = struct.unpack_from("!HHIH", msg, 104)
    assert port_action == (0, 16, 2, 0)  # OUTPUT port 2, max_len 0
    assert msg[114:120] == b"\x00" * 6


@given(
    vlan=st.integers(0, 4095),
    mac=st.binary(min_size=6, max_size=6),
    tun_id=st.integers(0, 2**64 - 1),
    out_port=st.integers(1, 0xFFFFFF00),
    priority=st.integers(0, 65535),
    cookie=st.integers(0, 2**64 - 1),
)
def test_flow_mod_roundtrip_and_alignment(
    vlan: int, mac: bytes, tun_id: int, out_port: int, priority: int, cookie: int
) -> None:
    text_mac = ":".join(f"{b:02x}" for b in mac)
    msg = encode_flow_mod_table20(
        vlan, text_mac, tun_id, out_port, priority=priority, cookie=cookie
    )
    assert len(msg) % 8 == 0
    assert struct.unpack_from("!H", msg, 2)[0] == len(msg)
    assert struct.unpack_from("!Q", msg, 8)[0] == cookie
    assert struct.unpack_from("!H", msg, 30)[0] == priority
    assert struct.unpack_from("!H", msg, 56)[0] == 0x1000 | vlan
    assert msg[62:68] == mac
    assert struct.unpack_from("!Q", msg, 96)[0] == tun_id
    assert struct.unpack_from("!I", msg, 108)[0] == out_port


@pytest.mark.parametrize(
    ("vlan", "mac", "tun_id", "out_port"),
    [
        (4096, "aa:bb:cc:dd:ee:ff", 1, 2),
        (-1, "aa:bb:cc:dd:ee:ff", 1, 2),
        (1, "aa:bb:cc:dd:ee", 1, 2),
        (1, "aa:bb:cc:dd:ee:gg", 1, 2),
        (1, "aabb:cc:dd:ee:ff:00", 1, 2),
        (1, "aa:bb:cc:dd:ee:ff", -1, 2),
        (1, "aa:bb:cc:dd:ee:ff", 2**64, 2),
        (1, "aa:bb:cc:dd:ee:ff", 1, 0),
        (1, "aa:bb:cc:dd:ee:ff", 1, 0xFFFFFFFF),
        (1, "aa:bb:cc:dd:ee: f", 1, 2),
        (1, "aa:bb:cc:dd:ee:+f", 1, 2),
    ],
)
def test_flow_mod_rejects_bad_arguments(vlan: int, mac: str, tun_id: int, out_port: int) -> None:
    with pytest.raises(ValueError, match=r"out of range|invalid MAC|port number"):
        encode_flow_mod_table20(vlan, mac, tun_id, out_port)


def test_flow_mod_rejects_bad_priority_and_cookie() -> None:
    with pytest.raises(ValueError, match="priority=65536"):
        encode_flow_mod_table20(1, "aa:bb:cc:dd:ee:ff", 1, 2, priority=65536)
    with pytest.raises(ValueError, match="cookie=-1"):
        encode_flow_mod_table20(1, "aa:bb:cc:dd:ee:ff", 1, 2, cookie=-1)


def test_short_mac_bytes_are_accepted() -> None:
    msg = encode_flow_mod_table20(1, "a:0:c:dd:E:f", 1, 2)
    assert msg[62:68] == bytes.fromhex("0a000cdd0e0f")


def test_bundle_add_wraps_and_rewrites_xid() -> None:
    inner = _flow()
    wrapped = encode_bundle_add(inner, 0x0A0B0C0D, 7, FLAGS)
    assert len(wrapped) == 16 + len(inner)
    assert len(wrapped) % 8 == 0
    version, msg_type, length, xid = struct.unpack_from("!BBHI", wrapped)
    assert (version, msg_type, length, xid) == (6, 34, 136, 0x0A0B0C0D)
    assert struct.unpack_from("!IHH", wrapped, 8) == (7, 0, FLAGS)
    inner_out = wrapped[16:]
    assert struct.unpack_from("!BBHI", inner_out) == (6, 14, 120, 0x0A0B0C0D)  # same xid
    assert inner_out[8:] == inner[8:]
    assert struct.unpack_from("!I", inner, 4)[0] == 0  # the caller's bytes are untouched


def test_bundle_add_replaces_an_existing_inner_xid() -> None:
    inner = bytearray(_flow())
    struct.pack_into("!I", inner, 4, 0x12345678)
    wrapped = encode_bundle_add(bytes(inner), 99, 1, FLAGS)
    assert struct.unpack_from("!I", wrapped, 4)[0] == 99
    assert struct.unpack_from("!I", wrapped, 20)[0] == 99


def test_bundle_add_rejects_malformed_inner() -> None:
    good = _flow()
    with pytest.raises(ValueError, match="version"):
        encode_bundle_add(b"\x04" + good[1:], 1, 1, FLAGS)
    with pytest.raises(ValueError, match="length"):
        encode_bundle_add(good + b"\x00" * 8, 1, 1, FLAGS)
    with pytest.raises(ValueError, match="too short"):
        encode_bundle_add(good[:6], 1, 1, FLAGS)


def test_control_messages() -> None:
    assert encode_header(20, 8, 5) == bytes.fromhex("0614000800000005")
    ctrl = encode_bundle_control(3, 0x11, 4, FLAGS)
    assert struct.unpack("!BBHIIHH", ctrl) == (6, 33, 16, 3, 0x11, 4, 3)
    hello = encode_hello(1)
    assert struct.unpack("!BBHIHHI", hello) == (6, 0, 16, 1, 1, 8, 1 << 6)


def test_error_names() -> None:
    assert error_name(5, 2) == "FLOW_MOD_FAILED/BAD_TABLE_ID"
    assert error_name(17, 13) == "BUNDLE_FAILED/MSG_FAILED"
    assert error_name(2, 4) == "BAD_ACTION/BAD_OUT_PORT"
    assert error_name(99, 0) == "?/?"


# A fake switch on a local unix socket, exercising the message exchange.


def _msg(msg_type: int, xid: int, body: bytes = b"") -> bytes:
    return struct.pack("!BBHI", 6, msg_type, 8 + len(body), xid) + body


class FakeSwitch:
    """Speaks just enough OpenFlow 1.5; fails the bundle message with index `fail_at`."""

    def __init__(self, path: str, fail_at: int | None = None, silent: bool = False) -> None:
        self.fail_at, self.silent = fail_at, silent
        self.adds: list[bytes] = []
        self.echo_reply: bytes | None = None
        self.committed = self.discarded = False
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(1)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.srv.accept()
        with conn, contextlib.suppress(ConnectionResetError, BrokenPipeError):
            if self.silent:
                conn.recv(1024)
                conn.recv(1024)  # until the client gives up and closes
                return
            conn.sendall(_msg(0, 1) + _msg(2, 0xEEEE, b"ping"))
            buf = b""
            while chunk := conn.recv(65536):
                buf += chunk
                while len(buf) >= 8 and len(buf) >= struct.unpack_from("!H", buf, 2)[0]:
                    length = struct.unpack_from("!H", buf, 2)[0]
                    self._handle(conn, buf[:length])
                    buf = buf[length:]

    def _handle(self, conn: socket.socket, msg: bytes) -> None:
        msg_type, xid = msg[1], struct.unpack_from("!I", msg, 4)[0]
        if msg_type == 3:
            self.echo_reply = msg
        elif msg_type == 20:
            conn.sendall(_msg(21, xid))
        elif msg_type == 34:
            if len(self.adds) == self.fail_at:
                conn.sendall(_msg(1, xid, struct.pack("!HH", 5, 2) + msg[:64]))
            self.adds.append(msg)
        elif msg_type == 33:
            bundle_id, ctrl_type, flags = struct.unpack_from("!IHH", msg, 8)
            self.committed |= ctrl_type == 4
            self.discarded |= ctrl_type == 6
            if ctrl_type in (0, 4):
                conn.sendall(_msg(33, xid, struct.pack("!IHH", bundle_id, ctrl_type + 1, flags)))

    def join(self) -> None:
        self.thread.join(timeout=10)
        self.srv.close()


@pytest.fixture
def sock_path() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="ofs") as tmp:  # short: AF_UNIX path limit
        yield str(Path(tmp) / "br.mgmt")


def test_send_bundle_against_fake_switch(sock_path: str) -> None:
    switch = FakeSwitch(sock_path)
    flows = [_flow(vlan=v) for v in range(1, 301)]
    send_bundle(sock_path, flows, timeout=5)
    switch.join()
    assert switch.committed and not switch.discarded
    assert switch.echo_reply == _msg(3, 0xEEEE, b"ping")
    assert len(switch.adds) == 300
    xids = [struct.unpack_from("!I", m, 4)[0] for m in switch.adds]
    assert xids == [struct.unpack_from("!I", m, 20)[0] for m in switch.adds]
    assert len(set(xids)) == 300
    assert [m[24:] for m in switch.adds] == [f[8:] for f in flows]


def test_error_aborts_without_commit(sock_path: str) -> None:
    switch = FakeSwitch(sock_path, fail_at=1)
    with pytest.raises(OpenFlowError, match=r"FLOW_MOD_FAILED/BAD_TABLE_ID.*bundle message #1 "):
        send_bundle(sock_path, [_flow(vlan=v) for v in range(1, 4)], timeout=5)
    switch.join()
    assert not switch.committed


def test_connection_failures(sock_path: str) -> None:
    with pytest.raises(OpenFlowError, match="no such socket"):
        send_bundle(sock_path, [_flow()], timeout=1)
    switch = FakeSwitch(sock_path, silent=True)
    with pytest.raises(OpenFlowError, match=r"timed out after 0\.2s waiting for HELLO"):
        send_bundle(sock_path, [_flow()], timeout=0.2)
    switch.join()
