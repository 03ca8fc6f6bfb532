"""The security-group API on a real server: groups, rules, ports' security fields, the
default group made on demand, one-line 400/404/409 errors, tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flowkeeper.client import ApiError, Client
from flowkeeper.model import AddressPair, SecurityGroupRule
from tests.controlplane.conftest import LiveServer
from tests.controlplane.test_api import call

MAC = "fa:16:3e:00:00:01"


def refused(fn: Callable[[], Any], status: int) -> str:
    with pytest.raises(ApiError) as info:
        fn()
    assert info.value.status == status, info.value.message
    assert "\n" not in info.value.message
    return info.value.message


def net(c: Client, project: str = "tenant-a") -> str:
    return c.create_network("net1", "vxlan", cidr="198.19.1.0/24", project_id=project).id


def test_group_and_rule_crud(server: LiveServer) -> None:
    c = server.client()
    g = c.create_security_group("web", description="web servers", project_id="tenant-a")
    # Neutron's new group: egress anywhere, no ingress
    assert sorted(r.describe() for r in g.rules) == ["egress IPv4 any", "egress IPv6 any"]
    assert c.get_security_group(g.id) == g
    ssh = c.create_security_group_rule(
        g.id,
        direction="ingress",
        protocol="tcp",
        port_range_min=22,
        port_range_max=22,
        remote_ip_prefix="198.19.7.7/16",
    )
    assert ssh.remote_ip_prefix == "198.19.0.0/16"
    assert ssh in c.list_security_group_rules(g.id)
    status, rule = call(server, "GET", f"/v1/security-groups/{g.id}/rules/{ssh.id}")
    assert status == 200 and rule["security_group_id"] == g.id
    assert rule["revision"] == c.get_security_group(g.id).revision
    msg = refused(
        lambda: c.create_security_group_rule(
            g.id,
            direction="ingress",
            protocol="tcp",
            port_range_min=22,
            port_range_max=22,
            remote_ip_prefix="198.19.0.0/16",
        ),
        409,
    )
    assert msg == (
        f"group 'web' already has this rule: {ssh.id} (ingress IPv4 tcp 22-22 from 198.19.0.0/16)"
    )
    c.delete_security_group_rule(g.id, ssh.id)
    assert refused(lambda: c.delete_security_group_rule(g.id, ssh.id), 404) == (
        f"rule {ssh.id!r} not found in security group {g.id!r}"
    )
    assert [x.id for x in c.list_security_groups("tenant-a") if x.name == "web"] == [g.id]
    c.delete_security_group(g.id)
    assert refused(lambda: c.get_security_group(g.id), 404) == (
        f"security group {g.id!r} not found"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 22},
            "bad tcp port range 80-22: port_range_min > port_range_max",
        ),
        (
            {"direction": "in"},
            "security group rule: direction: bad value 'in': use 'ingress' or 'egress'",
        ),
        (
            {"direction": "ingress", "port_range_min": 22, "port_range_max": 22},
            "a port range or ICMP type needs a protocol (tcp, udp or icmp)",
        ),
        (
            {"direction": "ingress", "remote_ip_prefix": "2001:db8::/32"},
            "remote_ip_prefix 2001:db8::/32 is IPv6 but the rule's ethertype is IPv4",
        ),
        (
            {"direction": "ingress", "remote_ip_prefix": "198.19.0.0/16", "remote_group_id": "x"},
            "a rule takes remote_ip_prefix or remote_group_id, not both",
        ),
        ({"direction": "egress", "colour": "red"}, "security group rule: unknown field 'colour'"),
    ],
)
def test_bad_rules_are_one_line_400s(
    server: LiveServer, body: dict[str, Any], message: str
) -> None:
    g = server.client().create_security_group("web")
    before = server.client().get_security_group(g.id)
    status, answer = call(server, "POST", f"/v1/security-groups/{g.id}/rules", body)
    assert (status, answer) == (400, {"error": message})
    assert server.client().get_security_group(g.id) == before


def test_missing_groups_are_404(server: LiveServer) -> None:
    c = server.client()
    status, answer = call(server, "POST", "/v1/security-groups/nope/rules", {"direction": "egress"})
    assert (status, answer) == (404, {"error": "security group 'nope' not found"})
    g = c.create_security_group("web")
    body = {"direction": "ingress", "remote_group_id": "nope"}
    status, answer = call(server, "POST", f"/v1/security-groups/{g.id}/rules", body)
    # the group at the path is there: a missing object its body names is a 409
    assert (status, answer) == (409, {"error": "remote group 'nope' not found"})
    n = net(c)
    p = c.create_port(n, "h1", MAC)
    status, answer = call(server, "PATCH", f"/v1/ports/{p.id}", {"security_groups": ["nope"]})
    assert (status, answer) == (409, {"error": "security group 'nope' not found"})


def test_a_port_gets_its_projects_default_group(server: LiveServer) -> None:
    c = server.client()
    n = net(c, "tenant-a")
    p = c.create_port(n, "h1", MAC, ["198.19.1.10"])
    assert p.project_id == "tenant-a" and p.port_security_enabled
    (gid,) = p.security_groups
    d = c.get_security_group(gid)
    assert (d.name, d.project_id) == ("default", "tenant-a")
    assert sorted(r.describe() for r in d.rules) == [
        "egress IPv4 any",
        "egress IPv6 any",
        f"ingress IPv4 any from group {gid}",
        f"ingress IPv6 any from group {gid}",
    ]
    p2 = c.create_port(n, "h2", "fa:16:3e:00:00:02")
    assert p2.security_groups == (gid,)  # the same default group, made once
    assert [g.id for g in c.list_security_groups("tenant-a") if g.name == "default"] == [gid]
    msg = refused(lambda: c.create_security_group("default", project_id="tenant-a"), 409)
    assert msg == f"project 'tenant-a' already has its default group {gid!r}"
    msg = refused(lambda: c.delete_security_group(gid), 409)
    assert msg.startswith(f"security group 'default' ({gid}) is used by port ")
    # listing a project's groups makes its default group too (Neutron does so)
    other = c.list_security_groups("tenant-b")
    assert [(g.name, g.project_id) for g in other] == [("default", "tenant-b")]


def test_port_security_fields(server: LiveServer) -> None:
    c = server.client()
    n = net(c)
    web = c.create_security_group("web", project_id="tenant-a")
    none = c.create_port(n, "h1", MAC, security_groups=[])
    assert none.security_groups == () and none.port_security_enabled  # all traffic dropped
    off = c.create_port(n, "h1", "fa:16:3e:00:00:02", port_security_enabled=False)
    assert (off.security_groups, off.port_security_enabled) == ((), False)
    pairs = [AddressPair("198.19.1.99"), AddressPair("198.19.8.0/24", "fa:16:3e:00:00:99")]
    p = c.create_port(
        n,
        "h1",
        "fa:16:3e:00:00:03",
        ["198.19.1.3"],
        security_groups=[web.id],
        allowed_address_pairs=pairs,
    )
    assert p.security_groups == (web.id,)
    assert p.allowed_address_pairs == (
        AddressPair("198.19.1.99", "fa:16:3e:00:00:03"),
        AddressPair("198.19.8.0/24", "fa:16:3e:00:00:99"),
    )
    assert c.get_port(p.id) == p
    moved = c.update_port(p.id, security_groups=[])
    assert moved.security_groups == () and moved.allowed_address_pairs == p.allowed_address_pairs
    assert moved.revision > p.revision
    c.delete_security_group(web.id)  # no port uses it any more
    msg = refused(lambda: c.update_port(p.id, port_security_enabled=False), 409)
    assert msg == (
        f"port {p.id!r} would have allowed address pairs without port security: turn "
        "port_security_enabled on, or clear allowed_address_pairs in the same update"
    )
    cleared = c.update_port(p.id, port_security_enabled=False, allowed_address_pairs=[])
    assert (cleared.port_security_enabled, cleared.allowed_address_pairs) == (False, ())


def test_port_security_refusals(server: LiveServer) -> None:
    c = server.client()
    n = net(c)
    mine = c.create_security_group("web", project_id="tenant-a")
    theirs = c.create_security_group("web", project_id="tenant-b")
    before = server.snapshot()
    msg = refused(lambda: c.create_port(n, "h1", MAC, security_groups=["nope"]), 404)
    assert msg == "security group 'nope' not found"
    msg = refused(lambda: c.create_port(n, "h1", MAC, security_groups=[theirs.id]), 409)
    assert msg == (
        f"security group {theirs.id!r} is of project 'tenant-b', not the port's project 'tenant-a'"
    )
    msg = refused(
        lambda: c.create_port(n, "h1", MAC, security_groups=[mine.id], port_security_enabled=False),
        400,
    )
    assert msg == "a port with port_security_enabled false takes no security groups"
    body = {"network_id": n, "host": "h1", "mac": MAC, "security_groups": ["a", "a"]}
    status, answer = call(server, "POST", "/v1/ports", body)
    assert (status, answer) == (400, {"error": "port: security_groups: duplicate item 'a'"})
    assert server.snapshot() == before
    status, answer = call(server, "PATCH", "/v1/ports/nope", {"port_security_enabled": True})
    assert (status, answer) == (404, {"error": "port 'nope' not found"})


def test_tokens_for_groups(server: LiveServer) -> None:
    admin = server.client()
    g = admin.create_security_group("web")
    h1 = Client(server.url, admin.create_token("host", "h1")["secret"])
    ro = Client(server.url, admin.create_token("read-only")["secret"])
    assert ro.get_security_group(g.id) == g  # a reader reads
    assert refused(lambda: ro.create_security_group("x"), 403).startswith("read-only token")
    assert refused(lambda: ro.delete_security_group(g.id), 403).startswith("read-only token")
    # a read-only listing of a project does not make its default group
    assert ro.list_security_groups("tenant-z") == []
    for attempt in (
        lambda: h1.get_security_group(g.id),
        h1.list_security_groups,
        lambda: h1.list_security_group_rules(g.id),
        lambda: h1.create_security_group("x"),
    ):
        assert refused(attempt, 403).startswith("host token")
    n = net(admin)
    p = admin.create_port(n, "h1", MAC)
    assert refused(lambda: h1.update_port(p.id, security_groups=[]), 403).startswith("host token")


def test_the_openapi_document_describes_the_group_routes(server: LiveServer) -> None:
    status, doc = call(server, "GET", "/v1/openapi.json", token=None)
    assert status == 200
    paths = doc["paths"]
    assert set(paths["/v1/security-groups"]) == {"get", "post"}
    assert set(paths["/v1/security-groups/{id}"]) == {"get", "delete"}
    assert set(paths["/v1/security-groups/{id}/rules"]) == {"get", "post"}
    assert set(paths["/v1/security-groups/{id}/rules/{rule_id}"]) == {"get", "delete"}
    assert "patch" in paths["/v1/ports/{id}"]
    rule = doc["components"]["schemas"]["RuleCreate"]
    assert "port_range_min <= max" not in rule  # the relations are in the operation's text
    assert "min <= max" in paths["/v1/security-groups/{id}/rules"]["post"]["description"]


def test_rules_accept_the_documented_forms(server: LiveServer) -> None:
    c = server.client()
    g = c.create_security_group("web")
    made = [
        c.create_security_group_rule(g.id, direction="ingress", protocol="icmp", port_range_min=8),
        c.create_security_group_rule(
            g.id,
            direction="ingress",
            ethertype="IPv6",
            protocol="icmp",
            port_range_min=128,
            port_range_max=0,
            remote_ip_prefix="2001:db8::1",
        ),
        c.create_security_group_rule(
            g.id, direction="ingress", protocol="udp", port_range_min=1, port_range_max=65535
        ),
        c.create_security_group_rule(g.id, direction="ingress", remote_group_id=g.id),
    ]
    assert [r.describe() for r in made] == [
        "ingress IPv4 icmp 8",
        "ingress IPv6 icmpv6 128/0 from 2001:db8::1/128",
        "ingress IPv4 udp",
        f"ingress IPv4 any from group {g.id}",
    ]
    rule = SecurityGroupRule("my-id", "egress", "IPv4", "tcp", 443, 443, "198.18.0.0/15")
    assert c.create_security_group_rule(g.id, rule) == rule


def test_a_deleted_default_group_is_made_again(server: LiveServer) -> None:
    c = server.client()
    n = net(c)
    first = c.create_port(n, "h1", MAC)
    c.delete_port(first.id)
    c.delete_security_group(first.security_groups[0])  # no port uses it now
    second = c.create_port(n, "h1", MAC)
    (gid,) = second.security_groups
    assert gid != first.security_groups[0]
    assert c.get_security_group(gid).name == "default"
