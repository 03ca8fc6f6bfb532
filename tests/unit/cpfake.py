"""A tiny in-memory event source for fan-out tests: writes become store-like Events (with prev)."""

from __future__ import annotations

from dataclasses import replace

from flowkeeper.model import GroupMember, Host, Network, Port, SecurityGroup, View, WatchEvent
from flowkeeper.server.fanout import HostState, fan_out
from flowkeeper.server.world import World
from flowkeeper.store.base import Event, Kind, Op, StoreObject


class FakeLog:
    """Objects by (kind, id) and the events that produced them."""

    def __init__(self) -> None:
        self.revision = 0
        self.objects: dict[tuple[str, str], StoreObject] = {}
        self.events: list[Event] = []
        self.one_revision = False  # set by begin(): the writes that follow share one revision

    def begin(self) -> None:
        """The next writes are one transaction (one revision) until one_revision = False."""
        self.revision += 1
        self.one_revision = True

    def _write(self, kind: Kind, op: Op, key: str, obj: StoreObject) -> Event:
        if not self.one_revision:
            self.revision += 1
        prev = self.objects.get((kind, key))
        if op == "put":
            if not isinstance(obj, Host):
                obj = replace(obj, revision=self.revision)
            self.objects[(kind, key)] = obj
        else:
            del self.objects[(kind, key)]
        event = Event(self.revision, kind, op, key, obj, prev)
        self.events.append(event)
        return event

    def put_network(self, net: Network) -> Event:
        return self._write("network", "put", net.id, net)

    def delete_network(self, net_id: str) -> Event:
        return self._write("network", "delete", net_id, self.objects[("network", net_id)])

    def put_port(self, port: Port) -> Event:
        return self._write("port", "put", port.id, port)

    def delete_port(self, port_id: str) -> Event:
        return self._write("port", "delete", port_id, self.objects[("port", port_id)])

    def put_host(self, host: Host) -> Event:
        return self._write("host", "put", host.name, host)

    def delete_host(self, name: str) -> Event:
        return self._write("host", "delete", name, self.objects[("host", name)])

    def put_group(self, group: SecurityGroup) -> Event:
        return self._write("security_group", "put", group.id, group)

    def delete_group(self, group_id: str) -> Event:
        obj = self.objects[("security_group", group_id)]
        return self._write("security_group", "delete", group_id, obj)

    def groups(self) -> list[SecurityGroup]:
        return [o for o in self.objects.values() if isinstance(o, SecurityGroup)]

    def ports(self) -> list[Port]:
        return [o for o in self.objects.values() if isinstance(o, Port)]

    def networks(self) -> list[Network]:
        return [o for o in self.objects.values() if isinstance(o, Network)]


class Replay:
    """What an agent builds from its watch messages (network delete drops its ports)."""

    def __init__(self, view: View | None = None) -> None:
        self.networks: dict[str, Network] = {}
        self.ports: dict[str, Port] = {}
        self.groups: dict[str, SecurityGroup] = {}
        self.members: dict[tuple[str, str], GroupMember] = {}
        if view is not None:
            self.networks = {n.id: n for n in view.networks}
            self.ports = {p.id: p for p in view.ports}
            self.groups = {g.id: g for g in view.security_groups}
            self.members = {(m.group_id, m.port_id): m for m in view.members}

    def apply(self, messages: list[WatchEvent]) -> None:
        for m in messages:
            obj = m.object
            if isinstance(obj, Network):
                if m.op == "put":
                    self.networks[obj.id] = obj
                else:
                    self.networks.pop(obj.id, None)
                    self.ports = {k: p for k, p in self.ports.items() if p.network_id != obj.id}
            elif isinstance(obj, Port):
                if m.op == "put":
                    self.ports[obj.id] = obj
                else:
                    self.ports.pop(obj.id, None)
            elif isinstance(obj, SecurityGroup):
                if m.op == "put":
                    self.groups[obj.id] = obj
                else:
                    self.groups.pop(obj.id, None)
            elif isinstance(obj, GroupMember):
                key = (obj.group_id, obj.port_id)
                if m.op == "put":
                    self.members[key] = obj
                else:
                    self.members.pop(key, None)

    def as_view(self, revision: int) -> View:
        nets = sorted(self.networks.values(), key=lambda n: n.id)
        ports = sorted(self.ports.values(), key=lambda p: (p.network_id, p.id))
        groups = sorted(self.groups.values(), key=lambda g: g.id)
        members = [self.members[k] for k in sorted(self.members)]
        return View(revision, nets, ports, groups, members)


def normal(view: View) -> View:
    """A view with its lists in a fixed order, for comparisons."""
    return View(
        view.revision,
        sorted(view.networks, key=lambda n: n.id),
        sorted(view.ports, key=lambda p: (p.network_id, p.id)),
        sorted(view.security_groups, key=lambda g: g.id),
        sorted(view.members, key=lambda m: (m.group_id, m.port_id)),
    )


FANOUT_HOSTS = ("h1", "h2", "h3", "h4")


class Cluster:
    """A FakeLog, the live World, and one fan-out state per host (all watching from 0)."""

    def __init__(self) -> None:
        self.log = FakeLog()
        self.world = World()
        self.states = {h: HostState(h) for h in FANOUT_HOSTS}
        self.sent: dict[str, list[WatchEvent]] = {h: [] for h in FANOUT_HOSTS}

    def feed(self, event: Event) -> dict[str, list[WatchEvent]]:
        self.world.apply(event)
        out = {h: fan_out(s, event, self.world) for h, s in self.states.items()}
        for h, msgs in out.items():
            self.sent[h] += msgs
        return out
