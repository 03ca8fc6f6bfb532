"""Backend-neutral helpers of the conformance suite."""

from __future__ import annotations

from flowkeeper.model import Port
from flowkeeper.store.base import Store


def port(pid: str, net: str, host: str, mac: str, *ips: str) -> Port:
    return Port(pid, net, host, mac, tuple(ips), "DOWN")


def state(s: Store) -> tuple[object, ...]:
    """Everything observable: objects, revision, events."""
    return (s.snapshot(), s.revision(), s.events_since(s.compact_revision()))


def compact_now(s: Store) -> None:
    """Run the backend's compaction now (sqlite compacts on every write already)."""
    from flowkeeper.store.etcd import EtcdStore

    if isinstance(s, EtcdStore):
        s.compact()
