"""The server's in-memory replica of the store, and the same rewound to an older revision; pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from flowkeeper.model import GroupMember, Host, Network, Port, SecurityGroup, View
from flowkeeper.server.membership import as_member, member_groups
from flowkeeper.store.base import Event, Snapshot, StoreObject


class WorldView(Protocol):
    """What fan-out needs to know about the world at one revision."""

    def network(self, network_id: str) -> Network | None: ...

    def ports_on(self, network_id: str) -> list[Port]: ...

    def ports_of(self, host: str) -> list[Port]: ...

    def tunnel_ip(self, host: str) -> str | None: ...

    def security_group(self, group_id: str) -> SecurityGroup | None: ...

    def members_of(self, group_id: str) -> list[Port]:
        """The ports that are members of the group (port security on, the group theirs)."""
        ...


def resolve(port: Port, world: WorldView) -> Port:
    """The port as agents see it: with its binding host's tunnel IP (None if unknown)."""
    tip = world.tunnel_ip(port.host)
    return port if port.tunnel_ip == tip else replace(port, tunnel_ip=tip)


def build_view(world: WorldView, host: str, revision: int) -> View:
    """The networks where `host` has ports, and every port of those networks; the
    security groups its ports use (with their rules), and the members of every group
    those groups' rules name as remote group (on any network and host)."""
    own = list(world.ports_of(host))
    net_ids = sorted({p.network_id for p in own})
    networks = [n for n in (world.network(i) for i in net_ids) if n is not None]
    ports = [resolve(p, world) for n in networks for p in sorted(world.ports_on(n.id), key=_id)]
    groups = used_groups(world, own)
    return View(revision, networks, ports, groups, referenced_members(world, groups))


def used_groups(world: WorldView, own: list[Port]) -> list[SecurityGroup]:
    """The groups these ports use that exist, sorted by id."""
    ids = sorted({g for p in own for g in member_groups(p)})
    return [g for g in (world.security_group(i) for i in ids) if g is not None]


def referenced_members(world: WorldView, groups: list[SecurityGroup]) -> list[GroupMember]:
    """The members of every group these groups' rules name, by group then port."""
    refs = sorted({r for g in groups for r in g.remote_groups()})
    return [as_member(r, p) for r in refs for p in sorted(world.members_of(r), key=_id)]


def _id(port: Port) -> str:
    return port.id


class _Index:
    """Ports indexed by network, by host and by the groups they are members of."""

    def __init__(self) -> None:
        self.by_network: dict[str, dict[str, Port]] = {}
        self.by_host: dict[str, dict[str, Port]] = {}
        self.by_group: dict[str, dict[str, Port]] = {}

    def add(self, port: Port) -> None:
        self.by_network.setdefault(port.network_id, {})[port.id] = port
        self.by_host.setdefault(port.host, {})[port.id] = port
        for group_id in member_groups(port):
            self.by_group.setdefault(group_id, {})[port.id] = port

    def remove(self, port: Port) -> None:
        keys = [(self.by_network, port.network_id), (self.by_host, port.host)]
        keys += [(self.by_group, g) for g in member_groups(port)]
        for table, key in keys:
            group = table.get(key)
            if group is not None:
                group.pop(port.id, None)
                if not group:
                    del table[key]


class World:
    """Every network, port, host and security group at `revision`, kept current by
    applying store events; indexed so that fan-out finds, without scanning the world, the
    hosts a port's or a group's change concerns."""

    def __init__(
        self,
        revision: int = 0,
        networks: Iterable[Network] = (),
        ports: Iterable[Port] = (),
        hosts: Iterable[Host] = (),
        groups: Iterable[SecurityGroup] = (),
    ) -> None:
        self.revision = revision
        self.networks = {n.id: n for n in networks}
        self.ports: dict[str, Port] = {}
        self.hosts = {h.name: h for h in hosts}
        self.groups: dict[str, SecurityGroup] = {}
        self._index = _Index()
        # group id -> host -> its ports that use the group (port security on)
        self._group_hosts: dict[str, dict[str, int]] = {}
        # remote group id -> the groups with a rule naming it
        self._referencing: dict[str, set[str]] = {}
        for port in ports:
            self._put_port(port)
        for group in groups:
            self._put_group(group)

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> World:
        return cls(snap.revision, snap.networks, snap.ports, snap.hosts, snap.security_groups)

    def apply(self, event: Event) -> None:
        """Apply one store event; events below `revision` are ignored. Several events may
        share a revision (one transaction): each of them is applied."""
        if event.revision < self.revision:
            return
        obj = event.object
        if isinstance(obj, Network):
            if event.op == "put":
                self.networks[obj.id] = obj
            else:
                self.networks.pop(obj.id, None)
        elif isinstance(obj, Port):
            old = self.ports.pop(obj.id, None)
            if old is not None:
                self._index.remove(old)
                self._count_users(old, -1)
            if event.op == "put":
                self._put_port(obj)
        elif isinstance(obj, SecurityGroup):
            self._drop_group(obj.id)
            if event.op == "put":
                self._put_group(obj)
        elif isinstance(obj, Host):
            if event.op == "put":
                self.hosts[obj.name] = obj
            else:
                self.hosts.pop(obj.name, None)
        self.revision = event.revision

    def _put_port(self, port: Port) -> None:
        self.ports[port.id] = port
        self._index.add(port)
        self._count_users(port, 1)

    def _count_users(self, port: Port, step: int) -> None:
        for group_id in member_groups(port):
            hosts = self._group_hosts.setdefault(group_id, {})
            left = hosts.get(port.host, 0) + step
            if left > 0:
                hosts[port.host] = left
            else:
                hosts.pop(port.host, None)
                if not hosts:
                    del self._group_hosts[group_id]

    def _put_group(self, group: SecurityGroup) -> None:
        self.groups[group.id] = group
        for remote in group.remote_groups():
            self._referencing.setdefault(remote, set()).add(group.id)

    def _drop_group(self, group_id: str) -> None:
        old = self.groups.pop(group_id, None)
        if old is None:
            return
        for remote in old.remote_groups():
            names = self._referencing.get(remote)
            if names is not None:
                names.discard(group_id)
                if not names:
                    del self._referencing[remote]

    def network(self, network_id: str) -> Network | None:
        return self.networks.get(network_id)

    def ports_on(self, network_id: str) -> list[Port]:
        return list(self._index.by_network.get(network_id, {}).values())

    def ports_of(self, host: str) -> list[Port]:
        return list(self._index.by_host.get(host, {}).values())

    def tunnel_ip(self, host: str) -> str | None:
        h = self.hosts.get(host)
        return None if h is None else h.tunnel_ip

    def security_group(self, group_id: str) -> SecurityGroup | None:
        return self.groups.get(group_id)

    def members_of(self, group_id: str) -> list[Port]:
        return list(self._index.by_group.get(group_id, {}).values())

    def hosts_using(self, group_id: str) -> set[str]:
        """Hosts with a port that uses the group."""
        return set(self._group_hosts.get(group_id, ()))

    def referencing(self, group_id: str) -> set[str]:
        """Groups with a rule whose remote group is this one."""
        return set(self._referencing.get(group_id, ()))

    def hosts_referencing(self, group_ids: Iterable[str]) -> set[str]:
        """Hosts that use a group with a rule naming one of these groups as its remote: a
        change of those groups' members concerns them (and only them)."""
        hosts: set[str] = set()
        for group_id in group_ids:
            for user in self._referencing.get(group_id, ()):
                hosts.update(self._group_hosts.get(user, ()))
        return hosts

    def host_count(self) -> int:
        return len(self.hosts)

    def hosts_on(self, network_id: str) -> set[str]:
        """Hosts that have at least one port on the network."""
        return {p.host for p in self._index.by_network.get(network_id, {}).values()}


class Rewound:
    """A World seen as it was at an older revision: the live World plus overrides.

    Each override is an object's value at that revision (None: it did not exist), for the
    objects changed since. It costs O(objects changed), not a copy of the world, and it
    stays right while the live World moves on, as long as `record` is called before the
    World applies each event. `apply` walks it forward; an override that has become what
    the World holds is dropped.
    """

    def __init__(self, base: World, later: Sequence[Event] = ()) -> None:
        self._base = base
        self._networks: dict[str, Network | None] = {}
        self._hosts: dict[str, Host | None] = {}
        self._ports: dict[str, Port | None] = {}
        self._groups: dict[str, SecurityGroup | None] = {}
        self._index = _Index()  # override ports that exist
        for event in reversed(later):
            self._override(event.kind, _key(event.object), event.prev)

    @classmethod
    def from_values(
        cls, base: World, values: Mapping[tuple[str, str], StoreObject | None]
    ) -> Rewound:
        """`values`: (kind, key) -> the object's value at the older revision."""
        rewound = cls(base)
        for (kind, key), value in values.items():
            rewound._override(kind, key, value)
        return rewound

    def _override(self, kind: str, key: str, value: StoreObject | None) -> None:
        if kind == "port":
            old = self._ports.get(key)
            if old is not None:
                self._index.remove(old)
            if isinstance(value, Port):
                self._index.add(value)
            self._ports[key] = value if isinstance(value, Port) else None
        elif kind == "network":
            self._networks[key] = value if isinstance(value, Network) else None
        elif kind == "security_group":
            self._groups[key] = value if isinstance(value, SecurityGroup) else None
        else:
            self._hosts[key] = value if isinstance(value, Host) else None

    def _table(self, kind: str) -> dict[str, Any]:
        tables: dict[str, dict[str, Any]] = {
            "port": self._ports,
            "network": self._networks,
            "security_group": self._groups,
        }
        return tables.get(kind, self._hosts)

    def _live(self, kind: str, key: str) -> StoreObject | None:
        base = self._base
        if kind == "port":
            return base.ports.get(key)
        if kind == "network":
            return base.networks.get(key)
        if kind == "security_group":
            return base.groups.get(key)
        return base.hosts.get(key)

    def record(self, event: Event) -> None:
        """The live World is about to apply `event`: keep the object's value as seen here."""
        key = _key(event.object)
        if key not in self._table(event.kind):
            self._override(event.kind, key, self._live(event.kind, key))

    def apply(self, event: Event) -> None:
        key = _key(event.object)
        value = event.object if event.op == "put" else None
        if value == self._live(event.kind, key):
            old = self._table(event.kind).pop(key, None)
            if isinstance(old, Port):
                self._index.remove(old)
        else:
            self._override(event.kind, key, value)

    def overrides(self) -> int:
        return len(self._ports) + len(self._networks) + len(self._hosts) + len(self._groups)

    def network(self, network_id: str) -> Network | None:
        if network_id in self._networks:
            return self._networks[network_id]
        return self._base.network(network_id)

    def ports_on(self, network_id: str) -> list[Port]:
        base = [p for p in self._base.ports_on(network_id) if p.id not in self._ports]
        return base + list(self._index.by_network.get(network_id, {}).values())

    def ports_of(self, host: str) -> list[Port]:
        base = [p for p in self._base.ports_of(host) if p.id not in self._ports]
        return base + list(self._index.by_host.get(host, {}).values())

    def tunnel_ip(self, host: str) -> str | None:
        if host in self._hosts:
            h = self._hosts[host]
            return None if h is None else h.tunnel_ip
        return self._base.tunnel_ip(host)

    def security_group(self, group_id: str) -> SecurityGroup | None:
        if group_id in self._groups:
            return self._groups[group_id]
        return self._base.security_group(group_id)

    def members_of(self, group_id: str) -> list[Port]:
        base = [p for p in self._base.members_of(group_id) if p.id not in self._ports]
        return base + list(self._index.by_group.get(group_id, {}).values())


def _key(obj: StoreObject) -> str:
    return obj.name if isinstance(obj, Host) else obj.id
