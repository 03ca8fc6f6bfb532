"""The API's types: patterns say exactly what the checks accept; domain objects fit responses."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field, TypeAdapter, ValidationError

from flowkeeper import validation as v
from flowkeeper.model import Host, Network, Port, View, WatchEvent
from flowkeeper.server import api, watch  # noqa: F401 - registers the operations
from flowkeeper.server.endpoint import describe, union_tags
from flowkeeper.server.requests import NetworkCreate, PortCreate
from flowkeeper.server.responses import Host as HostOut
from flowkeeper.server.responses import Network as NetworkOut
from flowkeeper.server.responses import Port as PortOut
from flowkeeper.server.responses import View as ViewOut
from flowkeeper.server.responses import WatchMessage


def rust(pattern: str) -> TypeAdapter[Any]:
    """pydantic's own (Rust) regex engine, which the server uses."""
    from typing import Annotated

    return TypeAdapter(Annotated[str, Field(pattern=pattern)])


def accepts(adapter: TypeAdapter[Any], text: str) -> bool:
    try:
        adapter.validate_python(text)
    except ValidationError:
        return False
    return True


CIDR, IPV4, MAC = rust(v.CIDR_PATTERN), rust(v.IPV4_PATTERN), rust(v.MAC_PATTERN)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 32), st.booleans())
def test_the_cidr_pattern_is_exactly_a_network_without_host_bits(
    address: int, prefix: int, clear: bool
) -> None:
    if clear:
        address &= (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    text = f"{ipaddress.IPv4Address(address)}/{prefix}"
    try:
        ipaddress.IPv4Network(text, strict=True)
        valid = True
    except ValueError:
        valid = False
    assert accepts(CIDR, text) == valid == bool(v.CIDR_RE.fullmatch(text)), text


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_the_ipv4_pattern_is_exactly_a_unicast_host_address(address: int) -> None:
    text = str(ipaddress.IPv4Address(address))
    assert accepts(IPV4, text) == (1 <= address >> 24 <= 223), text


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([0, 0, 1, 2, 0x10, 0xFE, 0xFF]), min_size=6, max_size=6))
def test_the_mac_pattern_is_exactly_a_unicast_non_zero_mac(octets: list[int]) -> None:
    text = ":".join(f"{o:02x}" for o in octets)
    valid = not octets[0] & 1 and any(octets)
    assert accepts(MAC, text) == valid == accepts(MAC, text.upper()), text


def test_patterns_refuse_what_the_checks_refuse() -> None:
    for text in ("01.2.3.4", "1.2.3.4\n", " 1.2.3.4", "1.2.3.256"):
        assert not accepts(IPV4, text), text
    assert not accepts(CIDR, "010.0.0.0/8") and not accepts(CIDR, "10.0.0.0/33")
    assert not accepts(rust(v.NAME_PATTERN), "abc\n")
    assert accepts(rust(v.TEXT_PATTERN), "vm één") and not accepts(rust(v.TEXT_PATTERN), "a\x85")
    assert re.fullmatch(v.TEXT_PATTERN, "x" * 255) and not re.fullmatch(v.TEXT_PATTERN, "x" * 256)


def test_a_segment_out_of_range_names_the_type() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(NetworkCreate)
    for body, message in [
        (
            {"name": "n", "type": "vxlan", "segmentation_id": 16777216},
            "network: segmentation_id: must be <= 16777215 for vxlan, got 16777216",
        ),
        ({"name": "n", "type": "gre", "segmentation_id": 0}, "must be >= 1 for gre, got 0"),
        ({"name": "n", "type": "vlan"}, "network: type: bad value 'vlan': use vxlan, gre"),
        ({"name": "n"}, "network: missing field 'type'"),
        ({"name": "n", "type": "gre", "segmentation_id": True}, "must be an integer for gre"),
    ]:
        try:
            adapter.validate_python(body, strict=True)
        except ValidationError as exc:
            text = describe(exc, "network", union_tags=union_tags(NetworkCreate))
            assert message in text, text
        else:
            raise AssertionError(f"accepted {body}")
    gre = adapter.validate_python({"name": "n", "type": "gre", "segmentation_id": 4294967295.0})
    assert gre.segmentation_id == 4294967295


def test_duplicate_fixed_ips_are_refused() -> None:
    body = {"network_id": "n", "host": "h", "mac": "fa:16:3e:00:00:01"}
    try:
        PortCreate.model_validate({**body, "fixed_ips": ["198.19.1.1"] * 2}, strict=True)
    except ValidationError as exc:
        assert describe(exc, "port") == "port: fixed_ips: duplicate item '198.19.1.1'"
    else:
        raise AssertionError("accepted a duplicate IP")


def test_domain_objects_fit_the_response_types() -> None:
    net = Network("n1", "net1", "vxlan", 16777215, "198.19.1.0/24", 3)
    port = Port("p1", "n1", "h1", "fa:16:3e:00:00:01", ("198.19.1.2",), "ACTIVE", "vm", "d", 4)
    resolved = Port("p2", "n1", "h2", "fa:16:3e:00:00:02", tunnel_ip="198.18.0.2")
    host = Host("h1", "198.18.0.1", state="in-sync", revision=4, last_seen=1.5)
    NetworkOut.model_validate(net.to_dict(), strict=True)
    PortOut.model_validate(port.to_dict(), strict=True)
    PortOut.model_validate(resolved.to_dict(), strict=True)
    HostOut.model_validate(host.to_dict(), strict=True)
    ViewOut.model_validate(View(4, [net], [port, resolved]).to_dict(), strict=True)
    messages: TypeAdapter[Any] = TypeAdapter(WatchMessage)
    for event in (
        WatchEvent(5, "heartbeat", ""),
        WatchEvent(5, "network", "delete", net),
        WatchEvent(5, "port", "put", resolved),
    ):
        assert messages.validate_python(event.to_dict(), strict=True).kind == event.kind
