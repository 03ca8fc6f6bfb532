"""Security groups, rules, address pairs and members: validation, normalisation, round trips."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from flowkeeper.model import (
    AddressPair,
    GroupMember,
    Network,
    Port,
    SecurityGroup,
    SecurityGroupRule,
    ValidationError,
    View,
    WatchEvent,
)
from flowkeeper.model_sg import default_group_rules
from flowkeeper.server.responses import GroupMember as MemberOut
from flowkeeper.server.responses import Port as PortOut
from flowkeeper.server.responses import SecurityGroup as GroupOut
from flowkeeper.server.responses import View as ViewOut
from flowkeeper.server.responses import WatchMessage

MAC = "fa:16:3e:00:00:01"


def rule(**kw: Any) -> SecurityGroupRule:
    return SecurityGroupRule(kw.pop("id", "r1"), kw.pop("direction", "ingress"), **kw)


def test_rule_defaults_and_normalisation() -> None:
    r = rule()
    assert (r.ethertype, r.protocol, r.remote_ip_prefix) == ("IPv4", None, None)
    assert rule(protocol="any").protocol is None
    assert rule(protocol="tcp", port_range_min=1, port_range_max=65535).port_range_min is None
    assert rule(remote_ip_prefix="198.19.1.7/24").remote_ip_prefix == "198.19.1.0/24"
    assert rule(remote_ip_prefix="198.19.1.7").remote_ip_prefix == "198.19.1.7/32"
    assert rule(remote_ip_prefix="0.0.0.0/0").remote_ip_prefix is None
    v6 = rule(ethertype="IPv6", protocol="icmp", remote_ip_prefix="2001:DB8::1/64")
    assert (v6.protocol, v6.remote_ip_prefix) == ("icmpv6", "2001:db8::/64")
    assert rule(protocol="icmp", port_range_min=8).port_range_max is None
    assert rule(protocol="icmp", port_range_min=8, port_range_max=0).port_range_max == 0


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"direction": "in"}, r"^bad direction 'in': use ingress or egress$"),
        ({"ethertype": "ipv4"}, r"^bad ethertype 'ipv4': use IPv4 or IPv6$"),
        ({"protocol": "sctp"}, r"^bad protocol 'sctp': use tcp, udp, icmp, icmpv6 or any$"),
        ({"protocol": "icmpv6"}, r"^protocol icmpv6 needs ethertype IPv6$"),
        ({"port_range_min": 22, "port_range_max": 22}, "needs a protocol"),
        ({"protocol": "tcp", "port_range_min": 22}, "needs both port_range_min and max"),
        ({"protocol": "udp", "port_range_min": 0, "port_range_max": 9}, "ports are 1-65535"),
        ({"protocol": "tcp", "port_range_min": 80, "port_range_max": 22}, "min > port_range_max"),
        ({"protocol": "icmp", "port_range_min": 256}, r"^bad ICMP type 256: must be 0-255$"),
        ({"protocol": "icmp", "port_range_min": 8, "port_range_max": -1}, "bad ICMP code -1"),
        ({"protocol": "icmp", "port_range_max": 0}, "needs an ICMP type"),
        ({"port_range_min": True, "protocol": "tcp"}, "must be an integer or null, got bool"),
        ({"remote_ip_prefix": "2001:db8::/32"}, "is IPv6 but the rule's ethertype is IPv4"),
        ({"remote_ip_prefix": "198.19.300.0/24"}, "^bad remote_ip_prefix '198.19.300.0/24'"),
        ({"remote_ip_prefix": "198.19.0.0/16", "remote_group_id": "g"}, "not both"),
        ({"remote_group_id": "bad id"}, "bad remote group id"),
    ],
)
def test_rule_refusals(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        rule(**kw)


def test_group_rules_sorted_and_unique() -> None:
    g = SecurityGroup("g1", "web", "p1", rules=(rule(id="r2"), rule(id="r1", protocol="tcp")))
    assert [r.id for r in g.rules] == ["r1", "r2"]
    assert g.same_rule(rule(id="x")) == rule(id="r2")
    assert g.same_rule(rule(id="x", direction="egress")) is None
    with pytest.raises(ValidationError, match="duplicate rule id 'r1'"):
        SecurityGroup("g1", "web", rules=(rule(), rule(protocol="tcp")))
    with pytest.raises(ValidationError, match="rules 'a' and 'b' of group 'web' are the same"):
        SecurityGroup("g1", "web", rules=(rule(id="a"), rule(id="b", protocol="any")))
    with pytest.raises(ValidationError, match="bad security group name"):
        SecurityGroup("g1", "no spaces")
    with pytest.raises(ValidationError, match="bad project name"):
        SecurityGroup("g1", "web", "")


def test_default_group() -> None:
    rules = default_group_rules("g1", ["a", "b", "c", "d"])
    g = SecurityGroup("g1", "default", "p1", rules=rules)
    assert g.remote_groups() == {"g1"}
    assert [r.describe() for r in g.rules] == [
        "egress IPv4 any",
        "egress IPv6 any",
        "ingress IPv4 any from group g1",
        "ingress IPv6 any from group g1",
    ]


def test_port_security_fields() -> None:
    old = Port.from_dict({"id": "p", "network_id": "n", "host": "h", "mac": MAC})
    assert (old.project_id, old.port_security_enabled) == ("default", False)
    assert (old.security_groups, old.allowed_address_pairs) == ((), ())
    p = Port(
        "p",
        "n",
        "h",
        MAC,
        ("198.19.1.5",),
        port_security_enabled=True,
        security_groups=("g2", "g1", "g2"),
        allowed_address_pairs=(
            AddressPair("198.19.9.0/24"),
            AddressPair("198.19.1.9", "FA:16:3E:00:00:09"),
        ),
    )
    assert p.security_groups == ("g1", "g2")
    assert p.allowed_address_pairs == (
        AddressPair("198.19.1.9", "fa:16:3e:00:00:09"),
        AddressPair("198.19.9.0/24", MAC),
    )
    assert p.member_ips() == ("198.19.1.5", "198.19.1.9", "198.19.9.0/24")
    assert Port.from_dict(p.to_dict()) == p
    with pytest.raises(ValidationError, match="port_security_enabled false takes no security"):
        Port("p", "n", "h", MAC, security_groups=("g1",))
    with pytest.raises(ValidationError, match="false takes no allowed address pairs"):
        Port("p", "n", "h", MAC, allowed_address_pairs=(AddressPair("198.19.1.9"),))
    twice = Port(
        "p",
        "n",
        "h",
        MAC,
        port_security_enabled=True,
        allowed_address_pairs=(AddressPair("198.19.1.9"), AddressPair("198.19.1.9", MAC)),
    )
    assert twice.allowed_address_pairs == (AddressPair("198.19.1.9", MAC),)
    with pytest.raises(ValidationError, match="host bits set"):
        AddressPair("198.19.1.9/24")
    with pytest.raises(ValidationError, match="bad project name"):
        Port("p", "n", "h", MAC, project_id="a b")


def test_network_project() -> None:
    assert Network.from_dict({"id": "n", "name": "x", "type": "gre", "segmentation_id": 1}) == (
        Network("n", "x", "gre", 1, project_id="default")
    )
    net = Network("n", "x", "gre", 1, project_id="tenant-a")
    assert Network.from_dict(net.to_dict()) == net


def test_views_without_groups_still_parse() -> None:
    assert View.from_dict({"revision": 3, "networks": [], "ports": []}) == View(3)


ids = st.sampled_from(["r1", "r2", "r3", "r4"])
rules_st = st.builds(
    SecurityGroupRule,
    ids,
    st.sampled_from(["ingress", "egress"]),
    st.just("IPv4"),
    st.sampled_from([None, "tcp", "udp"]),
    st.just(None),
    st.just(None),
    st.sampled_from([None, "198.19.0.0/16", "198.19.1.1/32"]),
    st.just(None),
)


@given(st.lists(rules_st, max_size=4, unique_by=(lambda r: r.id, lambda r: r.key())))
def test_round_trips(rules: list[SecurityGroupRule]) -> None:
    g = SecurityGroup("g1", "web", "p1", "web servers", tuple(rules), revision=7)
    assert SecurityGroup.from_dict(g.to_dict()) == g
    m = GroupMember("g1", "p1", ("198.19.1.2", "198.19.2.0/24"))
    assert GroupMember.from_dict(m.to_dict()) == m
    port = Port("p1", "n1", "h1", MAC, port_security_enabled=True, security_groups=("g1",))
    view = View(7, [Network("n1", "net1", "gre", 7)], [port], [g], [m])
    assert View.from_dict(view.to_dict()) == view
    GroupOut.model_validate(g.to_dict(), strict=True)
    MemberOut.model_validate(m.to_dict(), strict=True)
    PortOut.model_validate(port.to_dict(), strict=True)
    ViewOut.model_validate(view.to_dict(), strict=True)
    messages: TypeAdapter[Any] = TypeAdapter(WatchMessage)
    for event in (WatchEvent(8, "security_group", "put", g), WatchEvent(8, "member", "delete", m)):
        assert WatchEvent.from_dict(event.to_dict()) == event
        assert messages.validate_python(event.to_dict(), strict=True).kind == event.kind


def test_bad_watch_kind() -> None:
    with pytest.raises(ValidationError, match="bad watch message kind 'group'"):
        WatchEvent.from_dict({"revision": 1, "kind": "group", "op": "put", "object": {}})
