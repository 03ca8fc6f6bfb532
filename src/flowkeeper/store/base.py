"""The store interface (revisioned objects, an event log) for the sqlite and etcd backends."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from flowkeeper.cperrors import Compacted, Conflict, NotFound, StoreError
from flowkeeper.model import (
    DEFAULT_PROJECT,
    AddressPair,
    Host,
    Network,
    NetworkType,
    Port,
    PortStatus,
    SecurityGroup,
    SecurityGroupRule,
)
from flowkeeper.store.tokens import TokenRecord

__all__ = [
    "DEFAULT_KEEP_EVENTS",
    "DEFAULT_LIVENESS_TTL_S",
    "Compacted",
    "Conflict",
    "Event",
    "HostLiveness",
    "Kind",
    "NotFound",
    "Objects",
    "Op",
    "Snapshot",
    "Store",
    "StoreError",
    "StoreObject",
    "TokenRecord",
    "decode_object",
    "encode_object",
]

Kind = Literal["network", "port", "host", "security_group"]
Op = Literal["put", "delete"]
StoreObject: TypeAlias = Network | Port | Host | SecurityGroup
Objects: TypeAlias = list[StoreObject]
KINDS: tuple[Kind, ...] = ("network", "port", "host", "security_group")
DEFAULT_KEEP_EVENTS = 100_000
DEFAULT_LIVENESS_TTL_S = 15.0  # three agent heartbeats of 5 s


@dataclass(frozen=True, slots=True)
class Event:
    """One write: `object` is the new value (put) or the removed one (delete); `prev` is the
    value before the write (None on create). Like etcd's watch with prev_kv."""

    revision: int
    kind: Kind
    op: Op
    id: str
    object: StoreObject
    prev: StoreObject | None = None


@dataclass(frozen=True)
class HostLiveness:
    """A registered host's liveness: `alive` while its heartbeats keep coming (the last one
    within the store's liveness TTL); `since` (Unix time) is when it became alive, or when
    it was declared gone."""

    alive: bool
    since: float


@dataclass(frozen=True)
class Snapshot:
    """Everything in the store, consistent at `revision`."""

    revision: int
    networks: list[Network]
    ports: list[Port]
    hosts: list[Host]
    security_groups: list[SecurityGroup] = field(default_factory=list)  # sorted by id


def status_unchanged(port_id: str, status: PortStatus, host: str | None) -> Callable[[Port], bool]:
    """set_port_status's rule on every backend: Conflict when the reporting host is not
    the one the port is bound to; True (no write) when the status is already `status`."""

    def unchanged(port: Port) -> bool:
        if host is not None and port.host != host:
            raise Conflict(f"port {port_id!r} is bound to {port.host!r}, not {host!r}")
        return port.status == status

    return unchanged


def security_changes(
    groups: tuple[str, ...] | None,
    enabled: bool | None,
    pairs: tuple[AddressPair, ...] | None,
) -> dict[str, Any]:
    """The port fields update_port_security changes (None: keep)."""
    found = {
        "security_groups": groups,
        "port_security_enabled": enabled,
        "allowed_address_pairs": pairs,
    }
    return {k: val for k, val in found.items() if val is not None}


def encode_object(obj: StoreObject) -> str:
    data: dict[str, Any] = obj.to_dict()
    if isinstance(obj, Port):
        data.pop("tunnel_ip")  # never stored: filled in on the way out
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def decode_object(kind: str, text: str) -> StoreObject:
    data = json.loads(text)
    if kind == "network":
        return Network.from_dict(data)
    if kind == "port":
        return Port.from_dict(data)
    if kind == "host":
        return Host.from_dict(data)
    if kind == "security_group":
        return SecurityGroup.from_dict(data)
    raise StoreError(f"unknown object kind {kind!r} in the store")


class Store(Protocol):
    """A revisioned store. Every write bumps one global revision and appends an event in the
    same transaction; a failed write changes nothing. Methods are synchronous and
    thread-safe; the server runs up to `concurrency` of them at once on worker threads
    (sqlite: 1, in order)."""

    concurrency: int

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback()` (from any thread) when new events may be available."""
        ...

    def cluster_id(self) -> str:
        """The store's identity: made with the store, the same across restarts. Another
        id means another history (a store restored from a backup, or a new one)."""
        ...

    def revision(self) -> int:
        """The revision of the last event (token writes and the like are not events)."""
        ...

    def compact_revision(self) -> int:
        """Events up to and including this revision are gone; watch from here or later."""
        ...

    def snapshot(self) -> Snapshot: ...

    def list_networks(self) -> tuple[list[Network], int]: ...

    def list_ports(
        self, network_id: str | None = None, host: str | None = None
    ) -> tuple[list[Port], int]: ...

    def list_hosts(self) -> tuple[list[Host], int]: ...

    def get_network(self, network_id: str) -> Network: ...

    def get_port(self, port_id: str) -> Port: ...

    def get_host(self, name: str) -> Host: ...

    def create_network(
        self,
        name: str,
        type: NetworkType,
        segmentation_id: int | None = None,
        cidr: str | None = None,
        id: str | None = None,
        *,
        project_id: str = DEFAULT_PROJECT,
    ) -> Network:
        """Allocates the lowest free segmentation_id of the type when it is None."""
        ...

    def delete_network(self, network_id: str) -> Network:
        """Conflict while the network still has ports."""
        ...

    def create_port(self, port: Port) -> Port:
        """Its security groups must exist (NotFound) and be of its project (StateConflict)."""
        ...

    def update_port_security(
        self,
        port_id: str,
        *,
        security_groups: tuple[str, ...] | None = None,
        port_security_enabled: bool | None = None,
        allowed_address_pairs: tuple[AddressPair, ...] | None = None,
    ) -> Port:
        """Change a port's security fields (None: keep) in one revision; no write when
        nothing changes. The groups are checked as on create."""
        ...

    def list_security_groups(
        self, project_id: str | None = None
    ) -> tuple[list[SecurityGroup], int]:
        """Sorted by id."""
        ...

    def get_security_group(self, group_id: str) -> SecurityGroup: ...

    def create_security_group(self, group: SecurityGroup) -> SecurityGroup:
        """Conflict if the id exists, or for a second group named "default" in a project.
        Its rules' remote groups must exist (NotFound; the group itself is fine) and be of
        its project (StateConflict). One event, revision filled in."""
        ...

    def delete_security_group(self, group_id: str) -> SecurityGroup:
        """Conflict while a port uses it or a rule of another group names it as remote."""
        ...

    def add_security_group_rule(self, group_id: str, rule: SecurityGroupRule) -> SecurityGroup:
        """The group with `rule` added: one event (a put of the group). Conflict if the
        group has the same rule (or its id); the remote group is checked as on create."""
        ...

    def delete_security_group_rule(self, group_id: str, rule_id: str) -> SecurityGroup:
        """The group without the rule: one event. NotFound if the group has no such rule."""
        ...

    def delete_port(self, port_id: str) -> Port: ...

    def set_port_status(self, port_id: str, status: PortStatus, host: str | None = None) -> Port:
        """No write (and no new revision) when the status is already `status`.

        With `host` (the reporting agent's), Conflict unless the port is bound there: a
        late report from the host a port migrated away from must not mark it DOWN.
        """
        ...

    def bind_port(self, port_id: str, host: str) -> Port:
        """Move a port's binding to `host` (a migration). No write if it is bound there.

        The status is kept: the caller plugs the VIF on the new host first (make before
        break), so an ACTIVE port's peers point their flows at the new host at once instead
        of dropping them until the new host's agent reports it ACTIVE again.
        """
        ...

    def put_host(self, host: Host) -> Host:
        """Create or replace. Only a new host or a changed tunnel_ip/l2pop/virtual is an
        event; liveness (state, revision, last_seen) is updated in place."""
        ...

    def delete_host(self, name: str) -> Host:
        """Remove a host's registration: one event (kind host, op delete, object and prev
        the removed host). NotFound if unknown; Conflict while ports are bound to it."""
        ...

    def host_liveness(self) -> dict[str, HostLiveness]:
        """The liveness of every registered host, by name. Not an event, no revision."""
        ...

    def events_since(self, revision: int, limit: int | None = None) -> list[Event]:
        """Events after `revision`, oldest first; Compacted if some of them are gone.
        Several events may share a revision; a page never splits one (it may exceed
        `limit` to finish it)."""
        ...

    def add_token(self, token: TokenRecord) -> TokenRecord:
        """Store a new API token (Conflict if its id exists). Tokens are not events."""
        ...

    def delete_token(self, token_id: str) -> TokenRecord:
        """Remove a token (revocation); NotFound if there is none with that id."""
        ...

    def list_tokens(self) -> list[TokenRecord]: ...

    def close(self) -> None: ...

    def list(self, kind: Kind) -> tuple[Objects, int]:
        """Every object of one kind, with the revision they are consistent at."""
        ...
