"""A tiny in-memory event source for fan-out tests: writes become store-like Events (with prev)."""

from __future__ import annotations

from dataclasses import replace

from flowkeeper.model import Host, Network, Port, View, WatchEvent
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

    def ports(self) -> list[Port]:
        return [o for o in self.objects.values() if isinstance(o, Port)]

    def networks(self) -> list[Network]:
        return [o for o in self.objects.values() if isinstance(o, Network)]


class Replay:
    """What an agent builds from its watch messages (network delete drops its ports)."""

    def __init__(self, view: View | None = None) -> None:
        self.networks: dict[str, Network] = {}
        self.ports: dict[str, Port] = {}
        if view is not None:
            self.networks = {n.id: n for n in view.networks}
            self.ports = {p.id: p for p in view.ports}

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

    def as_view(self, revision: int) -> View:
        nets = sorted(self.networks.values(), key=lambda n: n.id)
        ports = sorted(self.ports.values(), key=lambda p: (p.network_id, p.id))
        return View(revision, nets, ports)


def normal(view: View) -> View:
    """A view with its lists in a fixed order, for comparisons."""
    return View(
        view.revision,
        sorted(view.networks, key=lambda n: n.id),
        sorted(view.ports, key=lambda p: (p.network_id, p.id)),
    )
