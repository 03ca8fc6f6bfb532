"""Pure encoder of canonical Flow records into OpenFlow 1.5 FLOW_MOD messages (no I/O)."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flowkeeper.flows.actions import split_actions
from flowkeeper.flows.record import Flow, Match
from flowkeeper.ovs import ofencode_ct as ct
from flowkeeper.ovs import ofencode_nx as nx
from flowkeeper.ovs.ofencode_nx import UnknownPort, UnsupportedFlow, nxm, pad8, port_number

__all__ = [
    "ADD",
    "DELETE_STRICT",
    "MODIFY_STRICT",
    "FlowModEncoder",
    "UnknownPort",
    "UnsupportedFlow",
    "encode_flow_mod",
]

OFP_VERSION, OFPT_FLOW_MOD = 0x06, 14
ADD, MODIFY_STRICT, DELETE_STRICT = 0, 2, 4
OFP_NO_BUFFER = OFPP_ANY = OFPG_ANY = 0xFFFFFFFF
OFPMT_OXM, OFPIT_GOTO_TABLE, OFPIT_APPLY_ACTIONS = 1, 1, 4
OFPAT_OUTPUT, OFPAT_PUSH_VLAN, OFPAT_POP_VLAN, OFPAT_GROUP = 0, 17, 18, 22
OFPAT_DEC_NW_TTL, OFPAT_SET_FIELD = 24, 25
OFPVID_PRESENT = 0x1000
FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIHH")  # ofp_header + fixed part of ofp_flow_mod (48)
_OUTPUT = struct.Struct("!HHIH6x")
_CACHE_LIMIT = 1 << 16
_IP, _ARP, _RARP, _IPV6 = 0x800, 0x806, 0x8035, 0x86DD
MAC, IPV4, INT = "mac", "ipv4", "int"


@dataclass(frozen=True, slots=True)
class OxmField:
    """An OXM/NXM field: header (without has-mask bit), value syntax, maskable or not."""

    header: int
    kind: str = INT
    maskable: bool = True


def _oxm(field: int, nbytes: int, kind: str = INT, maskable: bool = True) -> OxmField:
    return OxmField(nxm(0x8000, field, nbytes), kind, maskable)


# Match fields in the order OVS writes them (every prerequisite before the fields needing it).
MATCH_FIELDS: dict[str, OxmField] = {
    "conj_id": OxmField(ct.CONJ_ID_HEADER, maskable=False),
    "in_port": _oxm(0, 4, maskable=False),
    "dl_src": _oxm(4, 6, MAC),
    "dl_dst": _oxm(3, 6, MAC),
    "dl_type": _oxm(5, 2, maskable=False),
    "dl_vlan": _oxm(6, 2, maskable=False),  # OXM vlan_vid with OFPVID_PRESENT
    "vlan_tci": _oxm(6, 2),  # as OXM vlan_vid (+ vlan_pcp), like OVS in OpenFlow 1.5
    "nw_src": _oxm(11, 4, IPV4),
    "nw_dst": _oxm(12, 4, IPV4),
    "nw_proto": _oxm(10, 1, maskable=False),
    "tp_src": _oxm(13, 2),  # TCP; UDP and SCTP in _TP_FIELDS
    "tp_dst": _oxm(14, 2),
    "icmp_type": _oxm(19, 1, maskable=False),
    "icmp_code": _oxm(20, 1, maskable=False),
    "arp_op": _oxm(21, 2, maskable=False),
    "arp_spa": _oxm(22, 4, IPV4),
    "arp_tpa": _oxm(23, 4, IPV4),
    "arp_sha": _oxm(24, 6, MAC),
    "arp_tha": _oxm(25, 6, MAC),
    "tun_id": _oxm(38, 8),
}
# Registers go out as OXM_OF_PKT_REG pairs (see ofencode_ct.xreg_tlvs), then conntrack.
MATCH_FIELDS |= {f"reg{i}": OxmField(nxm(1, i, 4)) for i in range(ct.N_REGS)}
MATCH_FIELDS |= {
    "ct_state": OxmField(ct.CT_STATE_HEADER),
    "ct_zone": OxmField(ct.CT_ZONE_HEADER, maskable=False),
    "ct_mark": OxmField(ct.CT_MARK_HEADER),
}
_REGS = frozenset(f"reg{i}" for i in range(ct.N_REGS))
_XREGS = "(regs)"  # the plan's place for every register of the match
_RANK = {name: i for i, name in enumerate(MATCH_FIELDS)}
_TP_FIELDS = {6: (13, 14), 17: (15, 16), 132: (17, 18)}
_NEEDS = {"nw_src": {_IP}, "nw_dst": {_IP}, "nw_proto": {_IP, _IPV6}}
_NEEDS |= {f"arp_{x}": {_ARP, _RARP} for x in ("op", "spa", "tpa", "sha", "tha")}
_NEEDS |= {"tp_src": {_IP, _IPV6}, "tp_dst": {_IP, _IPV6}}
_NEEDS |= {"icmp_type": {_IP}, "icmp_code": {_IP}}
_ICMP = 1

_SETTABLE = ("tun_id", "dl_dst", "dl_src", "nw_src", "nw_dst", "arp_op", "arp_spa", "arp_tpa")
SET_FIELDS: dict[str, OxmField] = {
    name: MATCH_FIELDS[name] for name in (*_SETTABLE, "arp_sha", "arp_tha")
}
SET_FIELDS["vlan_vid"] = _oxm(6, 2)
SET_FIELDS |= {f"reg{i}": OxmField(nxm(1, i, 4)) for i in range(16)}
_OUTPUT_KEYWORDS = frozenset({"IN_PORT", "NORMAL", "LOCAL", "FLOOD", "ALL"})
_NOT_IN_PORTS = (nx.RESERVED_PORTS.keys() - {"LOCAL"}) | {"ANY", "NONE"}


def field_tlv(field: OxmField, text: str) -> bytes:
    """One OXM TLV from a canonical value, `VALUE` or `VALUE/MASK` (value ANDed with mask)."""
    nbytes = field.header & 0xFF
    value_text, slash, mask_text = text.partition("/")
    value = _raw(field.kind, nbytes, value_text)
    if not slash:
        return struct.pack("!I", field.header) + value
    if not field.maskable:
        raise UnsupportedFlow(f"field {field.header:#010x} takes no mask ({text!r})")
    if field.kind == IPV4 and mask_text.isdigit():
        prefix = int(mask_text)
        if prefix > 32:
            raise UnsupportedFlow(f"bad prefix in {text!r}")
        mask = (((1 << prefix) - 1) << (32 - prefix)).to_bytes(4, "big")
    else:
        mask = _raw(field.kind, nbytes, mask_text)
    if mask == b"\xff" * nbytes:
        return struct.pack("!I", field.header) + value
    value = bytes(v & m for v, m in zip(value, mask, strict=True))
    header = field.header & ~0xFF | 0x100 | 2 * nbytes
    return struct.pack("!I", header) + value + mask


def _raw(kind: str, nbytes: int, text: str) -> bytes:
    try:
        if kind == MAC:
            if len(text) == 17 and text[2::3] == ":::::":  # the canonical spelling
                return bytes.fromhex(text.replace(":", ""))
            parts = text.split(":")
            if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
                raise ValueError(text)
            return bytes(int(p, 16) for p in parts)
        if kind == IPV4:
            return ipaddress.IPv4Address(text).packed
        return int(text, 0).to_bytes(nbytes, "big")
    except (ValueError, OverflowError):
        raise UnsupportedFlow(f"bad {kind} value {text!r} for a {nbytes}-byte field") from None


class FlowModEncoder:
    """Encodes flows against one port map (name -> ofport), caching repeated parts."""

    def __init__(self, ports: Mapping[str, int]) -> None:
        self.ports = ports
        self._instructions: dict[str, bytes] = {}
        self._tlvs: dict[tuple[str, str], bytes] = {}
        # field order by shape (registers as one entry), and the register names
        self._plans: dict[tuple[object, ...], tuple[tuple[str, ...], tuple[str, ...], str]] = {}

    def flow_mod(self, flow: Flow, command: int, xid: int = 0) -> bytes:
        """OFPT_FLOW_MOD for `flow`: ADD, MODIFY_STRICT or DELETE_STRICT (match only)."""
        if command not in (ADD, MODIFY_STRICT, DELETE_STRICT):
            raise UnsupportedFlow(f"unsupported flow_mod command {command}")
        if not (0 <= flow.table <= 254 and 0 <= flow.priority <= 0xFFFF):
            raise UnsupportedFlow(f"table or priority out of range: {flow.render_key()}")
        match = self.match(flow.match)
        if command != DELETE_STRICT and "ct(" in flow.actions:
            dl_type = dict(flow.match).get("dl_type", "")
            if dl_type not in ("0x800", "0x86dd"):  # ovs-ofctl: OFPBAC_MATCH_INCONSISTENT
                raise UnsupportedFlow(f"ct() needs an ip or ipv6 match: {flow.render()}")
        instructions = b""
        if command == DELETE_STRICT:
            cookie = idle = hard = 0
        else:
            cookie, idle, hard = flow.cookie, flow.idle_timeout, flow.hard_timeout
            if not (0 <= cookie < 2**64 and 0 <= idle <= 0xFFFF and 0 <= hard <= 0xFFFF):
                raise UnsupportedFlow(f"cookie or timeout out of range: {flow.render()}")
            if command == MODIFY_STRICT:
                cookie = 0  # OF1.5: a filter (mask 0: none), never a new cookie; as ovs-ofctl
            cached = self._instructions.get(flow.actions)
            instructions = self.instructions(flow.actions) if cached is None else cached
        size = FLOW_MOD.size + len(match) + len(instructions)
        head = FLOW_MOD.pack(
            OFP_VERSION, OFPT_FLOW_MOD, size, xid, cookie, 0, flow.table, command,
            idle, hard, flow.priority, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0, 0,
        )  # fmt: skip
        return head + match + instructions

    def match(self, match: Match) -> bytes:
        """ofp_match (OXM), padded to 8 bytes; prerequisites checked, ordered first."""
        fields = dict(match)
        if len(fields) != len(match):
            raise UnsupportedFlow(f"duplicate match field in {match!r}")
        plan_key = (tuple(fields), fields.get("dl_type"), fields.get("nw_proto"))
        order = self._plans.get(plan_key)
        if order is None:
            unknown = sorted(set(fields) - _RANK.keys())
            if unknown:
                raise UnsupportedFlow(f"unsupported match field(s) {', '.join(unknown)}")
            _check_prerequisites(fields)
            names = sorted(fields, key=_RANK.__getitem__)
            regs = tuple(n for n in names if n in _REGS)
            if regs:
                at = names.index(regs[0])
                names = [n for n in names if n not in _REGS]
                names.insert(at, _XREGS)
            order = self._plans[plan_key] = (tuple(names), regs, _XREGS + ",".join(regs))
        cache = self._tlvs
        tlvs = []
        order_names, regs, reg_key = order
        for name in order_names:
            if name == _XREGS:  # every register at once: they pair up into 64-bit OXMs
                key = (reg_key, ",".join([fields[n] for n in regs]))
                tlv = cache.get(key)
                if tlv is None:
                    tlv = ct.xreg_tlvs({int(n[3:]): fields[n] for n in regs})
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    cache[key] = tlv
                tlvs.append(tlv)
                continue
            value = fields[name]
            tlv = cache.get((name, value))
            if tlv is None:
                tlv = self._match_tlv(name, value, fields)
                if name not in ("tp_src", "tp_dst"):  # those depend on nw_proto too
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    cache[name, value] = tlv
            tlvs.append(tlv)
        body = b"".join(tlvs)
        return pad8(struct.pack("!HH", OFPMT_OXM, 4 + len(body)) + body)

    def _match_tlv(self, name: str, value: str, fields: Mapping[str, str]) -> bytes:
        if name == "in_port":
            if value in _NOT_IN_PORTS:
                raise UnsupportedFlow(f"unsupported in_port={value}")
            return struct.pack("!II", MATCH_FIELDS[name].header, port_number(value, self.ports))
        if name == "dl_vlan":
            vid = int(value) if value.isdigit() else -1
            if not 0 <= vid <= 0xFFF:
                raise UnsupportedFlow(f"unsupported dl_vlan={value}")
            return struct.pack("!IH", MATCH_FIELDS[name].header, OFPVID_PRESENT | vid)
        if name == "vlan_tci":
            return _vlan_tci(value)
        if name in ("tp_src", "tp_dst"):
            src, dst = _TP_FIELDS[int(fields["nw_proto"])]
            return field_tlv(_oxm(src if name == "tp_src" else dst, 2), value)
        if name == "ct_state":
            return ct.masked_tlv(ct.CT_STATE_HEADER, 4, *ct.ct_state(value))
        return field_tlv(MATCH_FIELDS[name], value)

    def instructions(self, actions: str) -> bytes:
        """APPLY_ACTIONS (if any action) then GOTO_TABLE (if last); none for `drop`."""
        tokens = [] if actions == "drop" else split_actions(actions)
        goto = b""
        if tokens and tokens[-1].startswith("goto_table:"):
            table = _int(tokens.pop().removeprefix("goto_table:"), 254)
            goto = struct.pack("!HHB3x", OFPIT_GOTO_TABLE, 8, table)
        conj = sum(token.startswith("conjunction(") for token in tokens)
        if conj and (conj != len(tokens) or goto):  # ovs-ofctl refuses the mix
            raise UnsupportedFlow(f"conjunction with other actions: {actions!r}")
        body = b"".join(self.action(token) for token in tokens)
        apply = struct.pack("!HH4x", OFPIT_APPLY_ACTIONS, 8 + len(body)) + body if body else b""
        if len(self._instructions) >= _CACHE_LIMIT:
            self._instructions.clear()
        self._instructions[actions] = result = apply + goto
        return result

    def action(self, token: str) -> bytes:
        """One canonical action as OpenFlow 1.5 / Nicira action bytes."""
        if token.startswith("resubmit("):
            return nx.resubmit(token, self.ports)
        if token.startswith("learn("):
            return nx.learn(token)
        if token.startswith("ct("):
            return ct.ct(token)
        if token.startswith("conjunction("):
            return ct.conjunction(token)
        if token in _OUTPUT_KEYWORDS:
            return self._output(token)
        if token in _BARE:
            return _BARE[token]
        name, sep, arg = token.partition(":")
        handler = _WITH_ARG.get(name) if sep else None
        if handler is None:
            raise UnsupportedFlow(f"unsupported action {token!r}")
        return handler(self, arg)

    def _output(self, port: str) -> bytes:
        if port in ("CONTROLLER", "TABLE", "ANY", "NONE"):
            raise UnsupportedFlow(f"unsupported output to {port}")
        return _OUTPUT.pack(OFPAT_OUTPUT, 16, port_number(port, self.ports), 0)


def _check_prerequisites(fields: Mapping[str, str]) -> None:
    for name in ("dl_type", "nw_proto"):
        if "/" in fields.get(name, ""):
            raise UnsupportedFlow(f"{name} takes no mask ({fields[name]!r})")
    dl_type = _int(fields["dl_type"], 0xFFFF) if "dl_type" in fields else None
    for name, allowed in _NEEDS.items():
        if name in fields and dl_type not in allowed:
            raise UnsupportedFlow(f"{name} needs dl_type in {sorted(allowed)}, got {dl_type}")
    if "dl_vlan" in fields and "vlan_tci" in fields:
        raise UnsupportedFlow("dl_vlan and vlan_tci in one match")
    proto = _int(fields["nw_proto"], 255) if "nw_proto" in fields else None
    for name in ("tp_src", "tp_dst"):
        if name in fields and proto not in _TP_FIELDS:
            raise UnsupportedFlow(f"{name} needs nw_proto 6, 17 or 132")
    for name in ("icmp_type", "icmp_code"):
        if name in fields and proto != _ICMP:
            raise UnsupportedFlow(f"{name} needs nw_proto 1")


def _vlan_tci(text: str) -> bytes:
    """vlan_tci=V/M the way OVS writes it in OXM: vlan_vid (VID+CFI bits), then vlan_pcp."""
    value_text, slash, mask_text = text.partition("/")
    tci, mask = _int(value_text, 0xFFFF), _int(mask_text, 0xFFFF) if slash else 0xFFFF
    tci &= mask
    vid, vid_mask, pcp_mask = tci & 0x1FFF, mask & 0x1FFF, mask >> 13
    tagged = vid_mask & vid & OFPVID_PRESENT  # PCP can be matched on tagged packets only
    untagged = vid_mask & OFPVID_PRESENT and tci == 0  # no tag: a TCI of 0, PCP implied
    if pcp_mask not in (0, 7) or (pcp_mask and not (tagged or untagged)):
        raise UnsupportedFlow(f"vlan_tci={text} has no exact OpenFlow 1.5 (OXM) form")
    header = MATCH_FIELDS["dl_vlan"].header
    out = b""
    if vid_mask == 0x1FFF:
        out = struct.pack("!IH", header, vid)
    elif vid_mask:
        out = struct.pack("!IHH", header & ~0xFF | 0x100 | 4, vid, vid_mask)
    if pcp_mask and tagged:
        out += struct.pack("!IB", nxm(0x8000, 7, 1), tci >> 13)
    return out


def _set_field(_enc: FlowModEncoder, arg: str) -> bytes:
    value, arrow, name = arg.partition("->")
    field = SET_FIELDS.get(name)
    if not arrow or field is None:
        raise UnsupportedFlow(f"unsupported set_field:{arg}")
    if name == "vlan_vid" and not (_int(value, 0x1FFF) >= OFPVID_PRESENT):
        raise UnsupportedFlow(f"set_field vlan_vid without OFPVID_PRESENT: {arg!r}")
    tlv = field_tlv(field, value)
    return pad8(struct.pack("!HH", OFPAT_SET_FIELD, (4 + len(tlv) + 7) // 8 * 8) + tlv)


def _push_vlan(_enc: FlowModEncoder, arg: str) -> bytes:
    ethertype = _int(arg, 0xFFFF)
    if ethertype not in (0x8100, 0x88A8):
        raise UnsupportedFlow(f"unsupported push_vlan:{arg}")
    return struct.pack("!HHH2x", OFPAT_PUSH_VLAN, 8, ethertype)


def _group(_enc: FlowModEncoder, arg: str) -> bytes:
    return struct.pack("!HHI", OFPAT_GROUP, 8, _int(arg, 0xFFFFFF00))


def _int(text: str, limit: int) -> int:
    return nx.parse_number(text, limit)


_BARE: dict[str, bytes] = {
    "pop_vlan": struct.pack("!HH4x", OFPAT_POP_VLAN, 8),
    "dec_ttl": struct.pack("!HH4x", OFPAT_DEC_NW_TTL, 8),
    "ct_clear": nx.ct_clear(),
}
_WITH_ARG: dict[str, Callable[[FlowModEncoder, str], bytes]] = {
    "output": FlowModEncoder._output,
    "set_field": _set_field,
    "push_vlan": _push_vlan,
    "group": _group,
    "move": lambda _enc, arg: nx.move(arg),
    "load": lambda _enc, arg: nx.load(arg),
}


def encode_flow_mod(flow: Flow, command: int, ports: Mapping[str, int], xid: int = 0) -> bytes:
    """OpenFlow 1.5 FLOW_MOD for one canonical flow; UnsupportedFlow if not exactly encodable."""
    return FlowModEncoder(ports).flow_mod(flow, command, xid)
