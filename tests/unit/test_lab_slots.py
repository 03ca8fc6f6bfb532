"""Twin switch slots in the lab, the parts without OVS: state, agent argv, the status
file the upgrade waits on, and the vswitchd supervisor (on stand-in processes)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flowkeeper.lab import services, slots, slotupgrade, supervise
from flowkeeper.lab.run import LabError
from flowkeeper.lab.state import HostState, LabState, VmState
from flowkeeper.naming import SLOT_LINK, SLOT_LINK_OFPORT


def _state(tmp_path: Path) -> LabState:
    state = LabState(name="fk", dir=str(tmp_path), underlay_ns="fk-ul")
    host = HostState("h1", 1, "fk-h1", "198.18.0.2", str(tmp_path / "hosts" / "h1"))
    host.standby = slots.standby_of(state, host)
    state.hosts.append(host)
    state.hosts.append(HostState("h2", 2, "fk-h2", "198.18.0.3", str(tmp_path / "hosts" / "h2")))
    state.vms.append(VmState("h1-vm1", "h1", "fk-h1-vm1", 1, "fa:16:3e:01:01:01", "x", "i", "t"))
    return state


def test_slot_link_names_as_agreed() -> None:
    assert (SLOT_LINK, SLOT_LINK_OFPORT) == ("fk-slot", 65000)


def test_slot_b_shares_name_index_and_tunnel_ip_with_its_own_ns_dir_and_pids(
    tmp_path: Path,
) -> None:
    state = _state(tmp_path)
    host = state.host("h1")
    b = host.slot("b")
    assert (b.name, b.index, b.tunnel_ip) == ("h1", 1, "198.18.0.2")
    assert b.ns == "fk-h1-b"
    assert b.dir == str(tmp_path / "hosts" / "h1" / "slot-b")
    assert b.pids is not host.pids and b.standby is None
    assert host.slot("a") is host and list(host.slots()) == ["a", "b"]
    assert slots.underlay_port(host, "a") == "h1" and slots.underlay_port(host, "b") == "h1b"
    with pytest.raises(LabError, match="without --standby"):
        state.host("h2").slot("b")


def test_lab_state_round_trips_the_standby_slot_and_vm_slots(tmp_path: Path) -> None:
    state = _state(tmp_path)
    host = state.host("h1")
    host.pids["supervise"] = 11
    assert host.standby is not None
    host.standby.pids.update({"ovs-vswitchd": 12, "supervise": 13})
    state.vms[0].slot = "b"
    state.save()
    loaded = LabState.load(tmp_path)
    assert loaded == state
    assert loaded is not None and isinstance(loaded.host("h1").standby, HostState)
    assert loaded.host("h2").standby is None
    assert loaded.vif_netns(loaded.vms[0]) == "fk-h1-b"
    loaded.vms[0].slot = "a"
    assert loaded.vif_netns(loaded.vms[0]) == "fk-h1"


def test_a_lab_json_from_before_slots_still_loads(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.hosts[0].standby = None
    state.save()
    raw = json.loads((tmp_path / "lab.json").read_text())
    for host in raw["hosts"]:
        del host["standby"]
    for vm in raw["vms"]:
        del vm["slot"]
    (tmp_path / "lab.json").write_text(json.dumps(raw))
    loaded = LabState.load(tmp_path)
    assert loaded is not None and loaded.hosts[0].standby is None and loaded.vms[0].slot == "a"


def test_a_lab_json_with_the_old_upgrades_standby_for_still_loads(tmp_path: Path) -> None:
    """A host that the one-slot hot upgrade (gone) left with `standby_for` loads without it."""
    state = _state(tmp_path)
    state.save()
    raw = json.loads((tmp_path / "lab.json").read_text())
    raw["hosts"][0]["standby_for"] = ""
    raw["hosts"][0]["standby"]["standby_for"] = ""
    raw["hosts"][1]["standby_for"] = "h1"
    (tmp_path / "lab.json").write_text(json.dumps(raw))
    loaded = LabState.load(tmp_path)
    assert loaded == state
    loaded.save()
    assert "standby_for" not in (tmp_path / "lab.json").read_text()


def test_upgrade_ovs_of_a_one_slot_host_fails_at_once_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flowkeeper.cli.main import main

    _state(tmp_path).save()
    assert main(["lab", "--lab-dir", str(tmp_path), "upgrade-ovs", "h2"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "flowkeeper: error: h2 has one switch slot: a hot upgrade needs two "
        "(make the lab with `lab up --standby`)\n"
    )


def test_agent_argv_gets_the_standby_flags_only_with_a_standby(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _state(tmp_path)
    state.server_url = "http://127.0.0.1:1"
    monkeypatch.setattr(services, "host_token", lambda _s, h: Path(h.dir) / "agent.token")
    argv = services.agent_argv(state, state.host("h1"))
    b = tmp_path / "hosts" / "h1" / "slot-b"
    tail = argv[argv.index("--standby-ovsdb") :]
    assert tail[:10] == [
        "--standby-ovsdb",
        f"unix:{b}/run/db.sock",
        "--standby-rundir",
        f"{b}/run",
        "--standby-vswitchd-ctl",
        f"{b}/ovs-vswitchd.ctl",
        "--vif-netns",
        "fk-h1",
        "--standby-vif-netns",
        "fk-h1-b",
    ]
    assert argv[argv.index("--ovsdb") + 1] == f"unix:{tmp_path}/hosts/h1/run/db.sock"
    assert "--standby-ovsdb" not in services.agent_argv(state, state.host("h2"))


def test_supervisor_argv_names_the_slot_dir(tmp_path: Path) -> None:
    state = _state(tmp_path)
    host = state.host("h1")
    for name, slot in host.slots().items():
        argv = services.supervisor_argv(state, slot, name)
        assert argv[1:3] == ["-m", "flowkeeper.lab.supervise"]
        # procs.is_ours(pid, SLOTDIR) must know it: a path inside the slot's dir.
        assert f"{slot.dir}/ovs-vswitchd.pid" in argv
        assert argv[argv.index("--ns") + 1] == slot.ns
        assert int(argv[argv.index("--max-restarts") + 1]) > 0


# --- slots.json ------------------------------------------------------------------------
def _write_slots(host: HostState, when: float, a: dict[str, object], b: dict[str, object]) -> None:
    path = slotupgrade.slots_path(host)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"time": when, "slots": {"a": a, "b": b}}))


def _slot(alive: bool = True, prepared: bool = True, restarts: int = 0) -> dict[str, object]:
    return {"alive": alive, "prepared": prepared, "vifs": ["tap1"], "restarts": restarts}


def test_read_slots_parses_the_agreed_file_and_names_a_bad_one(tmp_path: Path) -> None:
    host = _state(tmp_path).host("h1")
    assert slotupgrade.read_slots(slotupgrade.slots_path(host)) is None
    _write_slots(host, 5.0, _slot(), _slot(prepared=False, restarts=2))
    got = slotupgrade.read_slots(slotupgrade.slots_path(host))
    assert got is not None and got.time == 5.0
    assert got.slots["b"] == slotupgrade.SlotStatus(True, False, ["tap1"], 2)
    slotupgrade.slots_path(host).write_text('{"time": 1}')
    with pytest.raises(LabError, match="not a slots status file"):
        slotupgrade.read_slots(slotupgrade.slots_path(host))


def test_wait_slots_file_is_bounded_and_says_what_is_missing(tmp_path: Path) -> None:
    host = _state(tmp_path).host("h1")
    with pytest.raises(LabError, match=r"slots.json does not exist after 0 s.*--standby-ovsdb"):
        slotupgrade.wait_slots_file(host, timeout=0.05)


def test_a_status_from_before_the_restart_does_not_count_as_prepared(tmp_path: Path) -> None:
    host = _state(tmp_path).host("h1")
    since = time.time()
    _write_slots(host, since - 1, _slot(), _slot())
    with pytest.raises(LabError, match=r"slot b not prepared .* not rewritten since the restart"):
        slotupgrade.wait_prepared(host, "b", since=since, restarts_before=0, timeout=0.1)
    # Rewritten after the restart but still "prepared" as before: not seen restarting.
    _write_slots(host, since + 0.1, _slot(), _slot())
    with pytest.raises(LabError, match="never showed slot b restarting"):
        slotupgrade.wait_prepared(host, "b", since=since, restarts_before=0, timeout=0.1)
    _write_slots(host, since + 0.2, _slot(), _slot(alive=True, prepared=False))
    with pytest.raises(LabError, match="alive but not prepared"):
        slotupgrade.wait_prepared(host, "b", since=since, restarts_before=0, timeout=0.1)


def test_a_deaths_count_or_a_last_death_after_the_restart_counts_too(tmp_path: Path) -> None:
    host = _state(tmp_path).host("h1")
    since = time.time()
    b = {**_slot(), "deaths": 3}
    del b["restarts"]
    _write_slots(host, since + 0.1, _slot(), b)
    got = slotupgrade.wait_prepared(host, "b", since=since, restarts_before=2, timeout=1)
    assert got.slots["b"].restarts == 3
    _write_slots(host, since + 0.1, _slot(), {**_slot(), "last_death": since + 0.05})
    assert slotupgrade.wait_prepared(host, "b", since=since, restarts_before=0, timeout=1)


def test_prepared_after_being_seen_down_or_with_a_higher_restart_count(tmp_path: Path) -> None:
    host = _state(tmp_path).host("h1")
    since = time.time()
    _write_slots(host, since + 0.1, _slot(), _slot(restarts=1))
    got = slotupgrade.wait_prepared(host, "b", since=since, restarts_before=0, timeout=1)
    assert got.slots["b"].restarts == 1

    _write_slots(host, since + 0.1, _slot(), _slot(alive=False, prepared=False))

    def later() -> None:
        time.sleep(0.2)
        _write_slots(host, since + 0.3, _slot(), _slot())

    thread = threading.Thread(target=later)
    thread.start()
    try:
        got = slotupgrade.wait_prepared(host, "b", since=since, restarts_before=0, timeout=5)
    finally:
        thread.join()
    assert got.time == since + 0.3


# --- the supervisor on stand-in processes ------------------------------------------------
def _stand_in(slot_dir: Path) -> int:
    """A process whose command line names the slot dir, its PID in the pid file."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", f"{slot_dir}/stand-in"],
        start_new_session=True,
    )
    (slot_dir / supervise.PIDFILE).write_text(f"{proc.pid}\n")
    # Until it has exec'd, its command line is still this test's.
    _wait(lambda: supervise.vswitchd_pid(slot_dir) == proc.pid, 5)
    return proc.pid


def _kill(pid: int) -> None:
    """Kill and reap one of this test's own children."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@pytest.fixture
def slot_dir(tmp_path: Path) -> Path:
    (tmp_path / "lab.json").write_text("{}")
    slot = tmp_path / "hosts" / "h1" / "slot-b"
    slot.mkdir(parents=True)
    return slot


def _run(sup: supervise.Supervisor) -> threading.Thread:
    thread = threading.Thread(target=sup.run, daemon=True)
    thread.start()
    return thread


def _wait(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_supervisor_restarts_a_killed_process_and_logs_it(slot_dir: Path) -> None:
    started: list[int] = []

    def start() -> int:
        started.append(_stand_in(slot_dir))
        return started[-1]

    first = _stand_in(slot_dir)
    lines: list[str] = []
    sup = supervise.Supervisor(
        slot_dir, slot_dir.parents[2], start, label="h1 slot b", log=lines.append
    )
    thread = _run(sup)
    try:
        _wait(lambda: any(f"watching ovs-vswitchd pid {first}" in x for x in lines), 5)
        os.kill(first, signal.SIGKILL)
        _wait(lambda: started and supervise.vswitchd_pid(slot_dir) == started[0], 5)
        events = [
            json.loads(x) for x in (slot_dir / supervise.EVENTS_FILE).read_text().splitlines()
        ]
        assert events[0]["event"] == "restart" and events[0]["old_pid"] == first
        assert events[0]["pid"] == started[0] and events[0]["down_s"] < 5
        assert any("restart 1/" in line and line[:4].isdigit() for line in lines), lines
    finally:
        sup.stopping.set()
        thread.join(5)
        for pid in [first, *started]:
            _kill(pid)
    assert not thread.is_alive()


def test_supervisor_leaves_a_held_slot_alone_and_gives_up_after_its_bound(
    slot_dir: Path,
) -> None:
    started: list[int] = []

    def start() -> int:
        started.append(_stand_in(slot_dir))
        os.kill(started[-1], signal.SIGKILL)  # dies at once, every time
        return started[-1]

    first = _stand_in(slot_dir)
    sup = supervise.Supervisor(
        slot_dir, slot_dir.parents[2], start, label="t", max_restarts=3, log=lambda _l: None
    )
    with supervise.hold(slot_dir):
        thread = _run(sup)
        os.kill(first, signal.SIGKILL)
        time.sleep(0.5)
        assert started == []  # held: the lab restarts it itself
    thread.join(10)
    assert not thread.is_alive() and len(started) == 3
    for pid in [first, *started]:
        _kill(pid)


def test_supervisor_stops_when_the_lab_is_gone(slot_dir: Path) -> None:
    first = _stand_in(slot_dir)
    sup = supervise.Supervisor(
        slot_dir, slot_dir.parents[2], lambda: 0, label="t", log=lambda _l: None
    )
    thread = _run(sup)
    (slot_dir.parents[2] / "lab.json").unlink()
    thread.join(5)
    assert not thread.is_alive()
    _kill(first)
