"""The agent's copy of the control-plane state it was sent, and how it becomes a HostView."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter

from flowkeeper.model import (
    GroupMember,
    Network,
    Port,
    SecurityGroup,
    SecurityGroupRule,
    WatchObject,
)
from flowkeeper.pipeline.view import (
    GroupView,
    HostView,
    LocalPort,
    NetworkView,
    RemotePort,
    RuleView,
)

EventKey = tuple[str, str, WatchObject]


@dataclass
class Mirror:
    """Networks, ports, security groups and group members from the server's view and
    watch stream, at `revision`. Members are keyed by (group id, port id).

    The events of one revision may come as several messages, and a stream can break
    between them: until a message of a later revision or a heartbeat at or past it says
    that `revision` is complete, `open` holds the events of it applied so far. A watch
    then resumes from `resume_from()` (the revision before), and the events of the open
    revision that come again are ignored, as is anything at or below a complete one: no
    event is lost or applied twice."""

    revision: int = 0
    networks: dict[str, Network] = field(default_factory=dict)
    ports: dict[str, Port] = field(default_factory=dict)
    open: set[EventKey] = field(default_factory=set)
    groups: dict[str, SecurityGroup] = field(default_factory=dict)
    members: dict[tuple[str, str], GroupMember] = field(default_factory=dict)

    def load(
        self,
        revision: int,
        networks: Iterable[Network],
        ports: Iterable[Port],
        groups: Iterable[SecurityGroup] = (),
        members: Iterable[GroupMember] = (),
    ) -> None:
        self.revision = revision
        self.networks = {n.id: n for n in networks}
        self.ports = {p.id: p for p in ports}
        self.groups = {g.id: g for g in groups}
        self.members = {(m.group_id, m.port_id): m for m in members}
        self.open = set()

    def copy(self) -> Mirror:
        return Mirror(
            self.revision,
            dict(self.networks),
            dict(self.ports),
            set(self.open),
            dict(self.groups),
            dict(self.members),
        )

    def resume_from(self) -> int:
        """The revision to watch from: everything up to it is here, complete."""
        return self.revision - 1 if self.open else self.revision

    def complete(self, revision: int) -> None:
        """Everything up to `revision` has been sent (a heartbeat)."""
        if revision >= self.revision:
            self.revision = revision
            self.open = set()

    def apply(self, revision: int, kind: str, op: str, obj: WatchObject | None) -> bool:
        """Apply one watch event; False (nothing changed) if it was applied already: at or
        below a complete revision, or a repeat of one of the open revision's events."""
        if obj is None:
            return False
        key: EventKey = (kind, op, obj)
        if revision < self.revision or (
            revision == self.revision and (not self.open or key in self.open)
        ):
            return False
        if revision > self.revision:
            self.revision = revision
            self.open = set()
        self.open.add(key)
        self._apply(op, obj)
        return True

    def _apply(self, op: str, obj: WatchObject) -> None:
        if isinstance(obj, Network):
            if op == "delete":
                self.networks.pop(obj.id, None)
                self.ports = {k: p for k, p in self.ports.items() if p.network_id != obj.id}
            elif op == "put":
                self.networks[obj.id] = obj
        elif isinstance(obj, Port):
            if op == "delete":
                self.ports.pop(obj.id, None)
            elif op == "put":
                self.ports[obj.id] = obj
        elif isinstance(obj, SecurityGroup):
            if op == "delete":
                self.groups.pop(obj.id, None)
            elif op == "put":
                self.groups[obj.id] = obj
        elif isinstance(obj, GroupMember):
            key = (obj.group_id, obj.port_id)
            if op == "delete":
                self.members.pop(key, None)
            elif op == "put":
                self.members[key] = obj


@dataclass(frozen=True)
class LocalVif:
    device: str
    iface_id: str


def bound_ports(mirror: Mirror, host: str, vifs: Iterable[LocalVif]) -> dict[str, str]:
    """port id -> OVS device, for VIFs whose iface-id names a port bound to this host."""
    out: dict[str, str] = {}
    for vif in vifs:
        port = mirror.ports.get(vif.iface_id)
        if port is not None and port.host == host and port.network_id in mirror.networks:
            out[port.id] = vif.device
    return out


def assemble(
    mirror: Mirror,
    *,
    host: str,
    tunnel_ip: str,
    l2pop: bool,
    arp_responder: bool,
    cookie: int,
    bound: Mapping[str, str],
    vlans: Mapping[str, int],
    memo: RemoteMemo | None = None,
    firewall: bool = False,
    local_memo: LocalMemo | None = None,
) -> HostView:
    """Pure: the HostView for this host: every network given a local VLAN (those of its
    bound ports; before the first sync, those it had); the security groups its local
    ports use, and the members of every group those name as remote.

    With a `memo` (and a `local_memo`) kept between calls, an unchanged port gives the
    very same RemotePort (LocalPort) as last time, so that comparing views
    (pipeline.incremental) is mostly identity.
    """
    memo = {} if memo is None else memo
    local_memo = {} if local_memo is None else local_memo
    nets = []
    for net_id in sorted(vlans):
        net = mirror.networks.get(net_id)
        if net is not None:
            nets.append(NetworkView(net.id, net.type, net.segmentation_id, vlans[net_id]))
    present = {n.id for n in nets}
    local = tuple(
        _local_memo(local_memo, p, bound[p.id])
        for p in (mirror.ports[pid] for pid in sorted(bound))
        if p.network_id in present
    )
    if len(local_memo) > 2 * len(bound) + 64:  # ports unbound long ago
        for pid in [pid for pid in local_memo if pid not in bound]:
            del local_memo[pid]
    remote = []
    for p in sorted(mirror.ports.values(), key=_by_id):
        if (
            p.network_id in present
            and p.host != host
            and p.status == "ACTIVE"
            and p.tunnel_ip
            and p.tunnel_ip != tunnel_ip
        ):
            seen = memo.get(p.id)
            if seen is None or seen[0] is not p:
                seen = (p, RemotePort(p.id, p.network_id, p.mac, p.tunnel_ip, p.fixed_ips))
                memo[p.id] = seen
            remote.append(seen[1])
    if len(memo) > 2 * len(mirror.ports) + 64:  # ports deleted long ago
        for pid in [pid for pid in memo if pid not in mirror.ports]:
            del memo[pid]
    groups = _groups(mirror, local)
    return HostView(
        tunnel_ip,
        l2pop,
        arp_responder,
        cookie,
        tuple(nets),
        local,
        tuple(remote),
        firewall=firewall,
        groups=groups,
        members=_members(mirror, groups),
    )


def _local_memo(memo: LocalMemo, port: Port, device: str) -> LocalPort:
    seen = memo.get(port.id)
    if seen is None or seen[0] is not port or seen[1] != device:
        seen = (port, device, _local(port, device))
        memo[port.id] = seen
    return seen[2]


def _local(port: Port, device: str) -> LocalPort:
    pairs = tuple(
        sorted((a.mac_address or port.mac, a.ip_address) for a in port.allowed_address_pairs)
    )
    return LocalPort(
        port.id,
        port.network_id,
        device,
        port.mac,
        tuple(port.fixed_ips),
        port_security=port.port_security_enabled,
        security_groups=port.security_groups if port.port_security_enabled else (),
        allowed_pairs=pairs if port.port_security_enabled else (),
    )


def rule_view(rule: SecurityGroupRule) -> RuleView:
    return RuleView(
        rule.direction,
        rule.ethertype,
        rule.protocol or "",
        rule.port_range_min,
        rule.port_range_max,
        rule.remote_ip_prefix or "",
        rule.remote_group_id or "",
    )


def _groups(mirror: Mirror, local: tuple[LocalPort, ...]) -> tuple[GroupView, ...]:
    """The groups the local ports with port security use that the mirror holds."""
    used = sorted({g for p in local if p.port_security for g in p.security_groups})
    out = []
    for group_id in used:
        group = mirror.groups.get(group_id)
        if group is not None:
            out.append(GroupView(group.id, tuple(sorted(rule_view(r) for r in group.rules))))
    return tuple(out)


def _members(
    mirror: Mirror, groups: tuple[GroupView, ...]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(group id, its members' IPs and networks, sorted) of every group a rule of
    `groups` names as remote group (a group with no members too: it matches nothing)."""
    remotes = {r.remote_group for g in groups for r in g.rules if r.remote_group}
    ips: dict[str, set[str]] = {r: set() for r in remotes}
    for (group_id, _port), member in mirror.members.items():
        found = ips.get(group_id)
        if found is not None:
            found.update(member.ips)
    return tuple((r, tuple(sorted(ips[r]))) for r in sorted(remotes))


_by_id = attrgetter("id")
# port id -> (the Port last seen, its RemotePort)
RemoteMemo = dict[str, tuple[Port, RemotePort]]
# port id -> (the Port last seen, its device, its LocalPort)
LocalMemo = dict[str, tuple[Port, str, LocalPort]]


def vlan_records(
    view: HostView, bound: Mapping[str, str], mirror: Mirror
) -> list[tuple[str, NetworkView]]:
    """(device, network) for every bound VIF whose network is in the view: what each VIF's
    Port other_config must say (Neutron's net_uuid, network_type, segmentation_id, tag)."""
    nets = {net.id: net for net in view.networks}
    out = []
    for port_id, device in sorted(bound.items()):
        net = nets.get(mirror.ports[port_id].network_id)
        if net is not None:
            out.append((device, net))
    return out
