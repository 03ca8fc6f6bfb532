"""A journal whose last record was torn by a crash: what the agent journals after its
restart must survive the next power cut, with the server down."""

from __future__ import annotations

import pytest

from flowkeeper.lab import services
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.state import LabState
from flowkeeper.naming import BR_INT, BR_TUN
from flowkeeper.snapshot import records
from flowkeeper.snapshot.content import JournalDelta
from tests.conftest import LabFactory, wait_for

pytestmark = pytest.mark.lab

REMOTE = "r1"  # a host with no agent: its ports stay as the API set them
REMOTE_IP = "198.18.0.200"
PORTS = 15


def flows_text(lab: Lab, state: LabState, host: str) -> str:
    h = state.host(host)
    return "\n".join(
        f.render() for bridge in (BR_INT, BR_TUN) for f in lab.bridge(h, bridge).dump_flows()
    )


def tear_journal_tail(lab: Lab) -> tuple[str, int]:
    """Leave the first half of a valid record at the end of h1's journal, as a crash in
    the middle of an append does. Returns the journal's name and the torn record's offset."""
    snapdir = lab.dir / "hosts" / "h1" / "agent" / "snapshot"
    journal = max(snapdir.glob("journal-*.log"))
    record = records.encode(records.JOURNAL, JournalDelta(revision=1, generation=1).encode())
    offset = journal.stat().st_size
    with journal.open("ab") as f:
        f.write(record[: len(record) // 2])
    return journal.name, offset


def host_state(lab: Lab, state: LabState, name: str) -> str:
    return lab.client(state).get_host(name).state


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "kill-9"])
def test_records_journalled_after_a_torn_tail_survive_a_power_cut(
    lab_factory: LabFactory, hard: bool
) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=1, networks=1)
    h1 = state.host("h1")
    snapdir = lab.dir / "hosts" / "h1" / "agent" / "snapshot"
    wait_for((snapdir / "MANIFEST").exists, what="h1's snapshot")

    services.stop_agent(h1, hard=hard)
    journal, offset = tear_journal_tail(lab)
    services.start_agent(state, h1)
    wait_for(lambda: host_state(lab, state, "h1") == "in-sync", what="h1 in sync again")

    client = lab.client(state)
    client.register_host(REMOTE, REMOTE_IP)
    net = state.networks["1"]
    macs = [f"fa:16:3e:7e:00:{i:02x}" for i in range(PORTS)]
    for i, mac in enumerate(macs):
        port = client.create_port(net, REMOTE, mac, [f"198.19.1.{200 + i}"], name=f"r{i}")
        client.set_port_status(port.id, "ACTIVE")
    wait_for(
        lambda: all(m in flows_text(lab, state, "h1") for m in macs),
        timeout=30,
        what=f"the {PORTS} remote ports' flows on h1",
    )
    wait_for(
        lambda: host_state(lab, state, "h1") == "in-sync",
        what="h1 in sync after the remote ports",
    )

    agent_log = lab.dir / "hosts" / "h1" / "agent.log"
    lab.stop_server()
    lab.power_off("h1")
    seen = len(agent_log.read_text())
    lab.boot("h1")
    state = lab.state()
    # No server: whatever h1 gets now comes from its own disk.
    wait_for(
        lambda: "restored" in agent_log.read_text()[seen:],
        what="h1's agent to restore its snapshot",
    )
    wait_for(
        lambda: BR_TUN in {b for b in (BR_INT, BR_TUN) if lab.bridge(h1, b).dump_flows()},
        what="flows on h1's br-tun",
    )
    restored = [m for m in macs if m in flows_text(lab, state, "h1")]
    assert restored == macs, f"{len(restored)} of {PORTS} remote ports restored"
    log = agent_log.read_text()
    assert journal in log and f"offset {offset}" in log, "the torn tail was not logged"
