"""Twin switch slots in the lab (`lab up --standby`): slot b of a host and what joins them.

Slot a is the host as the lab always made it (namespace NAME-hN, dir hosts/hN). Slot b
is a second OVS of the same host: namespace NAME-hN-b, dir hosts/hN/slot-b, its own
ovsdb-server and ovs-vswitchd, the same bridges and patch ports made in the same order
(so the same ofports), br-phy with the same MAC and the same tunnel IP.

The host NIC mirrors. In the underlay namespace, veth `hN` (a member of the underlay
bridge) leads to slot a's eth0 and veth `hNb` (not a member) to slot b's eth0; tc copies
every frame the bridge sends out of `hN` to `hNb`, and redirects every frame slot b sends
into `hNb` as if it had come in on `hN`. So both slots see everything sent to the host,
and the underlay sees one host port, whichever slot sends.

The slot link is a veth pair with both ends named `fk-slot`, one end in each slot's
namespace, on both br-ints with ofport_request=65000. The lab adds it; the agent never does.

With --standby every slot's ovs-vswitchd runs under `python -m flowkeeper.lab.supervise`,
which starts it again when it dies. The lab restarts a vswitchd on its own (an upgrade,
`lab restart-ovs`) under the supervisor's hold (`hold`), so the two never race.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from flowkeeper.lab import hostops, ovsproc, procs, supervise
from flowkeeper.lab.run import LabError, run
from flowkeeper.lab.state import HostState, LabState
from flowkeeper.naming import BR_INT, BR_TUN, SLOT_LINK, SLOT_LINK_OFPORT
from flowkeeper.ovs.ovsdb import Ovsdb
from flowkeeper.pipeline.tables import LEARNED_COOKIE

SLOT_B_DIR = "slot-b"
_MATCH_ALL = ["u32", "match", "u32", "0", "0"]  # every frame (matchall is not available)


def standby_of(state: LabState, host: HostState) -> HostState:
    """Slot b's HostState for `host` (not yet recorded or started)."""
    return HostState(
        name=host.name,
        index=host.index,
        ns=f"{state.name}-{host.name}-b",
        tunnel_ip=host.tunnel_ip,
        dir=str(Path(host.dir) / SLOT_B_DIR),
    )


def underlay_port(host: HostState, slot: str) -> str:
    """The underlay namespace's veth to a slot's eth0: `hN` (slot a) or `hNb` (slot b)."""
    return host.name if slot == "a" else f"{host.name}b"


def offloads_off(ns: str, dev: str) -> None:
    """The userspace datapath does not fill in offloaded checksums (as for VM NICs)."""
    run(["ethtool", "-K", dev, "tx", "off"], ns=ns, check=False)


def quiet_nic(ns: str) -> None:
    """eth0 (an OVS port) answers no ARP: only br-phy, with the host's one MAC, does.

    The userspace datapath reads eth0 through a packet socket, so the slot's kernel sees
    eth0's frames too and, by default, answers ARP for the tunnel IP (on br-phy) with
    eth0's own MAC. A peer that takes that answer sends to the one slot whose eth0 has
    that MAC (the mirror delivers to both, but only that slot's stack accepts it): with
    twin slots, that can be the slot whose kernel did not ask."""
    run(["sysctl", "-q", "-w", "net.ipv4.conf.eth0.arp_ignore=1"], ns=ns)


def make_nic_mirror(state: LabState, host: HostState, standby: HostState) -> None:
    """Slot b's eth0 and the tc mirror/redirect that make the host's one NIC feed both."""
    ul = state.underlay_ns
    a_port, b_port = underlay_port(host, "a"), underlay_port(host, "b")
    peer = ["peer", "name", "eth0", "netns", standby.ns]
    run(["ip", "link", "add", b_port, "type", "veth", *peer], ns=ul)
    run(["ip", "link", "set", b_port, "up"], ns=ul)
    run(["ip", "link", "set", "eth0", "up"], ns=standby.ns)
    for ns, dev in ((ul, b_port), (standby.ns, "eth0")):
        offloads_off(ns, dev)
    for slot in (host, standby):
        quiet_nic(slot.ns)
    # What the underlay sends to the host reaches both slots ...
    run(["tc", "qdisc", "add", "dev", a_port, "clsact"], ns=ul)
    mirror = [*_MATCH_ALL, "action", "mirred", "egress", "mirror", "dev", b_port]
    run(["tc", "filter", "add", "dev", a_port, "egress", *mirror], ns=ul)
    # ... and what slot b sends leaves through the host's one underlay port.
    run(["tc", "qdisc", "add", "dev", b_port, "clsact"], ns=ul)
    redirect = [*_MATCH_ALL, "action", "mirred", "ingress", "redirect", "dev", a_port]
    run(["tc", "filter", "add", "dev", b_port, "ingress", *redirect], ns=ul)


def make_slot_link(host: HostState, standby: HostState) -> None:
    """The fk-slot veth between the two slots, on both br-ints at ofport 65000."""
    peer = ["peer", "name", SLOT_LINK, "netns", standby.ns]
    run(["ip", "link", "add", SLOT_LINK, "type", "veth", *peer], ns=host.ns)
    for slot in (host, standby):
        run(["ip", "link", "set", SLOT_LINK, "up"], ns=slot.ns)
        offloads_off(slot.ns, SLOT_LINK)
        ovsproc.vsctl(
            slot,
            "--may-exist",
            "add-port",
            BR_INT,
            SLOT_LINK,
            "--",
            "set",
            "Interface",
            SLOT_LINK,
            f"ofport_request={SLOT_LINK_OFPORT}",
        )
    for slot in (host, standby):
        with Ovsdb(f"unix:{slot.db_sock}") as db:
            got = db.wait_ofports([SLOT_LINK])[SLOT_LINK]
        if got != SLOT_LINK_OFPORT:
            raise LabError(f"{slot.ns}: {SLOT_LINK} got ofport {got}, not {SLOT_LINK_OFPORT}")


# --- the supervisor ----------------------------------------------------------------
def restarts(host: HostState) -> list[dict[str, object]]:
    """The restarts the slot's supervisor made, oldest first (SLOTDIR/supervise.ndjson)."""
    path = Path(host.dir) / supervise.EVENTS_FILE
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    events = [json.loads(line) for line in lines if line.strip()]
    return [e for e in events if e.get("event") == "restart"]


# --- a restart by the lab -----------------------------------------------------------
@dataclass
class SlotRestart:
    slot: str
    old_pid: int | None
    pid: int
    stopped: float  # unix time the old vswitchd was told to stop
    ready: float  # unix time the new one runs and br-phy has its tunnel IP again


def restart_vswitchd(state: LabState, host: HostState, slot: str) -> SlotRestart:
    """Stop (SIGTERM) and start the slot's ovs-vswitchd: in a real upgrade, the new binary.

    ovsdb-server stays up; under the supervisor's hold, so it does not start one too."""
    with supervise.hold(host.dir):
        stopped = time.time()
        old = host.pids.pop("ovs-vswitchd", None)
        current = supervise.vswitchd_pid(host.dir)
        for pid in {old, current} - {None}:
            procs.stop(pid, host.dir)  # type: ignore[arg-type]
        host.pids["ovs-vswitchd"] = ovsproc.start_vswitchd(host)
        state.save()
        hostops.bring_up_underlay(host)
    return SlotRestart(slot, current or old, host.pids["ovs-vswitchd"], stopped, time.time())


def refresh_pids(host: HostState) -> None:
    """A supervisor may have started a new vswitchd: take its PID from the pid file."""
    for slot in host.slots().values():
        pid = supervise.vswitchd_pid(slot.dir)
        if pid:
            slot.pids["ovs-vswitchd"] = pid


def flow_dump(host: HostState) -> list[str]:
    """A host slot's br-int and br-tun flows, by number, without counters or MAC learning
    (what a hot upgrade's cut must leave unchanged on a peer)."""
    out = []
    for bridge in (BR_INT, BR_TUN):
        argv = ["ovs-ofctl", "-O", "OpenFlow15", "--no-names", "--no-stats", "dump-flows"]
        text = run([*argv, host.mgmt(bridge)]).stdout
        out += [f"{bridge} {line.strip()}" for line in text.splitlines() if "cookie=" in line]
    return sorted(line for line in out if f"cookie={LEARNED_COOKIE:#x}" not in line)
