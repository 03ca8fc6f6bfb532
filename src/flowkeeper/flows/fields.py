"""Match-field names and values in one canonical spelling."""

from __future__ import annotations

import ipaddress

FIELD_ALIASES: dict[str, str] = {
    "eth_src": "dl_src",
    "eth_dst": "dl_dst",
    "eth_type": "dl_type",
    "tunnel_id": "tun_id",
    "ip_src": "nw_src",
    "ip_dst": "nw_dst",
    "ip_proto": "nw_proto",
    "ip_dscp": "nw_tos",
    "tcp_src": "tp_src",
    "tcp_dst": "tp_dst",
    "udp_src": "tp_src",
    "udp_dst": "tp_dst",
    "NXM_NX_TUN_ID": "tun_id",
    "OXM_OF_IN_PORT": "in_port",
}

_IP, _ARP, _IPV6 = "0x800", "0x806", "0x86dd"
PROTOCOL_SHORTHANDS: dict[str, tuple[tuple[str, str], ...]] = {
    "ip": (("dl_type", _IP),),
    "ipv4": (("dl_type", _IP),),
    "arp": (("dl_type", _ARP),),
    "rarp": (("dl_type", "0x8035"),),
    "ipv6": (("dl_type", _IPV6),),
    "icmp": (("dl_type", _IP), ("nw_proto", "1")),
    "tcp": (("dl_type", _IP), ("nw_proto", "6")),
    "udp": (("dl_type", _IP), ("nw_proto", "17")),
    "sctp": (("dl_type", _IP), ("nw_proto", "132")),
    "icmp6": (("dl_type", _IPV6), ("nw_proto", "58")),
    "tcp6": (("dl_type", _IPV6), ("nw_proto", "6")),
    "udp6": (("dl_type", _IPV6), ("nw_proto", "17")),
}

MAC_FIELDS = frozenset({"dl_src", "dl_dst", "arp_sha", "arp_tha"})
IPV4_FIELDS = frozenset({"nw_src", "nw_dst", "arp_spa", "arp_tpa", "tun_src", "tun_dst"})
DECIMAL_FIELDS = frozenset(
    {"dl_vlan", "dl_vlan_pcp", "nw_proto", "nw_tos", "nw_ttl", "arp_op", "tp_src", "tp_dst"}
)
_NAMED_PORTS = frozenset({"LOCAL", "IN_PORT", "CONTROLLER", "NONE", "ANY", "ALL", "NORMAL"})


def canonical_value(field: str, value: str) -> str:
    """One spelling per value: lower-case MACs, CIDR prefixes, numbers in a fixed base."""
    value = value.strip().strip('"')
    if field in MAC_FIELDS:
        return "/".join(_mac(part) for part in value.split("/"))
    if field in IPV4_FIELDS:
        return _ipv4(value)
    if field == "in_port":
        if value.upper() in _NAMED_PORTS:
            return value.upper()
        return str(int(value, 0)) if value[:1].isdigit() else value
    if _looks_numeric(value):
        base = 10 if field in DECIMAL_FIELDS else 16
        return "/".join(_int(part, base) for part in value.split("/"))
    return value


def _looks_numeric(value: str) -> bool:
    return all(part[:1].isdigit() for part in value.split("/")) and value != ""


def _int(text: str, base: int) -> str:
    number = int(text, 0)
    if number < 0:
        raise ValueError(f"negative number {text!r}")
    return str(number) if base == 10 else f"{number:#x}"


def _mac(text: str) -> str:
    parts = text.lower().split(":")
    if len(parts) != 6 or not all(len(p) in (1, 2) for p in parts):
        raise ValueError(f"bad MAC address {text!r}")
    return ":".join(f"{int(p, 16):02x}" for p in parts)


def _ipv4(text: str) -> str:
    if "/" not in text:
        return str(ipaddress.IPv4Address(text))
    addr, mask = text.split("/", 1)
    if "." in mask:
        net = ipaddress.IPv4Network(f"{addr}/{mask}", strict=False)
        if str(net.netmask) != mask:
            raise ValueError(f"non-contiguous mask {mask!r}")
    else:
        net = ipaddress.IPv4Network(f"{addr}/{int(mask)}", strict=False)
    if net.prefixlen == 32:
        return str(net.network_address)
    return f"{net.network_address}/{net.prefixlen}"
