"""The server's store is replaced under running agents: they list again, not follow it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flowkeeper.lab import services
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.state import HostState, LabState
from flowkeeper.naming import BR_INT, BR_TUN
from flowkeeper.snapshot.store import SnapshotStore
from flowkeeper.store.sqlite import SqliteStore
from tests.conftest import LabFactory, wait_for
from tests.integration.ha_support import Shape, flows, log_of

pytestmark = pytest.mark.lab


def snapshot_cluster(host: HostState) -> str | None:
    data = SnapshotStore(Path(host.path("agent")) / "snapshot").load().data
    return None if data is None else data.cluster_id


def other_store(lab: Lab, state: LabState, path: Path, drop: str) -> str:
    """A new store with the same networks, hosts and ports but one, and a revision ahead
    of the old one: what a wrong backup or a rebuilt server would hold. Its cluster id."""
    client = lab.client(state)
    old_revision = client.revision()
    store = SqliteStore(path)
    for net in client.list_networks():
        store.create_network(net.name, net.type, net.segmentation_id, net.cidr, net.id)
    for host in client.list_hosts():
        store.put_host(host)
    for port in client.list_ports():
        if port.id != drop:
            store.create_port(port)
    while store.revision() <= old_revision + 5:  # its own history, further on
        store.delete_network(store.create_network("pad", "gre").id)
    # A backup holds the API tokens too: the agents' host tokens stay valid.
    old = SqliteStore(Path(state.dir) / "server" / "flowkeeper.db")
    for token in old.list_tokens():
        store.add_token(token)
    old.close()
    cid = store.cluster_id()
    store.close()
    return cid


def cold_reference(lab: Lab, host_name: str) -> set[Shape]:
    """What an agent with no snapshot, on a switch with no flows, installs."""
    state = lab.state()
    host = state.host(host_name)
    services.stop_agent(host)
    shutil.rmtree(Path(host.path("agent")) / "snapshot")
    for bridge in (BR_INT, BR_TUN):
        lab.bridge(host, bridge).delete_all()
    synced = log_of(host).count("in sync at revision")
    services.start_agent(state, host)
    wait_for(lambda: log_of(host).count("in sync at revision") > synced, what="a cold sync")
    return flows(lab, host)


def test_agent_lists_again_when_the_server_store_is_replaced(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=2, networks=1)
    h1 = state.host("h1")
    gone = next(v for v in state.vms if v.host == "h2")
    client = lab.client(state)
    old_cid = client.stats()["cluster_id"]
    port_id = next(p.id for p in client.list_ports() if p.mac == gone.mac)
    assert any(gone.mac in str(f) for f in flows(lab, h1))

    new_db = tmp_path / "other.db"
    new_cid = other_store(lab, state, new_db, drop=port_id)
    assert new_cid != old_cid
    lab.stop_server()
    db = Path(state.dir) / "server" / "flowkeeper.db"
    for side in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        side.unlink(missing_ok=True)
    shutil.copy2(new_db, db)
    lab.start_server()
    assert lab.client(lab.state()).stats()["cluster_id"] == new_cid

    wait_for(
        lambda: "listing again instead of watching" in log_of(h1),
        what="h1's agent to notice the other store",
    )
    # Watching the new store from h1's old revision would never have told it that the
    # port is gone; the list does.
    wait_for(
        lambda: not any(gone.mac in str(f) for f in flows(lab, h1)),
        what="the flows of the port the new store lacks to go",
    )
    wait_for(lambda: snapshot_cluster(h1) == new_cid, what="the snapshot to name the new store")
    after = flows(lab, h1)
    assert after == cold_reference(lab, "h1")
    others = [v for v in state.vms if v.host == "h2" and v.name != gone.name]
    first = next(v for v in state.vms if v.host == "h1")
    assert lab.ping(first.name, others[0].name, count=5, interval=0.02).lost <= 1
