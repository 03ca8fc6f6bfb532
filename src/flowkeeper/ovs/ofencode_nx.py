"""NXM fields and Nicira/OF1.5 register actions (resubmit, move, load, learn) as bytes."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from flowkeeper.flows.actions import split_actions

NX_VENDOR_ID = 0x00002320
OFPAT_EXPERIMENTER, OFPAT_SET_FIELD, OFPAT_COPY_FIELD = 0xFFFF, 25, 28
NXAST_RESUBMIT_TABLE, NXAST_LEARN, NXAST_CT_CLEAR = 14, 16, 43
OFP_DEFAULT_PRIORITY = 0x8000

# OpenFlow 1.5 reserved ports (32-bit); the 16-bit form (NX actions) is the low half.
RESERVED_PORTS: dict[str, int] = {
    "IN_PORT": 0xFFFFFFF8,
    "TABLE": 0xFFFFFFF9,
    "NORMAL": 0xFFFFFFFA,
    "FLOOD": 0xFFFFFFFB,
    "ALL": 0xFFFFFFFC,
    "CONTROLLER": 0xFFFFFFFD,
    "LOCAL": 0xFFFFFFFE,
}
OFPP_MAX = 0xFFFFFF00

_NX_HEADER = struct.Struct("!HHIH")  # type, len, vendor, subtype (10 bytes)
_LEARN = struct.Struct("!HHIHHHHQHBxHH")  # nx_action_learn before its specs (32 bytes)
_COPY_FIELD = struct.Struct("!HHHHH2xII4x")  # ofp15_action_copy_field + 2 OXM ids (24 bytes)
_LEARN_SRC_IMMEDIATE, _LEARN_DST_LOAD, _LEARN_DST_OUTPUT = 1 << 13, 1 << 11, 2 << 11
_LEARN_FLAGS = {"send_flow_rem": 1, "delete_learned": 2}
_LEARN_NUMBERS = frozenset(
    {"table", "priority", "idle_timeout", "hard_timeout", "fin_idle_timeout", "fin_hard_timeout"}
)


class UnsupportedFlow(ValueError):
    """A flow this encoder cannot turn into exactly the message ovs-ofctl would send."""


class UnknownPort(UnsupportedFlow):
    """A port name that is not in the port map (it may have appeared since)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown port name {name!r}")
        self.port = name


def nxm(oxm_class: int, field: int, nbytes: int) -> int:
    """An NXM/OXM header without the has-mask bit."""
    return oxm_class << 16 | field << 9 | nbytes


# NXM/OXM field names as OVS prints them in move/load/learn: name -> (header, width in bits).
NXM_FIELDS: dict[str, tuple[int, int]] = {
    "NXM_OF_IN_PORT": (nxm(0, 0, 2), 16),
    "NXM_OF_ETH_DST": (nxm(0, 1, 6), 48),
    "NXM_OF_ETH_SRC": (nxm(0, 2, 6), 48),
    "NXM_OF_ETH_TYPE": (nxm(0, 3, 2), 16),
    "NXM_OF_VLAN_TCI": (nxm(0, 4, 2), 16),
    "NXM_OF_IP_TOS": (nxm(0, 5, 1), 8),
    "NXM_OF_IP_PROTO": (nxm(0, 6, 1), 8),
    "NXM_OF_IP_SRC": (nxm(0, 7, 4), 32),
    "NXM_OF_IP_DST": (nxm(0, 8, 4), 32),
    "NXM_OF_TCP_SRC": (nxm(0, 9, 2), 16),
    "NXM_OF_TCP_DST": (nxm(0, 10, 2), 16),
    "NXM_OF_UDP_SRC": (nxm(0, 11, 2), 16),
    "NXM_OF_UDP_DST": (nxm(0, 12, 2), 16),
    "NXM_OF_ARP_OP": (nxm(0, 15, 2), 16),
    "NXM_OF_ARP_SPA": (nxm(0, 16, 4), 32),
    "NXM_OF_ARP_TPA": (nxm(0, 17, 4), 32),
    "NXM_NX_TUN_ID": (nxm(1, 16, 8), 64),
    "NXM_NX_ARP_SHA": (nxm(1, 17, 6), 48),
    "NXM_NX_ARP_THA": (nxm(1, 18, 6), 48),
    "OXM_OF_IN_PORT": (nxm(0x8000, 0, 4), 32),
    "OXM_OF_METADATA": (nxm(0x8000, 2, 8), 64),
} | {f"NXM_NX_REG{i}": (nxm(1, i, 4), 32) for i in range(16)}
NXM_FIELDS_BY_HEADER = {header: width for header, width in NXM_FIELDS.values()}
# The OXM header OVS uses in OpenFlow 1.5 copy_field/set_field for fields that have one.
OXM_FOR_NXM = {
    NXM_FIELDS[name][0]: nxm(0x8000, field, NXM_FIELDS[name][0] & 0xFF)
    for name, field in (
        ("NXM_OF_ETH_DST", 3),
        ("NXM_OF_ETH_SRC", 4),
        ("NXM_OF_ETH_TYPE", 5),
        ("NXM_OF_IP_PROTO", 10),
        ("NXM_OF_IP_SRC", 11),
        ("NXM_OF_IP_DST", 12),
        ("NXM_OF_TCP_SRC", 13),
        ("NXM_OF_TCP_DST", 14),
        ("NXM_OF_UDP_SRC", 15),
        ("NXM_OF_UDP_DST", 16),
        ("NXM_OF_ARP_OP", 21),
        ("NXM_OF_ARP_SPA", 22),
        ("NXM_OF_ARP_TPA", 23),
        ("NXM_NX_ARP_SHA", 24),
        ("NXM_NX_ARP_THA", 25),
        ("NXM_NX_TUN_ID", 38),
    )
}


@dataclass(frozen=True, slots=True)
class Subfield:
    """Bits ofs..ofs+n_bits-1 of the NXM field with `header`."""

    header: int
    ofs: int
    n_bits: int


def parse_subfield(text: str) -> Subfield:
    """Parse `NAME[]`, `NAME[a..b]` or `NAME[a]`."""
    name, bracket, rest = text.partition("[")
    if name not in NXM_FIELDS:
        raise UnsupportedFlow(f"unknown NXM field {name!r}")
    header, width = NXM_FIELDS[name]
    if not bracket or not rest.endswith("]"):
        raise UnsupportedFlow(f"bad subfield {text!r}")
    bits = rest[:-1]
    try:
        if bits == "":
            start, end = 0, width - 1
        else:
            low, dots, high = bits.partition("..")
            start = int(low)
            end = int(high) if dots else start
    except ValueError:
        raise UnsupportedFlow(f"bad bit range in {text!r}") from None
    if not 0 <= start <= end < width:
        raise UnsupportedFlow(f"bit range out of field in {text!r}")
    return Subfield(header, start, end - start + 1)


def pad8(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 8)


def port_number(name: str, ports: Mapping[str, int]) -> int:
    """The OpenFlow 1.5 port number of a canonical port (name, number or reserved)."""
    if name in RESERVED_PORTS:
        return RESERVED_PORTS[name]
    if name.isdigit():
        number = int(name)
    elif name in ports:
        number = ports[name]
    else:
        raise UnknownPort(name)
    if not 0 < number < OFPP_MAX:
        raise UnsupportedFlow(f"port {name!r} ({number}) is not a switch port number")
    return number


def port16(name: str, ports: Mapping[str, int]) -> int:
    """The port as Nicira actions carry it (OpenFlow 1.0, 16 bits)."""
    number = port_number(name, ports)
    if number >= OFPP_MAX:
        return number - 0xFFFF0000
    if number >= 0xFF00:
        raise UnsupportedFlow(f"port {name!r} ({number}) does not fit in 16 bits")
    return number


def _nx_action(subtype: int, body: bytes) -> bytes:
    length = (_NX_HEADER.size + len(body) + 7) // 8 * 8
    return pad8(_NX_HEADER.pack(OFPAT_EXPERIMENTER, length, NX_VENDOR_ID, subtype) + body)


def ct_clear() -> bytes:
    return _nx_action(NXAST_CT_CLEAR, b"")


def resubmit(action: str, ports: Mapping[str, int]) -> bytes:
    """`resubmit(PORT,TABLE)` (either part may be empty) as NXAST_RESUBMIT_TABLE."""
    inner = action.removeprefix("resubmit(").removesuffix(")")
    port, comma, table = inner.partition(",")
    if not comma or "," in table or not action.endswith(")") or not (port or table):
        raise UnsupportedFlow(f"unsupported resubmit {action!r}")
    in_port = port16(port, ports) if port else 0xFFF8
    table_id = parse_number(table, 254, action) if table else 0xFF
    return _nx_action(NXAST_RESUBMIT_TABLE, struct.pack("!HB3x", in_port, table_id))


def move(arg: str) -> bytes:
    """`move:SRC[..]->DST[..]` as OpenFlow 1.5 COPY_FIELD (OVS has no NXAST_REG_MOVE in 1.5)."""
    src_text, arrow, dst_text = arg.partition("->")
    if not arrow:
        raise UnsupportedFlow(f"move needs SRC->DST, got {arg!r}")
    src, dst = parse_subfield(src_text), parse_subfield(dst_text)
    if src.n_bits != dst.n_bits:
        raise UnsupportedFlow(f"move between subfields of different widths: {arg!r}")
    src_oxm, dst_oxm = (OXM_FOR_NXM.get(h, h) for h in (src.header, dst.header))
    return _COPY_FIELD.pack(
        OFPAT_COPY_FIELD, _COPY_FIELD.size, src.n_bits, src.ofs, dst.ofs, src_oxm, dst_oxm
    )


def load(arg: str) -> bytes:
    """`load:VALUE->DST[..]` as OpenFlow 1.5 SET_FIELD, masked unless it sets the whole field."""
    value_text, arrow, dst_text = arg.partition("->")
    if not arrow:
        raise UnsupportedFlow(f"load needs VALUE->DST, got {arg!r}")
    dst = parse_subfield(dst_text)
    value = parse_number(value_text, (1 << dst.n_bits) - 1, arg)
    nbytes = dst.header & 0xFF
    width = NXM_FIELDS_BY_HEADER[dst.header]
    oxm = OXM_FOR_NXM.get(dst.header, dst.header)
    if dst.n_bits == width:
        tlv = struct.pack("!I", oxm) + value.to_bytes(nbytes, "big")
    else:
        mask = ((1 << dst.n_bits) - 1) << dst.ofs
        header = oxm & ~0xFF | 0x100 | 2 * nbytes
        raw = (value << dst.ofs).to_bytes(nbytes, "big") + mask.to_bytes(nbytes, "big")
        tlv = struct.pack("!I", header) + raw
    return pad8(struct.pack("!HH", OFPAT_SET_FIELD, (4 + len(tlv) + 7) // 8 * 8) + tlv)


def learn(action: str) -> bytes:
    """`learn(...)` as NXAST_LEARN: match from field, load immediate or from field, output."""
    if not action.startswith("learn(") or not action.endswith(")"):
        raise UnsupportedFlow(f"bad learn action {action!r}")
    numbers = {"table": 1, "priority": OFP_DEFAULT_PRIORITY}
    cookie = flags = 0
    specs: list[bytes] = []
    for item in split_actions(action[len("learn(") : -1]):
        key, eq, value = item.partition("=")
        if eq and key in _LEARN_NUMBERS:
            limit = 254 if key == "table" else 0xFFFF
            numbers[key] = parse_number(value, limit, action)
        elif eq and key == "cookie":
            cookie = parse_number(value, 2**64 - 1, action)
        elif item in _LEARN_FLAGS:
            flags |= _LEARN_FLAGS[item]
        elif item.startswith("load:"):
            specs.append(_learn_load(item.removeprefix("load:")))
        elif item.startswith("output:"):
            src = parse_subfield(item.removeprefix("output:"))
            specs.append(struct.pack("!HIH", src.n_bits | _LEARN_DST_OUTPUT, src.header, src.ofs))
        elif "[" in key and (not eq or "[" in value):
            dst = parse_subfield(key)
            src = parse_subfield(value) if eq else dst
            specs.append(_learn_spec(src, dst, 0))
        else:
            raise UnsupportedFlow(f"unsupported learn argument {item!r}")
    head = _LEARN.pack(
        OFPAT_EXPERIMENTER,
        (_LEARN.size + sum(map(len, specs)) + 7) // 8 * 8,
        NX_VENDOR_ID,
        NXAST_LEARN,
        numbers.get("idle_timeout", 0),
        numbers.get("hard_timeout", 0),
        numbers["priority"],
        cookie,
        flags,
        numbers["table"],
        numbers.get("fin_idle_timeout", 0),
        numbers.get("fin_hard_timeout", 0),
    )
    return pad8(head + b"".join(specs))


def _learn_spec(src: Subfield, dst: Subfield, dst_type: int) -> bytes:
    if src.n_bits != dst.n_bits:
        raise UnsupportedFlow("learn spec between subfields of different widths")
    return struct.pack("!HIHIH", src.n_bits | dst_type, src.header, src.ofs, dst.header, dst.ofs)


def _learn_load(arg: str) -> bytes:
    src_text, arrow, dst_text = arg.partition("->")
    if not arrow:
        raise UnsupportedFlow(f"learn load needs SRC->DST, got {arg!r}")
    dst = parse_subfield(dst_text)
    if "[" in src_text:
        return _learn_spec(parse_subfield(src_text), dst, _LEARN_DST_LOAD)
    value = parse_number(src_text, (1 << dst.n_bits) - 1, arg)
    immediate = value.to_bytes(2 * ((dst.n_bits + 15) // 16), "big")
    header = struct.pack("!H", dst.n_bits | _LEARN_SRC_IMMEDIATE | _LEARN_DST_LOAD)
    return header + immediate + struct.pack("!IH", dst.header, dst.ofs)


def parse_number(text: str, limit: int, context: str = "") -> int:
    """An integer in 0..limit, in any base int() accepts, or UnsupportedFlow."""
    where = f" in {context!r}" if context else ""
    try:
        value = int(text, 0)
    except ValueError:
        raise UnsupportedFlow(f"bad number {text!r}{where}") from None
    if not 0 <= value <= limit:
        raise UnsupportedFlow(f"number {text!r} out of range{where}")
    return value
