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

Liveness (a host gone because its heartbeats stopped) is no event and changes nothing
here: a gone host's ports keep their FDB entries on its peers (docs/control-plane.md,
"Host lifecycle").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowkeeper.model import Host, Network, Port, WatchEvent
from flowkeeper.server.world import WorldView, resolve
from flowkeeper.store.base import Event


@dataclass
class HostState:
    """The part of a host's view fan-out must remember: the host's own ports."""

    host: str
    own: dict[str, str] = field(default_factory=dict)  # own port id -> its network id
    counts: dict[str, int] = field(default_factory=dict)  # network id -> own ports on it
    standby_for: str = ""  # a standby host's view also holds this host's networks

    @classmethod
    def from_world(cls, host: str, world: WorldView, standby_for: str = "") -> HostState:
        state = cls(host, standby_for=standby_for)
        for member in (host, standby_for) if standby_for else (host,):
            for port in world.ports_of(member):
                state.bind(port.id, port.network_id)
        return state

    def holds(self, port: Port) -> bool:
        """True if the port counts towards this host's view (its own, or its standby's)."""
        return port.host == self.host or (bool(self.standby_for) and port.host == self.standby_for)

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
    if isinstance(obj, Host):
        return _host_event(state, event, obj, world)
    return []  # security groups: not yet sent to hosts


def _port_event(
    state: HostState, revision: int, old: Port | None, new: Port | None, world: WorldView
) -> list[WatchEvent]:
    if _unrelated(state, old) and _unrelated(state, new):
        return []  # the common case at scale: not this host's port, not its networks
    before = state.networks()
    port_id = new.id if new is not None else old.id if old is not None else ""
    if new is not None and state.holds(new):
        state.bind(port_id, new.network_id)
    else:
        state.unbind(port_id)
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
    return out


def _unrelated(state: HostState, port: Port | None) -> bool:
    return port is None or (not state.holds(port) and port.network_id not in state.counts)


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
