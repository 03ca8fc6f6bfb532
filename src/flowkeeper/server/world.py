"""The server's in-memory replica of the store, and the same rewound to an older revision; pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from flowkeeper.model import Host, Network, Port, View
from flowkeeper.store.base import Event, Snapshot, StoreObject


class WorldView(Protocol):
    """What fan-out needs to know about the world at one revision."""

    def network(self, network_id: str) -> Network | None: ...

    def ports_on(self, network_id: str) -> list[Port]: ...

    def ports_of(self, host: str) -> list[Port]: ...

    def tunnel_ip(self, host: str) -> str | None: ...


def resolve(port: Port, world: WorldView) -> Port:
    """The port as agents see it: with its binding host's tunnel IP (None if unknown)."""
    tip = world.tunnel_ip(port.host)
    return port if port.tunnel_ip == tip else replace(port, tunnel_ip=tip)


def build_view(world: WorldView, host: str, revision: int, standby_for: str = "") -> View:
    """The networks where `host` has ports, and every port of those networks.

    A standby host (a new switch slot that will take over `standby_for`'s VMs) also gets
    the networks where `standby_for` has ports, so it is ready before the first VM moves.
    """
    members = [host, standby_for] if standby_for else [host]
    net_ids = sorted({p.network_id for m in members for p in world.ports_of(m)})
    networks = [n for n in (world.network(i) for i in net_ids) if n is not None]
    ports = [resolve(p, world) for n in networks for p in sorted(world.ports_on(n.id), key=_id)]
    return View(revision, networks, ports)


def _id(port: Port) -> str:
    return port.id


class _Index:
    """Ports indexed by network and by host."""

    def __init__(self) -> None:
        self.by_network: dict[str, dict[str, Port]] = {}
        self.by_host: dict[str, dict[str, Port]] = {}

    def add(self, port: Port) -> None:
        self.by_network.setdefault(port.network_id, {})[port.id] = port
        self.by_host.setdefault(port.host, {})[port.id] = port

    def remove(self, port: Port) -> None:
        for table, key in ((self.by_network, port.network_id), (self.by_host, port.host)):
            group = table.get(key)
            if group is not None:
                group.pop(port.id, None)
                if not group:
                    del table[key]


class World:
    """Every network, port and host at `revision`, kept current by applying store events."""

    def __init__(
        self,
        revision: int = 0,
        networks: Iterable[Network] = (),
        ports: Iterable[Port] = (),
        hosts: Iterable[Host] = (),
    ) -> None:
        self.revision = revision
        self.networks = {n.id: n for n in networks}
        self.ports: dict[str, Port] = {}
        self.hosts = {h.name: h for h in hosts}
        self._index = _Index()
        for port in ports:
            self._put_port(port)

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> World:
        return cls(snap.revision, snap.networks, snap.ports, snap.hosts)

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
            if event.op == "put":
                self._put_port(obj)
        elif isinstance(obj, Host):
            if event.op == "put":
                self.hosts[obj.name] = obj
            else:
                self.hosts.pop(obj.name, None)
        self.revision = event.revision

    def _put_port(self, port: Port) -> None:
        self.ports[port.id] = port
        self._index.add(port)

    def network(self, network_id: str) -> Network | None:
        return self.networks.get(network_id)

    def ports_on(self, network_id: str) -> list[Port]:
        return list(self._index.by_network.get(network_id, {}).values())

    def ports_of(self, host: str) -> list[Port]:
        return list(self._index.by_host.get(host, {}).values())

    def tunnel_ip(self, host: str) -> str | None:
        h = self.hosts.get(host)
        return None if h is None else h.tunnel_ip

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
        self._index = _Index()  # override ports that exist
        for event in reversed(later):
            self._override(event.kind, _key(event.object), event.prev)

    @classmethod
    def from_values(cls, base: World, values: dict[tuple[str, str], StoreObject | None]) -> Rewound:
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
        else:
            self._hosts[key] = value if isinstance(value, Host) else None

    def _table(self, kind: str) -> dict[str, Any]:
        return (
            self._ports if kind == "port" else self._networks if kind == "network" else self._hosts
        )

    def _live(self, kind: str, key: str) -> StoreObject | None:
        base = self._base
        if kind == "port":
            return base.ports.get(key)
        return base.networks.get(key) if kind == "network" else base.hosts.get(key)

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
        return len(self._ports) + len(self._networks) + len(self._hosts)

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


def _key(obj: StoreObject) -> str:
    return obj.name if isinstance(obj, Host) else obj.id
