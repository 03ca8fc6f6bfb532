"""Targeted fan-out: which watch messages one host gets for one store event; pure.

A host's view is the networks where it has ports plus every port of those networks. The
messages for an event turn the host's view before the event into its view after it:

- the host's first port on N: put N, then put every port of N (its full FDB);
- its last port on N goes (deleted or moved away): delete that port, then delete N
  ("drop N and all its ports");
- any other port event on a network in the view: put (or delete, if it left the view);
  port events on networks outside the view are never sent;
- a network event: only if the network is in the view;
- a host event that registers a host or changes its tunnel IP: re-put that host's ports
  on the networks in the view, so FDB entries carry the new tunnel IP;
- a host delete: nothing, as the store refuses it while ports are bound to the host (their
  FDB entries went with the port deletes or moves). Should a port still be bound there,
  it is re-put without a tunnel IP, as the view now has it (agents hold no FDB entry for
  a port without one).

Security groups (see server/membership.py for who uses a group and who is a member):

- a host's view holds the groups its ports use (with their rules) and the members of
  every group it REFERENCES, that is every group a rule of a used group names as
  remote_group_id (members on any network, bound to any host);
- a port event puts the groups its host starts using and deletes those it stops using;
  the members of a group the host starts referencing are put, those of one it stops
  referencing deleted; and the port itself is put or deleted as a member of each
  referenced group whose membership of it changed (groups, port security, fixed IPs,
  allowed address pairs);
- a group event goes only to hosts that use the group: put or delete it, then put or
  delete the members of the remote groups its rules start or stop naming;
- a host that neither uses a group nor references it gets nothing about it.

Liveness (a host gone because its heartbeats stopped) is no event and changes nothing
here: a gone host's ports keep their FDB entries on its peers (docs/control-plane.md,
"Host lifecycle").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowkeeper.model import GroupMember, Host, Network, Port, SecurityGroup, WatchEvent
from flowkeeper.server.membership import as_member, member_groups
from flowkeeper.server.world import World, WorldView, resolve
from flowkeeper.store.base import Event


@dataclass
class HostState:
    """The part of a host's view fan-out must remember: the host's own ports, the groups
    they use and the remote groups those name."""

    host: str
    own: dict[str, str] = field(default_factory=dict)  # own port id -> its network id
    counts: dict[str, int] = field(default_factory=dict)  # network id -> own ports on it
    own_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # port -> groups used
    used: dict[str, int] = field(default_factory=dict)  # group id -> own ports using it
    held: dict[str, SecurityGroup] = field(default_factory=dict)  # used groups, as sent
    refs: dict[str, int] = field(default_factory=dict)  # remote group -> held groups naming it

    @classmethod
    def from_world(cls, host: str, world: WorldView) -> HostState:
        state = cls(host)
        for port in world.ports_of(host):
            state.bind(port.id, port.network_id)
            state.use(port.id, member_groups(port))
        for group_id in state.used:
            group = world.security_group(group_id)
            if group is not None:
                state.hold(group)
        return state

    def holds(self, port: Port) -> bool:
        """True if the port counts towards this host's view (it is bound to the host)."""
        return port.host == self.host

    def networks(self) -> set[str]:
        return set(self.counts)

    def bind(self, port_id: str, network_id: str) -> None:
        self.unbind(port_id)
        self.own[port_id] = network_id
        self.counts[network_id] = self.counts.get(network_id, 0) + 1

    def unbind(self, port_id: str) -> None:
        network_id = self.own.pop(port_id, None)
        if network_id is not None:
            left = self.counts[network_id] - 1
            if left:
                self.counts[network_id] = left
            else:
                del self.counts[network_id]

    def use(self, port_id: str, groups: tuple[str, ...]) -> None:
        """The own port `port_id` now uses `groups` (none: it is gone or has no port
        security). Held groups are not touched: see `_sync_held`."""
        for group_id in self.own_groups.pop(port_id, ()):
            left = self.used[group_id] - 1
            if left:
                self.used[group_id] = left
            else:
                del self.used[group_id]
        if groups:
            self.own_groups[port_id] = groups
            for group_id in groups:
                self.used[group_id] = self.used.get(group_id, 0) + 1

    def hold(self, group: SecurityGroup) -> None:
        self.release(group.id)
        self.held[group.id] = group
        for remote in group.remote_groups():
            self.refs[remote] = self.refs.get(remote, 0) + 1

    def release(self, group_id: str) -> SecurityGroup | None:
        group = self.held.pop(group_id, None)
        if group is not None:
            for remote in group.remote_groups():
                left = self.refs[remote] - 1
                if left:
                    self.refs[remote] = left
                else:
                    del self.refs[remote]
        return group

    def referenced(self) -> set[str]:
        return set(self.refs)


def concerned_before(event: Event, world: World) -> set[str]:
    """Hosts with ports on the networks of a port event's port, before the World applies
    it (they may leave with it); pass the result to `concerned`."""
    ports = [p for p in (event.object, event.prev) if isinstance(p, Port)]
    hosts: set[str] = set()
    for network_id in {p.network_id for p in ports}:
        hosts |= world.hosts_on(network_id)
    return hosts


def concerned(event: Event, world: World, before: set[str]) -> set[str] | None:
    """The hosts whose view the event can change (None: any host), from the World after
    it; for every other host fan_out returns nothing, so the hub need not visit it.

    A port event: the hosts on its networks before and after, its hosts, and the hosts
    that use a group naming one of its groups (before or after) as remote group (a port
    event changes no rules, and no host's use of a group but its own host's). A group
    event: the hosts that use the group (a group event changes no use). A network or host
    event: any host (they are few).
    """
    obj = event.object
    if isinstance(obj, SecurityGroup):
        return world.hosts_using(obj.id)
    if not isinstance(obj, Port):
        return None
    prev = event.prev if isinstance(event.prev, Port) else None
    hosts = before | {obj.host} | ({prev.host} if prev is not None else set())
    for network_id in {p.network_id for p in (obj, prev) if p is not None}:
        hosts |= world.hosts_on(network_id)
    return hosts | world.hosts_referencing({*member_groups(obj), *member_groups(prev)})


def fan_out(state: HostState, event: Event, world: WorldView) -> list[WatchEvent]:
    """The messages for `state.host` for one event; `world` is the world AFTER the event.

    Updates `state` in place.
    """
    obj = event.object
    if isinstance(obj, Port):
        prev = event.prev if isinstance(event.prev, Port) else None
        new = obj if event.op == "put" else None
        return _port_event(state, event.revision, prev, new, world)
    if isinstance(obj, Network):
        return _network_event(state, event, obj)
    if isinstance(obj, SecurityGroup):
        return _group_event(state, event, obj, world)
    if isinstance(obj, Host):
        return _host_event(state, event, obj, world)
    return []


def _port_event(
    state: HostState, revision: int, old: Port | None, new: Port | None, world: WorldView
) -> list[WatchEvent]:
    if _unrelated(state, old) and _unrelated(state, new):
        return []  # the common case at scale: not this host's port, not its networks
    before = state.networks()
    refs_before = state.referenced()
    port_id = new.id if new is not None else old.id if old is not None else ""
    if new is not None and state.holds(new):
        state.bind(port_id, new.network_id)
        state.use(port_id, member_groups(new))
    else:
        state.unbind(port_id)
        state.use(port_id, ())
    after = state.networks()
    joined, left = after - before, before - after
    out: list[WatchEvent] = []
    in_view_after = new is not None and new.network_id in after
    if old is not None and old.network_id in before and not in_view_after:
        out.append(WatchEvent(revision, "port", "delete", resolve(old, world)))
    for network_id in sorted(left):
        net = world.network(network_id)
        if net is not None:
            out.append(WatchEvent(revision, "network", "delete", net))
    for network_id in sorted(joined):
        out += _full_network(revision, network_id, world)
    if new is not None and in_view_after and new.network_id not in joined:
        out.append(WatchEvent(revision, "port", "put", resolve(new, world)))
    out += _sync_held(state, revision, world)
    return out + _members(state, revision, refs_before, world, old=old, new=new)


def _unrelated(state: HostState, port: Port | None) -> bool:
    if port is None:
        return True
    if state.holds(port) or port.network_id in state.counts:
        return False
    refs = state.refs
    return not any(g in refs for g in member_groups(port))


def _sync_held(state: HostState, revision: int, world: WorldView) -> list[WatchEvent]:
    """Delete the held groups no own port uses any more; put the used ones not held yet
    (if they exist)."""
    out: list[WatchEvent] = []
    for group_id in sorted(set(state.held) - set(state.used)):
        gone = state.release(group_id)
        if gone is not None:
            out.append(WatchEvent(revision, "security_group", "delete", gone))
    for group_id in sorted(set(state.used) - set(state.held)):
        group = world.security_group(group_id)
        if group is not None:
            state.hold(group)
            out.append(WatchEvent(revision, "security_group", "put", group))
    return out


def _members(
    state: HostState,
    revision: int,
    refs_before: set[str],
    world: WorldView,
    *,
    old: Port | None = None,
    new: Port | None = None,
) -> list[WatchEvent]:
    """Member messages for a change of the referenced groups (`refs_before` -> now) and of
    the port `old` -> `new` (a port event; `world` is after it)."""
    refs_after = state.referenced()
    out: list[WatchEvent] = []
    for group_id in sorted(refs_before - refs_after):
        out += [
            WatchEvent(revision, "member", "delete", m)
            for m in _members_before(group_id, world, old, new)
        ]
    for group_id in sorted(refs_after - refs_before):
        ports = sorted(world.members_of(group_id), key=_id)
        out += [WatchEvent(revision, "member", "put", as_member(group_id, p)) for p in ports]
    if old is None and new is None:
        return out
    was_in, now_in = member_groups(old), member_groups(new)
    changed = [g for g in {*was_in, *now_in} if g in refs_before and g in refs_after]
    if not changed:
        return out
    same_ips = old is not None and new is not None and old.member_ips() == new.member_ips()
    for group_id in sorted(changed):
        if new is not None and group_id in now_in:
            if group_id not in was_in or not same_ips:  # a status change sends nothing
                out.append(WatchEvent(revision, "member", "put", as_member(group_id, new)))
        elif old is not None and group_id in was_in:
            out.append(WatchEvent(revision, "member", "delete", as_member(group_id, old)))
    return out


def _members_before(
    group_id: str, world: WorldView, old: Port | None, new: Port | None
) -> list[GroupMember]:
    """The group's members before a port event `old` -> `new`, from the world after it."""
    ports = {p.id: p for p in world.members_of(group_id)}
    if new is not None:
        ports.pop(new.id, None)
    if old is not None and group_id in member_groups(old):
        ports[old.id] = old
    return [as_member(group_id, ports[k]) for k in sorted(ports)]


def _group_event(
    state: HostState, event: Event, group: SecurityGroup, world: WorldView
) -> list[WatchEvent]:
    if group.id not in state.used:
        return []  # the common case: a group none of this host's ports uses
    refs_before = state.referenced()
    out: list[WatchEvent] = []
    if event.op == "put":
        state.hold(group)
        out.append(WatchEvent(event.revision, "security_group", "put", group))
    else:  # the store refuses this while ports use it; be exact anyway
        gone = state.release(group.id)
        if gone is not None:
            out.append(WatchEvent(event.revision, "security_group", "delete", gone))
    return out + _members(state, event.revision, refs_before, world)


def _full_network(revision: int, network_id: str, world: WorldView) -> list[WatchEvent]:
    net = world.network(network_id)
    if net is None:
        return []
    out = [WatchEvent(revision, "network", "put", net)]
    ports = sorted(world.ports_on(network_id), key=lambda p: p.id)
    out += [WatchEvent(revision, "port", "put", resolve(p, world)) for p in ports]
    return out


def _network_event(state: HostState, event: Event, net: Network) -> list[WatchEvent]:
    if net.id not in state.counts:
        return []
    if event.op == "delete":  # the store refuses this while ports remain; be safe anyway
        for port_id in [p for p, n in state.own.items() if n == net.id]:
            state.unbind(port_id)
    return [WatchEvent(event.revision, "network", event.op, net)]


def _host_event(state: HostState, event: Event, host: Host, world: WorldView) -> list[WatchEvent]:
    """Re-put the host's ports in the view when their tunnel IP changed: registration, a
    new tunnel IP, or a delete (then `world` resolves them to no tunnel IP)."""
    prev = event.prev if isinstance(event.prev, Host) else None
    if event.op == "put" and prev is not None and prev.tunnel_ip == host.tunnel_ip:
        return []
    view = state.counts
    ports = sorted((p for p in world.ports_of(host.name) if p.network_id in view), key=_id)
    return [WatchEvent(event.revision, "port", "put", resolve(p, world)) for p in ports]


def _id(port: Port) -> str:
    return port.id
