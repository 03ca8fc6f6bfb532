"""Host lifecycle on both backends: delete refused while ports are bound, liveness.
(Runs on a backend once it has delete_host and host_liveness.)"""

from __future__ import annotations

import time
from typing import Any

import pytest

from flowkeeper.model import Host
from flowkeeper.store.base import Conflict, HostLiveness, NotFound, Store
from tests.conformance.helpers import port


def lifecycle(store: Store) -> Any:
    if not (hasattr(store, "delete_host") and hasattr(store, "host_liveness")):
        pytest.skip(f"{type(store).__name__} has no delete_host/host_liveness yet")
    return store


def test_delete_host_is_refused_while_ports_are_bound(store: Store) -> None:
    s = lifecycle(store)
    s.put_host(Host("h1", "198.18.0.1"))
    s.create_network("net1", "vxlan", id="n1")
    s.create_port(port("p1", "n1", "h1", "fa:16:3e:00:00:01"))
    before = s.revision()
    with pytest.raises(Conflict, match=r"^host 'h1' still has 1 bound port\(s\); delete or move"):
        s.delete_host("h1")
    assert s.revision() == before
    s.bind_port("p1", "h2")
    gone = s.delete_host("h1")
    assert gone.name == "h1" and gone.tunnel_ip == "198.18.0.1"
    (event,) = s.events_since(s.revision() - 1) or [None]
    assert event is not None and (event.kind, event.op, event.id) == ("host", "delete", "h1")
    with pytest.raises(NotFound, match="host 'h1' not found"):
        s.get_host("h1")
    with pytest.raises(NotFound, match="host 'h1' not found"):
        s.delete_host("h1")
    assert "h1" not in s.host_liveness()


def test_a_heartbeating_host_is_alive(store: Store) -> None:
    s = lifecycle(store)
    before = time.time()
    s.put_host(Host("h1", "198.18.0.1", last_seen=time.time()))
    s.put_host(Host("h1", "198.18.0.1", state="in-sync", last_seen=time.time()))
    found = s.host_liveness()["h1"]
    assert isinstance(found, HostLiveness) and found.alive
    assert before - 1 <= found.since <= time.time()
