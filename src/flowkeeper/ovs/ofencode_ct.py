"""Conntrack and conjunction pieces of the OpenFlow 1.5 encoder, as OVS 3.1 writes them.

Matches: ct_state (flags or number, masked), registers (OVS sends reg0..reg15 in
OpenFlow 1.5 as the 64-bit OXM_OF_PKT_REG<N> pairs, xreg N = reg 2N high, reg 2N+1 low).
Actions: NXAST_CT (commit, force, table, zone immediate or from a 16-bit subfield, nested
exec actions) and NXAST_CONJUNCTION. See lib/nx-match.c (nx_put_raw) and
lib/ofp-actions.c (encode_CT, encode_CONJUNCTION) in OVS.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from flowkeeper.flows.actions import split_actions
from flowkeeper.ovs.ofencode_nx import (
    NX_VENDOR_ID,
    OFPAT_EXPERIMENTER,
    OFPAT_SET_FIELD,
    UnsupportedFlow,
    nxm,
    pad8,
    parse_number,
    parse_subfield,
)

NXAST_CONJUNCTION, NXAST_CT = 34, 35
NX_CT_F_COMMIT, NX_CT_F_FORCE = 1, 2
NX_CT_RECIRC_NONE = 0xFF
OFPXMC_PACKET_REGS = 0x8001
N_REGS = 16
CONJ_ID_HEADER = nxm(1, 37, 4)
CT_STATE_HEADER, CT_ZONE_HEADER, CT_MARK_HEADER = nxm(1, 105, 4), nxm(1, 106, 2), nxm(1, 107, 4)
CT_STATE_FLAGS = {
    "new": 0x01,
    "est": 0x02,
    "rel": 0x04,
    "rpl": 0x08,
    "inv": 0x10,
    "trk": 0x20,
    "snat": 0x40,
    "dnat": 0x80,
}
_CT_STATE_ALLOWED = 0xFF
_U32 = 0xFFFFFFFF
_CT = struct.Struct("!HHIHHIHB3xH")  # nx_action_conntrack (24 bytes)
_CONJ = struct.Struct("!HHIHBBI")  # nx_action_conjunction (16 bytes)


def ct_state(text: str) -> tuple[int, int]:
    """(value, mask) of a ct_state match, in any syntax ovs-ofctl parses."""
    if text[:1] in "+-":
        flags = mask = 0
        rest = text
        while rest:
            sign, rest = rest[0], rest[1:]
            if sign not in "+-":
                raise UnsupportedFlow(f"bad ct_state {text!r}")
            name = rest
            for sep in ("+", "-"):
                name = name.split(sep, 1)[0]
            bit = CT_STATE_FLAGS.get(name)
            if bit is None or mask & bit:  # unknown, or given twice (OVS refuses both)
                raise UnsupportedFlow(f"bad ct_state {text!r}")
            mask |= bit
            flags |= bit if sign == "+" else 0
            rest = rest[len(name) :]
        return flags, mask
    value_text, slash, mask_text = text.partition("/")
    if slash:
        value = parse_number(value_text, _CT_STATE_ALLOWED, text)
        return value, parse_number(mask_text, _CT_STATE_ALLOWED, text)
    value = 0
    for part in text.split("|"):
        bit = CT_STATE_FLAGS.get(part)
        value |= parse_number(part, _CT_STATE_ALLOWED, text) if bit is None else bit
    return value, _CT_STATE_ALLOWED  # OVS: every known flag, as given


def masked_tlv(header: int, nbytes: int, value: int, mask: int) -> bytes:
    """An NXM/OXM TLV of `nbytes`: none for a zero mask, unmasked for all ones (as OVS)."""
    full = (1 << (8 * nbytes)) - 1
    mask &= full
    if mask == 0:
        return b""
    if mask == full:
        return struct.pack("!I", header) + value.to_bytes(nbytes, "big")
    masked = header & ~0xFF | 0x100 | 2 * nbytes
    raw = (value & mask).to_bytes(nbytes, "big") + mask.to_bytes(nbytes, "big")
    return struct.pack("!I", masked) + raw


def reg_value(text: str) -> tuple[int, int]:
    """(value, mask) of a 32-bit register match `V` or `V/M`."""
    value_text, slash, mask_text = text.partition("/")
    value = parse_number(value_text, _U32, text)
    mask = parse_number(mask_text, _U32, text) if slash else _U32
    return value & mask, mask


def xreg_tlvs(regs: Mapping[int, str]) -> bytes:
    """Register matches as OpenFlow 1.5 sends them: OXM_OF_PKT_REG<N>, N = reg // 2."""
    out = b""
    for xreg in sorted({i // 2 for i in regs}):
        value = mask = 0
        for i, shift in ((2 * xreg, 32), (2 * xreg + 1, 0)):
            if i in regs:
                v, m = reg_value(regs[i])
                value, mask = value | v << shift, mask | m << shift
        out += masked_tlv(nxm(OFPXMC_PACKET_REGS, xreg, 8), 8, value, mask)
    return out


def conjunction(token: str) -> bytes:
    """`conjunction(ID,K/N)` as NXAST_CONJUNCTION (clause K-1 of N; 2 <= N <= 64)."""
    inner = token.removeprefix("conjunction(").removesuffix(")")
    id_text, comma, clause_text = inner.partition(",")
    k_text, slash, n_text = clause_text.partition("/")
    if not (comma and slash and token.endswith(")") and k_text.isdigit() and n_text.isdigit()):
        raise UnsupportedFlow(f"unsupported conjunction {token!r}")
    conj_id = parse_number(id_text, _U32, token)
    k, n = int(k_text), int(n_text)
    if not (2 <= n <= 64 and 1 <= k <= n):
        raise UnsupportedFlow(f"bad conjunction clause in {token!r}")
    return _CONJ.pack(
        OFPAT_EXPERIMENTER, _CONJ.size, NX_VENDOR_ID, NXAST_CONJUNCTION, k - 1, n, conj_id
    )


def ct_mark_set_field(action: str) -> bytes:
    """`set_field:V[/M]->ct_mark` (inside ct exec) as OFPAT_SET_FIELD of NXM_NX_CT_MARK."""
    value_text, arrow, name = action.removeprefix("set_field:").partition("->")
    if not arrow or name != "ct_mark":
        raise UnsupportedFlow(f"unsupported action in ct exec: {action!r}")
    value, mask = reg_value(value_text)
    tlv = masked_tlv(CT_MARK_HEADER, 4, value, mask)
    return pad8(struct.pack("!HH", OFPAT_SET_FIELD, (4 + len(tlv) + 7) // 8 * 8) + tlv)


def ct(token: str) -> bytes:
    """`ct(commit,force,table=N,zone=N|zone=FIELD[a..b],exec(...))` as NXAST_CT."""
    if not token.startswith("ct(") or not token.endswith(")"):
        raise UnsupportedFlow(f"bad ct action {token!r}")
    flags, table, zone_src, zone = 0, NX_CT_RECIRC_NONE, 0, 0
    nested = b""
    for arg in split_actions(token[3:-1]):
        key, eq, value = arg.partition("=")
        if not eq and key in ("commit", "force"):
            flags |= NX_CT_F_COMMIT if key == "commit" else NX_CT_F_FORCE
        elif eq and key == "table":
            table = parse_number(value, 254, token)  # 255 is "none"; OVS refuses it
        elif eq and key == "zone":
            if "[" in value:
                field = parse_subfield(value)
                if field.n_bits != 16:
                    raise UnsupportedFlow(f"ct zone needs a 16-bit subfield: {token!r}")
                zone_src, zone = field.header, field.ofs << 6 | (field.n_bits - 1)
            else:
                zone = parse_number(value, 0xFFFF, token)
        elif arg.startswith("exec(") and arg.endswith(")"):
            nested += b"".join(ct_mark_set_field(a) for a in split_actions(arg[5:-1]))
        else:  # nat, alg: not encoded (ovs-ofctl takes them)
            raise UnsupportedFlow(f"unsupported ct argument {arg!r}")
    if nested and not flags & NX_CT_F_COMMIT:
        raise UnsupportedFlow(f"ct exec needs commit: {token!r}")
    head = _CT.pack(
        OFPAT_EXPERIMENTER, _CT.size + len(nested), NX_VENDOR_ID, NXAST_CT,
        flags, zone_src, zone, table, 0,
    )  # fmt: skip
    return pad8(head + nested)
