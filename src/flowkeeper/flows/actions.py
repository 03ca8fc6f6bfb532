"""Action lists in one canonical spelling, as OVS prints them back (OpenFlow 1.5)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from flowkeeper.flows.fields import FIELD_ALIASES, IPV4_FIELDS, MAC_FIELDS, canonical_value

_KEYWORD_PORTS = {"in_port": "IN_PORT", "normal": "NORMAL", "local": "LOCAL", "flood": "FLOOD"}
_KEYWORD_PORTS |= {"all": "ALL", "controller": "CONTROLLER"}
_BARE_ACTIONS = frozenset({"drop", "pop_vlan", "ct_clear", "dec_ttl"})

# Whole-field NXM/OXM registers that `load:` may target and OVS prints as set_field.
_NXM_FIELDS: dict[str, str] = {
    "NXM_NX_TUN_ID": "tun_id",
    "OXM_OF_TUNNEL_ID": "tun_id",
    "NXM_OF_ARP_OP": "arp_op",
    "OXM_OF_ARP_OP": "arp_op",
    "NXM_NX_ARP_SHA": "arp_sha",
    "NXM_NX_ARP_THA": "arp_tha",
    "NXM_OF_ARP_SPA": "arp_spa",
    "NXM_OF_ARP_TPA": "arp_tpa",
    "NXM_OF_ETH_SRC": "dl_src",
    "NXM_OF_ETH_DST": "dl_dst",
    "NXM_OF_IP_SRC": "nw_src",
    "NXM_OF_IP_DST": "nw_dst",
}
_SET_FIELD_ALIASES = FIELD_ALIASES | {"vlan_vid": "vlan_vid"}
Handler = Callable[[str], list[str]]


_DELIMS = re.compile(r"[,()\[\]]")


def split_actions(text: str) -> list[str]:
    """Split an action list on the commas that are not inside parentheses or brackets."""
    if "(" not in text and "[" not in text:
        return [p.strip() for p in text.split(",") if p.strip()]
    parts: list[str] = []
    depth = 0
    start = 0
    for m in _DELIMS.finditer(text):
        ch = m.group()
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0:
            parts.append(text[start : m.start()].strip())
            start = m.end()
    parts.append(text[start:].strip())
    if depth != 0:
        raise ValueError(f"unbalanced parentheses in actions {text!r}")
    return [p for p in parts if p]


def canonical_actions(text: str) -> str:
    """Canonical form of an action list: aliases resolved, numbers and names normalized."""
    text = text.strip()
    if text == "":
        return "drop"
    out: list[str] = []
    for action in split_actions(text):
        out.extend(_canonical_action(action))
    return ",".join(out)


def _canonical_action(action: str) -> list[str]:
    action = "".join(action.split())
    lower = action.lower()
    if lower == "strip_vlan":
        return ["pop_vlan"]
    if lower in _BARE_ACTIONS:
        return [lower]
    if lower in _KEYWORD_PORTS:
        return [_KEYWORD_PORTS[lower]]
    name, sep, arg = action.partition(":")
    if "(" in name:  # resubmit(,N), learn(...), ct(...): keep, without spaces
        return [_resubmit(action) if name.startswith("resubmit(") else action]
    if not sep:
        return [f"output:{_port(action)}"]
    handler = _HANDLERS.get(name.lower())
    return handler(arg) if handler else [f"{name.lower()}:{arg}"]


def _port(text: str) -> str:
    text = text.strip('"')
    if text.lower() in _KEYWORD_PORTS:
        return _KEYWORD_PORTS[text.lower()]
    return str(int(text, 0)) if text[:1].isdigit() else text


def _resubmit(action: str) -> str:
    inner = action[len("resubmit(") : action.rindex(")")]
    port, _, table = inner.partition(",")
    port = _port(port) if port else ""
    table = str(int(table, 0)) if table else ""
    return f"resubmit({port},{table})"


def _output(arg: str) -> list[str]:
    return [f"output:{_port(arg)}"]


def _resubmit_port(arg: str) -> list[str]:
    return [f"resubmit({_port(arg)},)"]


def _set_field(arg: str) -> list[str]:
    value, arrow, field = arg.partition("->")
    if not arrow:
        raise ValueError(f"set_field needs VALUE->FIELD, got {arg!r}")
    field = _SET_FIELD_ALIASES.get(field, field)
    return [f"set_field:{canonical_value(field, value)}->{field}"]


def _load(arg: str) -> list[str]:
    value, arrow, dest = arg.partition("->")
    if not arrow:
        raise ValueError(f"load needs VALUE->FIELD[], got {arg!r}")
    if dest.endswith("[]") and dest[:-2] in _NXM_FIELDS and value[:1].isdigit():
        field = _NXM_FIELDS[dest[:-2]]
        return [f"set_field:{_from_int(field, int(value, 0))}->{field}"]
    return [f"load:{value}->{dest}"]


def _from_int(field: str, number: int) -> str:
    if field in MAC_FIELDS:
        raw = f"{number:012x}"
        return ":".join(raw[i : i + 2] for i in range(0, 12, 2))
    if field in IPV4_FIELDS:
        return str(ipaddress.IPv4Address(number))
    return canonical_value(field, str(number))


def _mod_vlan_vid(arg: str) -> list[str]:
    vid = canonical_value("vlan_vid", str(4096 | int(arg, 0)))
    return ["push_vlan:0x8100", f"set_field:{vid}->vlan_vid"]


def _mod_field(field: str) -> Handler:
    def handler(arg: str) -> list[str]:
        return [f"set_field:{canonical_value(field, arg)}->{field}"]

    return handler


def _number_arg(name: str) -> Handler:
    def handler(arg: str) -> list[str]:
        return [f"{name}:{int(arg, 0):#x}" if name == "push_vlan" else f"{name}:{int(arg, 0)}"]

    return handler


_HANDLERS: dict[str, Handler] = {
    "output": _output,
    "resubmit": _resubmit_port,
    "set_field": _set_field,
    "load": _load,
    "mod_vlan_vid": _mod_vlan_vid,
    "mod_dl_src": _mod_field("dl_src"),
    "mod_dl_dst": _mod_field("dl_dst"),
    "set_tunnel": _mod_field("tun_id"),
    "set_tunnel64": _mod_field("tun_id"),
    "push_vlan": _number_arg("push_vlan"),
    "goto_table": _number_arg("goto_table"),
}
