"""Conntrack cleanup for the firewall: which entries to flush, and flushing them.

The userspace datapath keeps its connection tracker inside ovs-vswitchd, where
`conntrack -D` cannot reach it: entries are flushed with `ovs-appctl
dpctl/flush-conntrack zone=Z 'ct_nw_src=IP'` (see docs/security-groups-datapath.md).

A firewalled port holds addresses (its fixed IPs and allowed address pairs) in its
network's zone (the local VLAN). When a port stops holding one (deleted, moved, its zone
or addresses changed, port security or the firewall turned off), the entries of that
address in that zone are flushed after its flows are gone, so that a port that takes the
address later inherits none of them. An address that another port keeps holding is left
alone. What to flush is decided here, purely; running it is `flush`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from flowkeeper.pipeline.view import HostView

log = logging.getLogger("flowkeeper.agent.conntrack")

Held = tuple[str, int, str]  # (port id, zone, host address)
FLUSH_TIMEOUT_S = 5


@lru_cache(maxsize=1 << 16)
def host_address(addr: str) -> str | None:
    """The single address of `addr` (an IP, or a CIDR of one address), else None."""
    try:
        iface = ipaddress.ip_interface(addr)
    except ValueError:
        return None
    if iface.network.prefixlen != iface.max_prefixlen:
        return None  # a range (an allowed address pair CIDR): not one conntrack address
    return str(iface.ip)


def held(view: HostView) -> frozenset[Held]:
    """Every (port, zone, address) the firewall tracks connections of on this host."""
    if not view.firewall:
        return frozenset()
    zones = {net.id: net.vlan for net in view.networks}
    out: set[Held] = set()
    for port in view.local_ports:
        zone = zones.get(port.network_id)
        if not port.port_security or zone is None:
            continue
        for addr in (*port.ips, *(ip for _mac, ip in port.allowed_pairs)):
            host = host_address(addr)
            if host is not None:
                out.add((port.id, zone, host))
    return frozenset(out)


@dataclass(frozen=True)
class Flush:
    """What to flush: whole zones, and single addresses in zones that stay in use."""

    zones: tuple[int, ...] = ()
    addresses: tuple[tuple[int, str], ...] = ()  # (zone, address)

    def __bool__(self) -> bool:
        return bool(self.zones or self.addresses)


def to_flush(before: frozenset[Held], after: frozenset[Held]) -> Flush:
    """Pure: the entries to flush when the held addresses go from `before` to `after`.

    An address is flushed when a port held it and no longer does, unless a port that
    held it before still holds it (two ports sharing an allowed address pair). A port
    that takes the address only now does not keep the old entries. A zone nothing holds
    any more is flushed whole (one command, however many ports it had).
    """
    survivors = {(z, ip) for _p, z, ip in before & after}
    gone = {(z, ip) for _p, z, ip in before - after} - survivors
    live_zones = {z for _p, z, _ip in after}
    zones = sorted({z for z, _ip in gone} - live_zones)
    addresses = sorted((z, ip) for z, ip in gone if z in live_zones)
    return Flush(tuple(zones), tuple(addresses))


def taken_over(held: frozenset[Held], ports: Iterable[str]) -> Flush:
    """Pure: what a switch slot that takes `ports` over from the other must flush.

    Both slots get every inbound frame and run the ingress rules on it, so the slot the
    VMs were not in made entries from half of each connection: from a SYN it saw and the
    answer it never saw, a half-open entry (SYN_SENT) that marks every later packet of
    the connection invalid. With no entry at all the slot picks an established
    connection up mid-stream. So the entries of the taken-over ports' addresses go; a
    zone whose every held address is taken over goes whole (one command).
    """
    mine = set(ports)
    taken = {(z, ip) for p, z, ip in held if p in mine}
    kept = {(z, ip) for p, z, ip in held if p not in mine} - taken
    kept_zones = {z for z, _ip in kept}
    zones = sorted({z for z, _ip in taken} - kept_zones)
    addresses = sorted((z, ip) for z, ip in taken if z in kept_zones)
    return Flush(tuple(zones), tuple(addresses))


def argvs(flush: Flush, target: str) -> list[list[str]]:
    """The ovs-appctl commands for `flush`, against unixctl `target`."""
    base = ["ovs-appctl", f"--timeout={FLUSH_TIMEOUT_S}", "-t", target, "dpctl/flush-conntrack"]
    out = [[*base, f"zone={zone}"] for zone in flush.zones]
    for zone, ip in flush.addresses:
        field = "ct_ipv6" if ":" in ip else "ct_nw"
        # By address only: a partial tuple that matches nothing succeeds, and ICMP
        # entries are matched by address (not by ct_nw_proto=1 alone).
        out.append([*base, f"zone={zone}", f"{field}_src={ip}"])
        out.append([*base, f"zone={zone}", f"{field}_dst={ip}"])
    return out


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str], rundir: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if rundir:
        env["OVS_RUNDIR"] = rundir  # where `-t ovs-vswitchd` finds its pid file
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=FLUSH_TIMEOUT_S + 5,
        check=False,
        env=env,
    )


def flush(
    what: Flush, target: str, rundir: str | None = None, runner: Runner | None = None
) -> list[str]:
    """Run the flush commands; returns the errors (a failed flush is logged, not raised:
    the flows are already gone, and entries of a switch that restarted are gone too)."""
    errors = []
    for argv in argvs(what, target):
        try:
            proc = runner(argv) if runner else _run(argv, rundir)
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{' '.join(argv[4:])}: {exc}")
            continue
        if proc.returncode != 0:
            errors.append(f"{' '.join(argv[4:])}: {(proc.stderr or proc.stdout).strip()}")
    if errors:
        log.warning("conntrack flush: %s", "; ".join(errors))
    return errors


def describe(what: Flush) -> str:
    parts = [f"zone {z}" for z in what.zones]
    parts += [f"{ip} in zone {z}" for z, ip in what.addresses]
    return ", ".join(parts)


def union(sets: Iterable[frozenset[Held]]) -> frozenset[Held]:
    out: set[Held] = set()
    for s in sets:
        out |= s
    return frozenset(out)
