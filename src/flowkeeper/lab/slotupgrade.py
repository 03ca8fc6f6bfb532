"""Hot OVS upgrade with twin switch slots (`lab up --standby`): `lab upgrade-ovs HOST`.

Both slots of the host run all the time, with identical flows and every VIF's Interface
row in both OVSDBs under the same ofport (the agent keeps them so). The upgrade:

1. restart the EMPTY slot's ovs-vswitchd (in a real upgrade: the new binary) and wait
   until the agent's status file says that slot is prepared again;
2. move the VMs one at a time (`--settle S` apart) into it: each move is one netlink
   request, `ip -n NS_FROM link set dev TAP netns NS_TO up`; the new slot opens the
   device at the number its row already asks for, and no flow changes anywhere;
3. restart the now-empty other slot's ovs-vswitchd and wait until it is prepared: it is
   the standby for the next upgrade (which goes the other way).

Nothing here talks to the server: the lab waits on AGENT_STATE_DIR/slots.json, which the
agent rewrites (atomically) as the slots change:
  {"time": unix, "slots": {"a": {"alive": bool, "prepared": bool, "vifs": [device...],
   "restarts": int}, "b": {...}}}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowkeeper.agent import conntrack, vifsteer
from flowkeeper.lab import hypervisor, services, slots
from flowkeeper.lab.run import LabError, run
from flowkeeper.lab.state import HostState, LabState, VmState
from flowkeeper.ovs.errors import OvsdbError
from flowkeeper.ovs.ovsdb import Ovsdb

if TYPE_CHECKING:
    from flowkeeper.lab.lab import Lab

SLOTS_FILE = "slots.json"
POLL = 0.02  # seconds between two reads of slots.json
DEFAULT_TIMEOUT = 60.0  # for a slot to be prepared (and for slots.json to appear)
OFPORT_TIMEOUT = 10.0  # for a moved device to get its ofport in the new slot
# Steered cuts: how long the old slot's frames still reach the VM once the new path is
# made (make before break). Two vswitchds deliver the same mirrored frame each at its own
# delay; in the lab one slot lags the other by 3-23 ms several times a second (2 cores,
# four vswitchds), and an instant switch drops what the old slot still had in flight.
OVERLAP_S = 0.03
MAX_OVERLAP_S = 1.0

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


# --- the agent's status file ------------------------------------------------------------
@dataclass
class SlotStatus:
    alive: bool
    prepared: bool
    vifs: list[str]
    restarts: int  # the agreed "restarts" (or, if the file has it, a "deaths" count)
    last_death: float | None = None  # unix time, when the file has it


def _slot_status(s: dict[str, Any]) -> SlotStatus:
    counts = [int(s.get(key, 0) or 0) for key in ("restarts", "deaths")]
    last = s.get("last_death")
    return SlotStatus(
        alive=bool(s["alive"]),
        prepared=bool(s["prepared"]),
        vifs=[str(v) for v in s.get("vifs", []) or []],
        restarts=max(counts),
        last_death=float(last) if isinstance(last, int | float) else None,
    )


@dataclass
class SlotsFile:
    time: float
    slots: dict[str, SlotStatus]


def slots_path(host: HostState) -> Path:
    return services.agent_state_dir(host) / SLOTS_FILE


def read_slots(path: Path) -> SlotsFile | None:
    """The status file, or None if there is none yet; LabError if it is not as agreed."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"{path}: not readable JSON ({exc})") from None
    try:
        return SlotsFile(
            time=float(raw["time"]),
            slots={name: _slot_status(s) for name, s in raw["slots"].items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LabError(f"{path}: not a slots status file ({exc!r})") from None


def wait_slots_file(host: HostState, timeout: float = DEFAULT_TIMEOUT) -> SlotsFile:
    """The agent's status file, once it names both slots (bounded wait)."""
    path = slots_path(host)
    deadline = time.monotonic() + timeout
    while True:
        got = read_slots(path)
        if got is not None and {"a", "b"} <= set(got.slots):
            return got
        if time.monotonic() > deadline:
            what = "does not exist" if got is None else f"names slots {sorted(got.slots)} only"
            raise LabError(
                f"{host.name}: {path} {what} after {timeout:.0f} s "
                "(is the host's agent running with --standby-ovsdb?)"
            )
        time.sleep(POLL)


def wait_prepared(
    host: HostState, slot: str, *, since: float, restarts_before: int, timeout: float
) -> SlotsFile:
    """Wait until slots.json says `slot` is prepared AFTER its restart at `since`.

    A status written before the agent noticed the restart could still say prepared, so
    the slot must also have been seen not alive or not prepared since then, or its
    restart count must have gone up (or its last death be after `since`)."""
    path = slots_path(host)
    deadline = time.monotonic() + timeout
    seen_down = False
    last: SlotsFile | None = None
    while True:
        got = read_slots(path)
        if got is not None:
            last = got
            status = got.slots.get(slot)
            if status is not None and got.time >= since:
                if not (status.alive and status.prepared):
                    seen_down = True
                elif (
                    seen_down
                    or status.restarts > restarts_before
                    or (status.last_death is not None and status.last_death >= since)
                ):
                    return got
        if time.monotonic() > deadline:
            raise LabError(
                f"{host.name} slot {slot} not prepared {timeout:.0f} s after its restart: "
                + _why(path, last, slot, since)
            )
        time.sleep(POLL)


def wait_ready(host: HostState, slot: str, timeout: float = DEFAULT_TIMEOUT) -> SlotsFile:
    """Until slots.json says `slot` is alive and prepared now (no restart expected)."""
    return wait_prepared(host, slot, since=0.0, restarts_before=-1, timeout=timeout)


def sync_slots(state: LabState, host: HostState) -> list[str]:
    """Record where each VM's tap really is (after a failover the agent moved them; with
    the steer handover: the slot each NIC is steered to): returns the VMs whose slot
    changed."""
    changed = []
    vms = [vm for vm in state.vms if vm.host == host.name]
    if host.hv_ns:
        active = hypervisor.active(host, vms)
        for vm in vms:
            if vm.name in active and vm.slot != active[vm.name]:
                vm.slot = active[vm.name]
                changed.append(vm.name)
        vms = []
    for vm in vms:
        for name, slot in host.slots().items():
            here = run(["ip", "-n", slot.ns, "link", "show", "dev", vm.tap], check=False)
            if here.returncode == 0 and vm.slot != name:
                vm.slot = name
                changed.append(vm.name)
    if changed:
        state.save()
    return changed


def _why(path: Path, got: SlotsFile | None, slot: str, since: float) -> str:
    if got is None:
        return f"no {path}"
    status = got.slots.get(slot)
    if status is None:
        return f"{path} has no slot {slot!r}"
    if got.time < since:
        return f"{path} not rewritten since the restart (written {since - got.time:.1f} s before)"
    if not status.alive:
        return f"{path} says slot {slot} is not alive"
    if not status.prepared:
        return f"{path} says slot {slot} is alive but not prepared ({len(status.vifs)} VIFs)"
    return f"{path} never showed slot {slot} restarting (restarts {status.restarts})"


# --- the upgrade ------------------------------------------------------------------------
@dataclass
class SlotRestartReport:
    slot: str
    old_pid: int | None
    pid: int
    restart_ms: float  # old vswitchd told to stop -> new one up, br-phy with its IP
    prepared_s: float  # old vswitchd told to stop -> slots.json says prepared


@dataclass
class SlotMove:
    vm: str
    tap: str
    src: str  # slot names
    dst: str
    started: float  # unix time of the move
    # the `ip ... netns` command, start to end (steer: the tc run that made the new path)
    move_ms: float
    # move started -> the device has an ofport in the new slot's OVSDB (steered: the end
    # of the cut; the device had its ofport there before the cut began)
    ofport_ms: float
    ofport: int
    old_ofport: int | None  # in the old slot, before the move (the same, when pinned)
    how: str = "netns"  # netns: the device moved; steer: the NIC was steered (tc)
    # steer: the old slot's frames still reached the VM this long after the new path was
    # made (make before break; ofport_ms does not count it), then a tc run of break_ms
    # dropped them (0 with no overlap: move_ms did both)
    overlap_ms: float = 0.0
    break_ms: float = 0.0
    # After the cut, off the VM's path: the new slot's conntrack entries of the VM's
    # address flushed (firewall on; see hand_over_conntrack), in ms; None: not flushed.
    ct_flush_ms: float | None = None


@dataclass
class SlotUpgradeReport:
    host: str
    first: str  # the slot that was empty and is restarted first; the VMs move into it
    restarts: list[SlotRestartReport] = field(default_factory=list)
    moves: list[SlotMove] = field(default_factory=list)
    total_s: float = 0.0


def upgrade_ovs(
    lab: Lab,
    host_name: str,
    *,
    settle: float = 0.2,
    overlap: float = OVERLAP_S,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress = _quiet,
) -> SlotUpgradeReport:
    """Restart the empty slot, move the VMs into it one by one, restart the other slot."""
    began = time.monotonic()
    state = lab.state()
    host = state.host(host_name)
    if host.standby is None:
        raise LabError(f"{host_name} has one switch slot (the lab was made without --standby)")
    sync_slots(state, host)
    vms = [vm for vm in state.vms if vm.host == host.name]
    held = {s: [vm.name for vm in vms if vm.slot == s] for s in ("a", "b")}
    if held["a"] and held["b"]:
        raise LabError(
            f"neither slot of {host_name} is empty (a: {', '.join(held['a'])}; "
            f"b: {', '.join(held['b'])}): move them into one slot first"
        )
    src = "b" if held["b"] else "a"
    dst = other(src)
    wait_slots_file(host, timeout)
    report = SlotUpgradeReport(host_name, dst)
    progress(f"upgrade {host_name}: restarting the empty slot {dst}")
    report.restarts.append(restart_slot(state, host, dst, timeout=timeout))
    progress(
        f"upgrade {host_name}: slot {dst} prepared {report.restarts[-1].prepared_s:.1f} s "
        "after its restart"
    )
    moving = [vm for vm in vms if vm.slot == src]
    _check_rows(host, dst, moving)
    for vm in moving:
        move = move_vm(state, host, vm, dst, overlap)
        move.ct_flush_ms = hand_over_conntrack(state, host, vm, dst, progress)
        report.moves.append(move)
        progress(
            f"upgrade {host_name}: {vm.name} moved to slot {dst} in {move.move_ms:.1f} ms, "
            f"ofport {move.ofport} after {move.ofport_ms:.1f} ms"
        )
        time.sleep(settle)
    progress(f"upgrade {host_name}: restarting the now empty slot {src}")
    report.restarts.append(restart_slot(state, host, src, timeout=timeout))
    report.total_s = time.monotonic() - began
    return report


def restart_slot(
    state: LabState, host: HostState, slot: str, *, timeout: float = DEFAULT_TIMEOUT
) -> SlotRestartReport:
    """Restart one slot's vswitchd and wait until the agent says it is prepared again."""
    before = read_slots(slots_path(host))
    status = before.slots.get(slot) if before else None
    restarts_before = status.restarts if status else 0
    done = slots.restart_vswitchd(state, host.slot(slot), slot)
    wait_prepared(host, slot, since=done.stopped, restarts_before=restarts_before, timeout=timeout)
    prepared = time.time()
    return SlotRestartReport(
        slot,
        done.old_pid,
        done.pid,
        (done.ready - done.stopped) * 1000,
        prepared - done.stopped,
    )


def _zone(host: HostState, tap: str) -> int | None:
    """The VIF's conntrack zone: its local VLAN, as the agent records it on the Port row
    (other_config:tag, as Neutron does) in slot a's OVSDB (slot b's rows may lack it)."""
    for slot in ("a", "b"):
        try:
            with Ovsdb(f"unix:{host.slot(slot).db_sock}") as db:
                tag = db.port_other_config(tap).get("tag", "")
        except OvsdbError:
            continue
        if tag.isdigit():
            return int(tag)
    return None


def hand_over_conntrack(
    state: LabState, host: HostState, vm: VmState, dst: str, progress: Progress = _quiet
) -> float | None:
    """After a VM's cut, with the firewall on: flush the new slot's entries of the VM's
    address. That slot saw only the inbound half of the VM's connections (both slots get
    every inbound frame); an entry it made from a SYN whose answer went through the old
    slot is half-open and would mark the rest of that connection invalid. With no entry
    it picks each connection up mid-stream. Returns the ms it took, None if not run."""
    if state.firewall != "openvswitch":
        return None
    zone = _zone(host, vm.tap)
    if zone is None:
        progress(f"{host.name}: {vm.tap} has no recorded VLAN: slot {dst}'s conntrack "
                 f"not flushed for {vm.ip}")  # fmt: skip
        return None
    t0 = time.monotonic()
    what = conntrack.Flush(addresses=((zone, vm.ip),))
    errors = conntrack.flush(what, host.slot(dst).path("ovs-vswitchd.ctl"))
    if errors:
        progress(f"{host.name}: slot {dst}'s conntrack flush for {vm.ip}: {'; '.join(errors)}")
        return None
    return (time.monotonic() - t0) * 1000


def _check_rows(host: HostState, slot: str, vms: list[VmState]) -> None:
    """Every VIF to move must have its Interface row in the new slot already."""
    with Ovsdb(f"unix:{host.slot(slot).db_sock}") as db:
        names = {i.name for i in db.interfaces()}
    missing = [vm.tap for vm in vms if vm.tap not in names]
    if missing:
        raise LabError(
            f"{host.name} slot {slot} not prepared: no Interface row for "
            f"{', '.join(missing)} (the agent copies each VIF's row into the other slot)"
        )


def read_ofport(db_sock: str, tap: str) -> int | None:
    """The Interface's ofport in one slot's OVSDB, by `ovs-vsctl` (a fresh OVSDB client
    connection per VM costs seconds on a loaded host with many rows); None: no row, or
    no valid number yet."""
    argv = ["ovs-vsctl", f"--db=unix:{db_sock}", "--timeout=5", "--if-exists"]
    text = run([*argv, "get", "Interface", tap, "ofport"], check=False).stdout.strip()
    return int(text) if text.isdigit() and 0 < int(text) < 0xFF00 else None


def wait_ofport(db_sock: str, tap: str, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while (ofport := read_ofport(db_sock, tap)) is None and time.monotonic() < deadline:
        time.sleep(POLL)
    return ofport


def move_vm(
    state: LabState, host: HostState, vm: VmState, dst: str, overlap: float = OVERLAP_S
) -> SlotMove:
    """Move the VM's tap into slot `dst`; back again if it gets no ofport there. Steered
    (the tap is in both slots): steer its NIC, the old path kept `overlap` s longer."""
    if host.hv_ns:
        return steer_vm(state, host, vm, dst, overlap)
    src = vm.slot
    old, new = host.slot(src), host.slot(dst)
    old_ofport = read_ofport(old.db_sock, vm.tap)
    with Ovsdb(f"unix:{new.db_sock}") as db:
        started = time.time()
        t0 = time.monotonic()
        # One netlink request: the device changes namespace and comes up there.
        run(["ip", "-n", old.ns, "link", "set", "dev", vm.tap, "netns", new.ns, "up"])
        moved = time.monotonic()
        vm.slot = dst
        state.save()
        try:
            ofport = db.wait_ofports([vm.tap], timeout=OFPORT_TIMEOUT)[vm.tap]
        except OvsdbError:
            run(["ip", "-n", new.ns, "link", "set", "dev", vm.tap, "netns", old.ns, "up"])
            vm.slot = src
            state.save()
            raise LabError(
                f"{host.name}: {vm.tap} got no ofport in slot {dst} within "
                f"{OFPORT_TIMEOUT:.0f} s of its move; moved back to slot {src}"
            ) from None
        at = time.monotonic()
    return SlotMove(
        vm.name,
        vm.tap,
        src,
        dst,
        started,
        (moved - t0) * 1000,
        (at - t0) * 1000,
        ofport,
        old_ofport,
    )


def steer_vm(
    state: LabState, host: HostState, vm: VmState, dst: str, overlap: float = OVERLAP_S
) -> SlotMove:
    """The steer handover: the VM's tap is in both slots, with its ofport in each; the cut
    is `tc -batch` in the hypervisor namespace (no device moves, no bind: the device had
    its ofport in the new slot before the cut, which it must have): one run makes the new
    path, and `overlap` s later one more drops the old slot's frames (0: one run, both)."""
    src = vm.slot
    vif = vifsteer.vif_id(vm.tap)
    old_ofport = read_ofport(host.slot(src).db_sock, vm.tap)
    ofport = wait_ofport(host.slot(dst).db_sock, vm.tap, OFPORT_TIMEOUT)
    if ofport is None:
        raise LabError(
            f"{host.name}: {vm.tap} has no ofport in slot {dst} after "
            f"{OFPORT_TIMEOUT:.0f} s: not steered there (it stays in slot {src})"
        )
    started = time.time()
    t0 = time.monotonic()
    try:
        made, broke = vifsteer.steer_timed(host.hv_ns, [vif], dst, overlap=overlap)
    except vifsteer.SteerError as exc:
        back = f"steered back to slot {src}"
        try:
            vifsteer.steer(host.hv_ns, [vif], src)
        except vifsteer.SteerError as again:
            back = f"steering it back to slot {src} failed too: {again}"
        raise LabError(f"{host.name}: steering {vm.tap} to slot {dst}: {exc}; {back}") from None
    vm.slot = dst
    state.save()
    return SlotMove(
        vm.name,
        vm.tap,
        src,
        dst,
        started,
        made * 1000,
        (time.monotonic() - t0 - max(overlap, 0.0)) * 1000,
        ofport,
        old_ofport,
        "steer",
        overlap_ms=max(overlap, 0.0) * 1000,
        break_ms=broke * 1000,
    )
