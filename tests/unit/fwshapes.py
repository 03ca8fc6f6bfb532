"""A host view whose firewall flows take every shape the pipeline writes: ports on two
networks, several groups, plain, ranged, ICMP, prefix and remote-group rules in both
directions, allowed address pairs, and members in more than one remote group."""

from __future__ import annotations

from flowkeeper.flows.flowset import FlowSet
from flowkeeper.flows.record import Flow
from flowkeeper.naming import BR_INT
from flowkeeper.pipeline.build import build_flows
from flowkeeper.pipeline.tables import cookie_for
from flowkeeper.pipeline.view import GroupView, HostView, LocalPort, NetworkView, RuleView

NETS = (NetworkView("net-a", "vxlan", 1001, 1), NetworkView("net-b", "gre", 2002, 2))
WEB, DB, OPS = "sg-web", "sg-db", "sg-ops"
WEB_RULES = (
    RuleView("egress", "IPv4"),
    RuleView("ingress", "IPv4", "tcp", 22, 22),
    RuleView("ingress", "IPv4", "tcp", 8000, 8099, remote_ip_prefix="198.18.0.0/16"),
    RuleView("ingress", "IPv4", "tcp", 1, 65535, remote_ip_prefix="198.19.5.5/32"),
    RuleView("ingress", "IPv4", "udp", 5000, 5003),
    RuleView("ingress", "IPv4", "icmp"),
    RuleView("ingress", "IPv4", "icmp", 8, None),
    RuleView("ingress", "IPv4", "icmp", 3, 4),
    RuleView("ingress", "IPv4", "tcp", 80, 80, remote_group=DB),
    RuleView("ingress", "IPv4", "icmp", remote_group=WEB),
    RuleView("ingress", "IPv4", remote_group=OPS),
)
DB_RULES = (
    RuleView("egress", "IPv4", "udp", 53, 53, remote_ip_prefix="10.0.0.0/8"),
    RuleView("egress", "IPv4", "tcp", 443, 443),
    RuleView("egress", "IPv4", "tcp", 5432, 5439, remote_group=WEB),
    RuleView("egress", "IPv4", "icmp", 0, 0, remote_group=DB),
    RuleView("ingress", "IPv4", "tcp", 5432, 5432, remote_group=WEB),
)
SHARED = "198.19.7.0/24"
OPS_RULES = (RuleView("egress", "IPv4", "tcp", remote_group=OPS),)


def device(i: int) -> str:
    return f"tapfw{i}"


PORTS = tuple(
    LocalPort(
        f"port-{i}",
        NETS[i % 2].id,
        device(i),
        f"fa:16:3e:00:0{i % 2}:{i:02x}",
        (f"198.19.{i % 2}.{i}",),
        port_security=True,
        security_groups=((WEB,), (DB,), (DB, WEB), (OPS, WEB), (DB, OPS, WEB))[i % 5],
        allowed_pairs=(
            ((f"fa:16:3e:aa:00:{i:02x}", f"198.19.9{i}.0/24"), ("", f"198.19.8.{i}"))
            if i % 2
            else ()
        ),
    )
    for i in range(1, 7)
)
OPEN_PORT = LocalPort("port-open", NETS[0].id, device(0), "fa:16:3e:00:00:99", ("198.19.0.99",))


def view() -> HostView:
    def ips(group: str) -> tuple[str, ...]:  # a /24 in both groups: one flow, two conj ids
        return tuple(sorted({p.ips[0] for p in PORTS if group in p.security_groups} | {SHARED}))

    members = {WEB: ips(WEB), DB: ips(DB), OPS: ("0.0.0.0/0", "198.19.1.1")}
    return HostView(
        "198.18.0.2",
        cookie=cookie_for(7),
        networks=NETS,
        local_ports=(OPEN_PORT, *PORTS),
        firewall=True,
        groups=(GroupView(DB, DB_RULES), GroupView(OPS, OPS_RULES), GroupView(WEB, WEB_RULES)),
        members=tuple(sorted(members.items())),
    )


def br_int_flows() -> list[Flow]:
    flows: FlowSet = build_flows(view())
    return sorted(flows.for_bridge(BR_INT), key=lambda f: f.key)


DEVICES = tuple(p.device for p in (OPEN_PORT, *PORTS))
