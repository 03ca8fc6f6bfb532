"""The agent on a hypervisor it shares: other bridges, datapath types, flow-restore-wait."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flowkeeper.lab import ovsproc, procs, services
from flowkeeper.lab.hostops import bring_up_underlay
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.state import HostState
from flowkeeper.naming import BR_INT, BR_PHY, BR_TUN
from tests.conftest import LabFactory, wait_for

pytestmark = pytest.mark.lab
BR_EX = "br-ex"
EX_FLOW = "table=0,priority=7,dl_type=0x88b5,actions=drop"
COLUMNS = "datapath_type,fail_mode,other_config,external_ids,protocols"


def bridge_row(host: HostState, bridge: str) -> str:
    """The bridge's settings (the agent's own keeps its generation in external_ids)."""
    cols = COLUMNS.replace(",external_ids", "") if bridge in (BR_INT, BR_TUN) else COLUMNS
    return ovsproc.vsctl(host, f"--columns={cols}", "list", "Bridge", bridge)


def frw(host: HostState) -> str:
    cfg = ovsproc.vsctl(host, "get", "Open_vSwitch", ".", "other_config")
    return "set" if "flow-restore-wait" in cfg else "unset"


def dump(host: HostState, bridge: str) -> list[str]:
    out = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow15", "dump-flows", "--no-stats", f"unix:{host.mgmt(bridge)}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.strip() for line in out.splitlines() if "actions=" in line]


def agent_log(host: HostState) -> str:
    return (Path(host.dir) / "agent.log").read_text()


def add_br_ex(host: HostState) -> None:
    """A provider bridge someone else owns: secure, with one flow of its own."""
    ovsproc.vsctl(
        host,
        "add-br",
        BR_EX,
        "--",
        "set",
        "Bridge",
        BR_EX,
        "datapath_type=netdev",
        "fail_mode=secure",
        "external_ids:owner=someone-else",
    )
    ovsproc.wait_bridge_sockets(host, [BR_EX])
    subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow15", "add-flow", f"unix:{host.mgmt(BR_EX)}", EX_FLOW],
        check=True,
    )


def test_agent_leaves_flow_restore_wait_while_another_bridge_waits(
    lab_factory: LabFactory,
) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=1, networks=1)
    h1 = state.host("h1")
    a, b = state.vms
    assert lab.ping(a.name, b.name, count=5, interval=0.02).lost <= 1
    add_br_ex(h1)
    before = {br: bridge_row(h1, br) for br in (BR_EX, BR_PHY)}
    restores = agent_log(h1).count("ovs-vswitchd restarted or lost its flows")

    # ovs-ctl restart, first half: save, flow-restore-wait, a new vswitchd. The saved
    # flows are not back yet: br-ex is still waiting for its flow.
    saved = ovsproc.save_flows(h1)
    assert "dl_type=0x88b5" in saved[BR_EX]
    ovsproc.flow_restore_wait(h1)
    pid = h1.pids.pop("ovs-vswitchd")
    procs.stop(pid, h1.dir)
    h1.pids["ovs-vswitchd"] = ovsproc.start_vswitchd(h1)
    state.save()
    bring_up_underlay(h1)

    # The agent puts its own flows back from memory ...
    wait_for(
        lambda: agent_log(h1).count("ovs-vswitchd restarted or lost its flows") > restores,
        what="the agent to restore its flows",
    )
    wait_for(lambda: "left for ovs-ctl to clear" in agent_log(h1), what="the agent's notice")
    assert dump(h1, BR_INT) and dump(h1, BR_TUN)
    # ... and leaves the key set: br-ex has not got its flow back yet.
    assert frw(h1) == "set"
    assert dump(h1, BR_EX) == []
    assert {br: bridge_row(h1, br) for br in (BR_EX, BR_PHY)} == before
    assert "cleared other_config:flow-restore-wait" not in agent_log(h1)

    # ovs-ctl restart, second half: br-ex's saved flows back, then the key cleared.
    ovsproc.restore_flows(h1, {BR_EX: saved[BR_EX]})
    ovsproc.flow_restore_complete(h1)
    assert frw(h1) == "unset"
    assert any("dl_type=0x88b5" in line for line in dump(h1, BR_EX))
    wait_for(
        lambda: lab.ping(a.name, b.name, count=3, interval=0.05).lost == 0,
        what="forwarding after the restart",
    )
    assert {br: bridge_row(h1, br) for br in (BR_EX, BR_PHY)} == before


def _start_agent_with(lab: Lab, host_name: str, drop: tuple[str, ...]) -> None:
    """Restart a host's agent with some arguments left out (here: its --datapath-type)."""
    state = lab.state()
    host = state.host(host_name)
    services.stop_agent(host)
    argv = services.agent_argv(state, host, state.l2pop)
    i = argv.index(drop[0])
    assert argv[i : i + len(drop)] == list(drop)
    del argv[i : i + len(drop)]
    host.pids["agent"] = services.spawn(argv, Path(host.dir) / "agent.log")
    state.save()


def test_agent_never_changes_the_datapath_type_of_an_existing_bridge(
    lab_factory: LabFactory,
) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=1, networks=1)
    h1 = state.host("h1")
    a, b = state.vms
    add_br_ex(h1)
    before = {br: bridge_row(h1, br) for br in (BR_INT, BR_TUN, BR_PHY, BR_EX)}
    assert "datapath_type       : netdev" in before[BR_INT]
    flows_before = sorted(dump(h1, BR_INT))
    starts = agent_log(h1).count("caught up with the server")
    # The default --datapath-type is system: the lab's bridges are netdev (X) and stay so.
    _start_agent_with(lab, "h1", ("--datapath-type", "netdev"))
    wait_for(
        lambda: agent_log(h1).count("caught up with the server") > starts,
        what="the restarted agent to catch up",
    )
    log = agent_log(h1)
    for br in (BR_INT, BR_TUN):
        assert f"bridge {br} has datapath_type netdev, not the configured system" in log
    assert "created bridge" not in log
    assert {br: bridge_row(h1, br) for br in (BR_INT, BR_TUN, BR_PHY, BR_EX)} == before
    assert sorted(dump(h1, BR_INT)) == flows_before
    assert dump(h1, BR_EX) and any("dl_type=0x88b5" in x for x in dump(h1, BR_EX))
    assert lab.ping(a.name, b.name, count=5, interval=0.02).lost == 0


def test_lab_restart_ovs_does_what_ovs_ctl_restart_does(lab_factory: LabFactory) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=1, networks=1)
    h1 = state.host("h1")
    a, b = state.vms
    add_br_ex(h1)
    ours = sorted(dump(h1, BR_INT))
    lab.restart_ovs("h1")  # save, flow-restore-wait, restart, replay, clear
    state = lab.state()
    h1 = state.host("h1")
    assert frw(h1) == "unset"
    assert any("dl_type=0x88b5" in x for x in dump(h1, BR_EX))
    assert sorted(dump(h1, BR_INT)) == ours
    wait_for(
        lambda: lab.ping(a.name, b.name, count=3, interval=0.05).lost == 0,
        what="forwarding after the restart",
    )


def test_agent_creates_a_missing_bridge_with_its_datapath_type(lab_factory: LabFactory) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=1, networks=1)
    h1 = state.host("h1")
    a, b = state.vms
    services.stop_agent(h1)
    ovsproc.vsctl(h1, "del-br", BR_TUN)  # br-tun is gone (with its tunnels and flows)
    before = {br: bridge_row(h1, br) for br in (BR_INT, BR_PHY)}
    starts = agent_log(h1).count("caught up with the server")
    services.start_agent(state, h1)  # the lab passes --datapath-type netdev
    state.save()
    wait_for(
        lambda: agent_log(h1).count("caught up with the server") > starts,
        what="the agent to catch up",
    )
    assert "created bridge br-tun (datapath_type netdev)" in agent_log(h1)
    row = bridge_row(h1, BR_TUN)
    assert "datapath_type       : netdev" in row and "fail_mode           : secure" in row
    assert {br: bridge_row(h1, br) for br in (BR_INT, BR_PHY)} == before
    wait_for(
        lambda: lab.ping(a.name, b.name, count=3, interval=0.05).lost == 0,
        what="forwarding through the new br-tun",
    )
