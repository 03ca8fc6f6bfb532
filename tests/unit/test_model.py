"""Domain objects: validation with clear one-line messages, JSON round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowkeeper.errors import UsageError
from flowkeeper.model import (
    Host,
    Network,
    Port,
    ValidationError,
    View,
    WatchEvent,
    check_port_in_network,
)


def test_validation_error_is_a_usage_error() -> None:
    assert issubclass(ValidationError, UsageError)


def test_network_segment_ranges() -> None:
    Network("n", "net1", "vxlan", 16_777_215)
    Network("n", "net1", "gre", 4_294_967_295)
    with pytest.raises(
        ValidationError,
        match=r"^segmentation_id 20000000 out of range "
        r"1\.\.16777215 for vxlan$",
    ):
        Network("n", "net1", "vxlan", 20_000_000)
    with pytest.raises(ValidationError, match=r"out of range 1\.\.4294967295 for gre"):
        Network("n", "net1", "gre", 0)
    with pytest.raises(ValidationError, match="bad network type 'vlan'"):
        Network("n", "net1", "vlan", 5)  # type: ignore[arg-type]


def test_network_cidr_and_names() -> None:
    assert Network("n", "net1", "vxlan", 1, "198.19.1.0/24").cidr == "198.19.1.0/24"
    with pytest.raises(ValidationError, match="host bits set"):
        Network("n", "net1", "vxlan", 1, "198.19.1.5/24")
    with pytest.raises(ValidationError, match=r"bad CIDR '198\.19\.1\.0'"):
        Network("n", "net1", "vxlan", 1, "198.19.1.0")
    with pytest.raises(ValidationError, match="bad network name"):
        Network("n", "-bad", "vxlan", 1)
    with pytest.raises(ValidationError, match="bad network id"):
        Network("", "ok", "vxlan", 1)


def test_port_mac_is_lowercased_and_must_be_unicast() -> None:
    p = Port("p1", "n1", "h1", "FA:16:3E:00:00:0A", ("198.19.1.10",), "DOWN")
    assert p.mac == "fa:16:3e:00:00:0a"
    with pytest.raises(ValidationError, match=r"^bad MAC address 'zz:16:3e:00:00:01': "):
        Port("p1", "n1", "h1", "zz:16:3e:00:00:01", (), "DOWN")
    with pytest.raises(ValidationError, match="multicast"):
        Port("p1", "n1", "h1", "01:00:5e:00:00:01", (), "DOWN")
    with pytest.raises(ValidationError, match="all zeros"):
        Port("p1", "n1", "h1", "00:00:00:00:00:00", (), "DOWN")


@pytest.mark.parametrize("ip", ["198.19.1", "198.19.1.256", "::1", "224.0.0.1", "0.0.0.0", "x"])
def test_port_rejects_bad_ips(ip: str) -> None:
    with pytest.raises(ValidationError, match="bad IP address"):
        Port("p1", "n1", "h1", "fa:16:3e:00:00:01", (ip,), "DOWN")


def test_port_other_checks() -> None:
    with pytest.raises(ValidationError, match="duplicate IP"):
        Port("p1", "n1", "h1", "fa:16:3e:00:00:01", ("10.0.0.1", "10.0.0.1"), "DOWN")
    with pytest.raises(ValidationError, match="bad port status"):
        Port("p1", "n1", "h1", "fa:16:3e:00:00:01", (), "UP")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="bad host name"):
        Port("p1", "n1", "h 1", "fa:16:3e:00:00:01", (), "DOWN")


def test_port_ips_inside_the_network_cidr() -> None:
    net = Network("n1", "net1", "vxlan", 1, "198.19.1.0/24")
    check_port_in_network(Port("p", "n1", "h1", "fa:16:3e:00:00:01", ("198.19.1.10",)), net)
    outside = Port("p", "n1", "h1", "fa:16:3e:00:00:01", ("198.19.2.10",))
    with pytest.raises(ValidationError, match=r"IP 198\.19\.2\.10 is outside network 'net1'"):
        check_port_in_network(outside, net)
    bcast = Port("p", "n1", "h1", "fa:16:3e:00:00:01", ("198.19.1.255",))
    with pytest.raises(ValidationError, match="broadcast address"):
        check_port_in_network(bcast, net)
    nocidr = Network("n1", "net1", "vxlan", 1)
    check_port_in_network(outside, nocidr)


def test_host_names_and_fields() -> None:
    Host("a" * 63, "198.18.0.1")
    for bad in ["", "a" * 64, "-h", "h/1", "h 1"]:
        with pytest.raises(ValidationError, match="bad host name"):
            Host(bad, "198.18.0.1")
    with pytest.raises(ValidationError, match="bad tunnel IP"):
        Host("h1", "198.18.0")
    with pytest.raises(ValidationError, match="bad host state"):
        Host("h1", "198.18.0.1", state="In Sync")


def test_from_dict_rejects_unknown_fields_and_wrong_types() -> None:
    good = {"id": "n", "name": "net1", "type": "vxlan", "segmentation_id": 5}
    assert Network.from_dict(good).segmentation_id == 5
    with pytest.raises(ValidationError, match="unknown field 'colour' in network"):
        Network.from_dict({**good, "colour": "red"})
    with pytest.raises(
        ValidationError, match="field 'segmentation_id' must be an integer, got str"
    ):
        Network.from_dict({**good, "segmentation_id": "5"})
    with pytest.raises(ValidationError, match="must be an integer, got bool"):
        Network.from_dict({**good, "segmentation_id": True})
    with pytest.raises(ValidationError, match="missing field 'name'"):
        Network.from_dict({"id": "n", "type": "vxlan", "segmentation_id": 5})
    with pytest.raises(ValidationError, match="must be a JSON object"):
        Port.from_dict([1, 2])
    with pytest.raises(ValidationError, match="'fixed_ips' must be a list of strings"):
        Port.from_dict(
            {
                "id": "p",
                "network_id": "n",
                "host": "h",
                "mac": "fa:16:3e:0:0:1",
                "fixed_ips": "10.0.0.1",
            }
        )


macs = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(
    lambda b: ":".join(f"{x:02X}" for x in [b[0] & 0xFE | 0x02, *b[1:]])
)


@given(macs, st.lists(st.ip_addresses(v=4).map(str), max_size=3, unique=True))
def test_round_trips(mac: str, ips: list[str]) -> None:
    ips = [ip for ip in ips if not ip.startswith(("224.", "0.")) and ip != "255.255.255.255"]
    ips = [ip for ip in ips if int(ip.split(".")[0]) < 224]
    port = Port("p1", "n1", "h1", mac, tuple(ips), "ACTIVE", name="vm 1", tunnel_ip="198.18.0.1")
    assert Port.from_dict(port.to_dict()) == port
    net = Network("n1", "net1", "gre", 77, "198.19.0.0/16", revision=4)
    assert Network.from_dict(net.to_dict()) == net
    host = Host("h1", "198.18.0.1", l2pop=False, virtual=True, state="in-sync", revision=9)
    assert Host.from_dict(host.to_dict()) == host
    view = View(3, [net], [port])
    assert View.from_dict(view.to_dict()) == view
    for msg in (
        WatchEvent(3, "port", "delete", port),
        WatchEvent(4, "network", "put", net),
        WatchEvent(5, "heartbeat", ""),
    ):
        assert WatchEvent.from_dict(msg.to_dict()) == msg
