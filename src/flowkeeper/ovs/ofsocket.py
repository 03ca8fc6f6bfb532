"""Minimal OpenFlow 1.5 client sending pre-encoded flow_mods to OVS as one atomic bundle."""

from __future__ import annotations

import selectors
import socket
import struct
from collections.abc import Callable, Iterable, Sequence

from flowkeeper.ovs.errors import OpenFlowError

OFP_VERSION = 0x06
OFPT_HELLO, OFPT_ERROR, OFPT_ECHO_REQUEST, OFPT_ECHO_REPLY = 0, 1, 2, 3
OFPT_FLOW_MOD, OFPT_MULTIPART_REQUEST, OFPT_MULTIPART_REPLY = 14, 18, 19
OFPT_BARRIER_REQUEST, OFPT_BARRIER_REPLY = 20, 21
OFPMPF_REPLY_MORE = 1
OFPT_BUNDLE_CONTROL, OFPT_BUNDLE_ADD_MESSAGE = 33, 34
OFPBCT_OPEN_REQUEST, OFPBCT_OPEN_REPLY, OFPBCT_COMMIT_REQUEST, OFPBCT_COMMIT_REPLY = 0, 1, 4, 5
OFPBF_ATOMIC, OFPBF_ORDERED = 1, 2
OFPFC_ADD, OFPMT_OXM, OFPIT_APPLY_ACTIONS = 0, 1, 4
OFPAT_OUTPUT, OFPAT_POP_VLAN, OFPAT_SET_FIELD = 0, 18, 25
OFP_NO_BUFFER = OFPP_ANY = OFPG_ANY = 0xFFFFFFFF
OFPP_MAX, OFPVID_PRESENT = 0xFFFFFF00, 0x1000
OXM_VLAN_VID, OXM_ETH_DST, OXM_TUNNEL_ID = 0x80000C02, 0x80000606, 0x80004C08

HEADER = struct.Struct("!BBHI")
_BUNDLE_MSG = struct.Struct("!BBHIIHH")  # header, bundle_id, type|pad, flags (16 bytes)
FLOW_MOD_TABLE20 = struct.Struct(
    "!BBHIQQBBHHHIIIHH"  # ofp_header + fixed part of ofp_flow_mod (48 bytes)
    "HHIHI6s4x"  # ofp_match: OXM, length 20, vlan_vid, eth_dst, 4 pad bytes (24 bytes)
    "HH4x"  # OFPIT_APPLY_ACTIONS, length 48 (8 bytes)
    "HH4x"  # OFPAT_POP_VLAN (8 bytes)
    "HHIQ"  # OFPAT_SET_FIELD with OXM tunnel_id: 4 + 4 + 8 needs no padding (16 bytes)
    "HHIH6x"  # OFPAT_OUTPUT: port, max_len (16 bytes)
)
_BATCH_BYTES = 4 << 20
_STREAM_BATCH_BYTES = 128 << 10  # messages made while sending: hand them over early


class ConnectionLost(OpenFlowError):
    """The switch closed the connection or the socket failed (e.g. ovs-vswitchd restarted)."""


# OF1.5 error type names (indexed by type) and code names, space-separated.
_ERROR_TYPES = (
    "HELLO_FAILED BAD_REQUEST BAD_ACTION BAD_INSTRUCTION BAD_MATCH FLOW_MOD_FAILED "
    "GROUP_MOD_FAILED PORT_MOD_FAILED TABLE_MOD_FAILED QUEUE_OP_FAILED SWITCH_CONFIG_FAILED "
    "ROLE_REQUEST_FAILED METER_MOD_FAILED TABLE_FEATURES_FAILED BAD_PROPERTY "
    "ASYNC_CONFIG_FAILED FLOW_MONITOR_FAILED BUNDLE_FAILED"
)
_ERROR_CODES = {
    0: "INCOMPATIBLE EPERM",
    1: "BAD_VERSION BAD_TYPE BAD_MULTIPART BAD_EXPERIMENTER BAD_EXP_TYPE EPERM BAD_LEN "
    "BUFFER_EMPTY BUFFER_UNKNOWN BAD_TABLE_ID IS_SLAVE BAD_PORT BAD_PACKET",
    2: "BAD_TYPE BAD_LEN BAD_EXPERIMENTER BAD_EXP_TYPE BAD_OUT_PORT BAD_ARGUMENT EPERM "
    "TOO_MANY BAD_QUEUE BAD_OUT_GROUP MATCH_INCONSISTENT UNSUPPORTED_ORDER BAD_TAG "
    "BAD_SET_TYPE BAD_SET_LEN BAD_SET_ARGUMENT BAD_SET_MASK BAD_METER",
    3: "UNKNOWN_INST UNSUP_INST BAD_TABLE_ID UNSUP_METADATA UNSUP_METADATA_MASK "
    "BAD_EXPERIMENTER BAD_EXP_TYPE BAD_LEN EPERM DUP_INST",
    4: "BAD_TYPE BAD_LEN BAD_TAG BAD_DL_ADDR_MASK BAD_NW_ADDR_MASK BAD_WILDCARDS "
    "BAD_FIELD BAD_VALUE BAD_MASK BAD_PREREQ DUP_FIELD EPERM",
    5: "UNKNOWN TABLE_FULL BAD_TABLE_ID OVERLAP EPERM BAD_TIMEOUT BAD_COMMAND BAD_FLAGS "
    "CANT_SYNC BAD_PRIORITY IS_SYNC",
    17: "UNKNOWN EPERM BAD_ID BUNDLE_EXIST BUNDLE_CLOSED OUT_OF_BUNDLES BAD_TYPE BAD_FLAGS "
    "MSG_BAD_LEN MSG_BAD_XID MSG_UNSUP MSG_CONFLICT MSG_TOO_MANY MSG_FAILED TIMEOUT "
    "BUNDLE_IN_PROGRESS",
}


def error_name(err_type: int, code: int) -> str:
    """Return 'TYPE/CODE' names of an OpenFlow 1.5 error, '?' where unknown."""
    types, codes = _ERROR_TYPES.split(), _ERROR_CODES.get(err_type, "").split()
    type_name = types[err_type] if err_type < len(types) else "?"
    return f"{type_name}/{codes[code] if code < len(codes) else '?'}"


def encode_header(msg_type: int, length: int, xid: int) -> bytes:
    """Encode an OpenFlow 1.5 ofp_header."""
    return HEADER.pack(OFP_VERSION, msg_type, length, xid)


def encode_hello(xid: int) -> bytes:
    """Encode a HELLO whose version bitmap offers OpenFlow 1.5 only."""
    return encode_header(OFPT_HELLO, 16, xid) + struct.pack("!HHI", 1, 8, 1 << OFP_VERSION)


def encode_bundle_control(xid: int, bundle_id: int, ctrl_type: int, flags: int) -> bytes:
    """Encode an OFPT_BUNDLE_CONTROL message without properties."""
    return _BUNDLE_MSG.pack(OFP_VERSION, OFPT_BUNDLE_CONTROL, 16, xid, bundle_id, ctrl_type, flags)


def encode_bundle_add(inner: bytes, xid: int, bundle_id: int, flags: int) -> bytes:
    """Wrap an OF1.5 message in OFPT_BUNDLE_ADD_MESSAGE; the inner xid is rewritten to `xid`."""
    if len(inner) < HEADER.size:
        raise ValueError(f"inner message too short ({len(inner)} bytes)")
    version, _, length = struct.unpack_from("!BBH", inner)
    if version != OFP_VERSION:
        raise ValueError(f"inner message has version {version:#04x}, need {OFP_VERSION:#04x}")
    if length != len(inner):
        raise ValueError(f"inner header says length {length}, message has {len(inner)} bytes")
    outer = _BUNDLE_MSG.pack(
        OFP_VERSION, OFPT_BUNDLE_ADD_MESSAGE, 16 + length, xid, bundle_id, 0, flags
    )
    return b"".join((outer, inner[:4], xid.to_bytes(4, "big"), inner[8:]))


def parse_mac(mac: str) -> bytes:
    """Parse 'aa:bb:cc:dd:ee:ff' (one or two hex digits per byte) into 6 bytes."""
    parts = mac.split(":")
    try:
        raw = bytes.fromhex("".join(p.rjust(2, "0") for p in parts))
    except ValueError:
        raw = b""
    if len(parts) != 6 or len(raw) != 6 or not all(0 < len(p) <= 2 for p in parts):
        raise ValueError(f"invalid MAC address {mac!r}")
    return raw


def encode_flow_mod_table20(
    vlan: int, mac: str, tun_id: int, out_port: int, *, priority: int = 2, cookie: int = 0
) -> bytes:
    """OF1.5 FLOW_MOD ADD for `table=20,priority=P,dl_vlan=V,dl_dst=MAC,actions=pop_vlan,
    set_field:T->tun_id,output:PORT` (xid 0: send_bundle assigns xids)."""
    small_ok = 0 <= vlan <= 0xFFF and 0 <= priority <= 0xFFFF
    if not (small_ok and 0 <= tun_id < 2**64 and 0 <= cookie < 2**64):
        raise ValueError(f"out of range: {vlan=} {priority=} {tun_id=} {cookie=}")
    if not 0 < out_port <= OFPP_MAX:
        raise ValueError(f"out_port {out_port} is not a switch port number")
    size = FLOW_MOD_TABLE20.size
    head = (OFP_VERSION, OFPT_FLOW_MOD, size, 0, cookie, 0, 20, OFPFC_ADD, 0, 0, priority)
    fixed = (OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0, 0)  # buffer, out_port, out_group, flags, imp.
    match = (OFPMT_OXM, 20, OXM_VLAN_VID, OFPVID_PRESENT | vlan, OXM_ETH_DST, parse_mac(mac))
    instruction = (OFPIT_APPLY_ACTIONS, size - 48 - 24)
    actions = (OFPAT_POP_VLAN, 8, OFPAT_SET_FIELD, 16, OXM_TUNNEL_ID, tun_id)
    output = (OFPAT_OUTPUT, 16, out_port, 0)
    return FLOW_MOD_TABLE20.pack(*head, *fixed, *match, *instruction, *actions, *output)


class Stream:
    """Non-blocking OpenFlow stream that answers echoes and collects errors and replies."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self.rx = bytearray()
        self.echo_replies: list[bytes] = []
        self.errors: list[OpenFlowError] = []
        self.replies: dict[int, tuple[int, bytes]] = {}
        self.parts: dict[int, list[bytes]] = {}  # multipart reply bodies still to come
        self.commit_sent = False
        self.peer_hello: tuple[int, bytes] | None = None
        self.xid_names: dict[int, str] = {}
        self.add_xids = range(0)
        self.add_total: int | None = None  # bundle messages, if known in advance
        self.adds_sent = 0
        self.filling = False  # bundle messages are being taken from the caller
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sel = selectors.DefaultSelector()
        self.mask = selectors.EVENT_READ

    def connect(self) -> None:
        self.sock.settimeout(self.timeout)
        try:
            self.sock.connect(self.path)
        except OSError as exc:
            why = {
                FileNotFoundError: "no such socket",
                ConnectionRefusedError: "connection refused (is ovs-vswitchd running?)",
                TimeoutError: f"timed out after {self.timeout:g}s",
            }.get(type(exc), exc.strerror or str(exc))
            raise OpenFlowError(f"cannot connect to OpenFlow socket {self.path}: {why}") from None
        self.sock.setblocking(False)
        self.sel.register(self.sock, self.mask)

    def describe(self, xid: int) -> str:
        if xid in self.add_xids:
            total = "" if self.add_total is None else f" of {self.add_total}"
            return f"bundle message #{xid - self.add_xids.start}{total}"
        return self.xid_names.get(xid, "unknown request")

    def _fail(self, why: str, lost: bool = False) -> OpenFlowError:
        """The first OpenFlow error received (usually the real cause), else `why`."""
        if self.errors:
            return self.errors[0]
        return (ConnectionLost if lost else OpenFlowError)(f"{self.path}: {why}")

    def _select(self, mask: int, doing: str) -> int:
        if mask != self.mask:
            self.sel.modify(self.sock, mask)
            self.mask = mask
        ready = self.sel.select(self.timeout)
        if not ready:
            raise self._fail(f"timed out after {self.timeout:g}s {doing}")
        return ready[0][1]

    def receive(self) -> None:
        """Read whatever is available without blocking and dispatch complete messages."""
        try:
            chunk = self.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError as exc:
            raise self._fail(f"receive failed: {exc}", lost=True) from None
        if not chunk:
            raise self._fail("connection closed by peer", lost=True)
        self.rx += chunk
        while len(self.rx) >= HEADER.size:
            version, msg_type, length, xid = HEADER.unpack_from(self.rx)
            if length < HEADER.size:
                raise self._fail(f"malformed OpenFlow message (length {length})")
            if len(self.rx) < length:
                break
            body = bytes(self.rx[HEADER.size : length])
            del self.rx[:length]
            self._dispatch(version, msg_type, xid, body)

    def _dispatch(self, version: int, msg_type: int, xid: int, body: bytes) -> None:
        if msg_type == OFPT_HELLO:
            self.peer_hello = (version, body)
        elif msg_type == OFPT_ECHO_REQUEST:
            self.echo_replies.append(
                HEADER.pack(version, OFPT_ECHO_REPLY, 8 + len(body), xid) + body
            )
        elif msg_type == OFPT_ERROR and len(body) >= 4:
            err_type, code = struct.unpack_from("!HH", body)
            failed = f", failed msg type={body[5]}" if len(body) >= 12 else ""
            self.errors.append(OpenFlowError(
                f"OpenFlow error type={err_type} code={code} ({error_name(err_type, code)}) "
                f"on xid={xid} ({self.describe(xid)}{failed}) from {self.path}",
                err_type, code,
            ))  # fmt: skip
        elif msg_type == OFPT_MULTIPART_REPLY and len(body) >= 8:
            self.parts.setdefault(xid, []).append(body[8:])  # after type, flags, pad
            if not int.from_bytes(body[2:4], "big") & OFPMPF_REPLY_MORE:
                self.replies[xid] = (msg_type, b"".join(self.parts.pop(xid)))
        else:
            self.replies[xid] = (msg_type, body)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            events = self._select(selectors.EVENT_READ | selectors.EVENT_WRITE, "sending")
            if events & selectors.EVENT_READ:
                self.receive()  # keeps the peer's replies flowing so neither side stalls
            if events & selectors.EVENT_WRITE:
                try:
                    view = view[self.sock.send(view) :]
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise self._fail(f"send failed: {exc}", lost=True) from None

    def send(self, data: bytes) -> None:
        """Send whole messages, then the echo replies that became due meanwhile."""
        self._write(data)
        while self.echo_replies:
            pending, self.echo_replies = self.echo_replies, []
            self._write(b"".join(pending))

    def raise_errors(self) -> None:
        if self.errors:
            raise self.errors[0]

    def _wait_until(self, done: Callable[[], bool], doing: str) -> None:
        while not done():
            self.raise_errors()
            self.send(b"")  # flush due echo replies
            self._select(selectors.EVENT_READ, doing)
            self.receive()

    def wait(self, doing: str, xid: int, bundle_reply: int | None = None) -> bytes:
        """Wait for the reply to `xid` (of bundle control type `bundle_reply`, if given),
        raising the first error that arrives meanwhile; return the reply's body."""
        self._wait_until(lambda: xid in self.replies, doing)
        self.raise_errors()
        msg_type, body = self.replies.pop(xid)
        got = (msg_type, int.from_bytes(body[4:6], "big"))
        if bundle_reply is not None and got != (OFPT_BUNDLE_CONTROL, bundle_reply):
            raise OpenFlowError(f"{self.path}: got reply (type, subtype) {got} {doing}")
        return body

    def close(self) -> None:
        """Close the socket; OVS discards a bundle still open on it."""
        self.sel.close()
        self.sock.close()

    def handshake(self) -> None:
        """Exchange HELLOs; a peer without OpenFlow 1.5 gets a clear error."""
        self.xid_names[1] = "HELLO"
        self.send(encode_hello(1))
        self._wait_until(lambda: self.peer_hello is not None, "waiting for HELLO")
        version, body = self.peer_hello or (0, b"")
        versions = set(range(1, version + 1))
        while len(body) >= 8:  # HELLO elements; type 1 is the version bitmap
            el_type, el_len = struct.unpack_from("!HH", body)
            if el_type == 1 and (n := (min(el_len, len(body)) - 4) // 4) > 0:
                words = struct.unpack_from(f"!{n}I", body, 4)
                versions = {v for v in range(32 * n) if words[v // 32] >> v % 32 & 1}
            body = body[max(8, (el_len + 7) // 8 * 8) :]
        if OFP_VERSION not in versions:  # checked first: the peer's HELLO_FAILED is less clear
            offered = ", ".join(f"{v:#04x}" for v in sorted(versions))
            raise OpenFlowError(
                f"OpenFlow version negotiation with {self.path} failed: peer offers {offered}, "
                f"need {OFP_VERSION:#04x} (OpenFlow 1.5; check the bridge's protocols column)"
            )
        self.raise_errors()


def send_bundle(socket_path: str, flow_mods: Sequence[bytes], *, timeout: float = 30.0) -> None:
    """Send OF1.5 messages to the switch at `socket_path` as one ATOMIC|ORDERED bundle.

    `timeout` bounds each wait for the peer (connect, a stalled send or read, the
    commit), not the whole call. On OpenFlowError nothing of the bundle is installed:
    errors for bundle messages stop us before the commit (the closed connection makes
    OVS drop the open bundle), and a failed commit is rolled back by OVS. ValueError
    means a message is not a well-formed OF1.5 message.
    """
    conn = Stream(socket_path, timeout)
    try:
        conn.connect()
        conn.handshake()
        run_bundle(conn, flow_mods, bundle_id=1, first_xid=2)
    finally:  # OVS discards a bundle that is still open when its connection closes
        conn.close()


def run_bundle(conn: Stream, flow_mods: Iterable[bytes], bundle_id: int, first_xid: int) -> int:
    """Open, fill, check (barrier) and commit one bundle on a connected stream.

    `flow_mods` may be a generator: messages are sent while it makes the next ones, and
    an exception from it abandons the bundle before the commit. Uses xids first_xid..
    and returns the next free one. After an error the caller must close the
    connection: the bundle may still be open and late errors may follow.
    """
    flags = OFPBF_ATOMIC | OFPBF_ORDERED
    open_xid, first_add = first_xid, first_xid + 1
    conn.add_total = len(flow_mods) if isinstance(flow_mods, Sequence) else None
    conn.add_xids = range(first_add, 1 << 32)
    conn.xid_names[open_xid] = "bundle open"
    conn.commit_sent, conn.adds_sent, conn.filling = False, 0, False
    conn.send(encode_bundle_control(open_xid, bundle_id, OFPBCT_OPEN_REQUEST, flags))
    conn.wait("opening bundle", open_xid, OFPBCT_OPEN_REPLY)
    limit = _BATCH_BYTES if conn.add_total is not None else _STREAM_BATCH_BYTES
    batch: list[bytes] = []
    size = 0
    xid = first_add
    conn.filling = True
    for msg in flow_mods:
        batch.append(encode_bundle_add(msg, xid, bundle_id, flags))
        xid += 1
        size += len(batch[-1])
        if size >= limit:
            conn.send(b"".join(batch))
            conn.adds_sent = xid - first_add
            batch, size = [], 0
            conn.raise_errors()
    conn.send(b"".join(batch))
    conn.adds_sent = xid - first_add
    conn.add_xids = range(first_add, xid)
    barrier_xid, commit_xid = xid, xid + 1
    conn.xid_names |= {barrier_xid: "barrier", commit_xid: "commit"}
    # OVS answers a bad bundle message with an error but keeps the bundle open, so
    # make sure every such error has arrived before deciding to commit.
    conn.send(encode_header(OFPT_BARRIER_REQUEST, 8, barrier_xid))
    conn.wait("waiting for barrier", barrier_xid)
    conn.commit_sent = True
    conn.send(encode_bundle_control(commit_xid, bundle_id, OFPBCT_COMMIT_REQUEST, flags))
    conn.wait("committing bundle", commit_xid, OFPBCT_COMMIT_REPLY)
    for done in (open_xid, barrier_xid, commit_xid):
        conn.xid_names.pop(done, None)
    conn.add_xids, conn.add_total = range(0), None
    return commit_xid + 1
