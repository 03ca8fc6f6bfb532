"""Which slot each steered VM NIC uses, followed as it changes (`tc -n HV monitor`).

With the steer VIF handover (agent/vifsteer.py) every VIF's device is in both slots, so
OVSDB cannot tell which slot a VM uses: the hypervisor's steering does. A failover must
know it. A slot that stops while it held no VM (a planned restart of the empty slot, as
an upgrade does twice) must not make the other slot forget the conntrack entries of the
VMs it has been serving all along: that would cut the connections being opened then,
and the replies of established ones the VM's rules do not allow as new.

`tc monitor` prints every filter change of the namespace as it happens:

    replaced filter dev v<ID> ingress protocol all pref 1 bpf chain 0 handle 0x1 ...
        action order 1: mirred (Egress Redirect to device b<ID>) stolen

so a VIF's slot is the redirect of its VM-side filter. The VIFs steered before the
monitor started are read once with `tc -j filter show` (vifsteer.active_slots). What is
not known is reported as not known: the failover then takes such a VIF over, as it did
before it could know.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import subprocess
import threading
from collections.abc import Iterable

from flowkeeper.agent import vifsteer
from flowkeeper.agent.vifmove import valid_netns
from flowkeeper.agent.vifsteer import SLOTS, VM_SIDE

log = logging.getLogger("flowkeeper.agent")

_FILTER = re.compile(r"^(added |replaced |deleted )?filter dev (\S+) ingress\b")
_REDIRECT = re.compile(r"\bmirred \(Egress Redirect to device (\S+)\)")
RESTART_S = 1.0  # after the monitor exited, before it is started again


class SteerMap:
    """Pure: VIF id -> its slot, from `tc monitor` lines fed one at a time."""

    def __init__(self) -> None:
        self.slots: dict[str, str] = {}
        self.seen: set[str] = set()  # VIFs with an event since the monitor started
        self._vif: str | None = None  # the VM-side filter whose actions follow

    def feed(self, line: str) -> None:
        found = _FILTER.match(line)
        if found:
            verb, dev = found.groups()
            vif = dev[len(VM_SIDE) :] if dev.startswith(VM_SIDE) else ""
            self._vif = None
            if vif and vifsteer.valid_id(vif):
                self.seen.add(vif)
                self.slots.pop(vif, None)  # until its redirect line says where
                if verb != "deleted ":
                    self._vif = vif
            return
        redirect = _REDIRECT.search(line)
        if redirect and self._vif is not None:
            to = redirect.group(1)
            if to[:1] in SLOTS and to[1:] == self._vif:
                self.slots[self._vif] = to[:1]
            self._vif = None

    def learn(self, read: dict[str, str]) -> None:
        """A full read (`tc filter show`) of VIFs that had no event since the monitor
        started (an event is newer than any read)."""
        for vif, slot in read.items():
            if vif not in self.seen:
                self.slots[vif] = slot


class SteerWatch:
    """A `tc -n NS monitor` kept running, its lines fed to a SteerMap by a thread."""

    def __init__(self, ns: str) -> None:
        if not valid_netns(ns):
            raise vifsteer.SteerError(f"not a namespace name: {ns!r}")
        self.ns = ns
        self.map = SteerMap()
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.running = False  # the monitor runs: the map follows every change
        self._buf = b""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._loop, name="steer-watch", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        proc = subprocess.Popen(
            ["tc", "-n", self.ns, "monitor"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)  # the thread and snapshot() both read
        with self.lock:
            self.proc, self.map, self._buf, self.running = proc, SteerMap(), b"", True

    def _loop(self) -> None:
        while not self._stop.is_set():
            proc = self.proc
            if proc is None or proc.stdout is None:
                return
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready and not self._read(proc):
                with self.lock:
                    self.running = False  # what it did not see is not known any more
                if self._stop.is_set():  # close() ended it
                    return
                log.warning("steer watch: tc monitor in %s exited; started again", self.ns)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
                if self._stop.wait(RESTART_S):
                    return
                try:
                    self._spawn()
                except OSError as exc:
                    log.error("steer watch: cannot start tc monitor in %s: %s", self.ns, exc)
                    return

    def _read(self, proc: subprocess.Popen[bytes]) -> bool:
        """Feed what the monitor wrote; False at its EOF."""
        assert proc.stdout is not None
        with self.lock:
            try:
                chunk = os.read(proc.stdout.fileno(), 65536)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            *lines, self._buf = (self._buf + chunk).split(b"\n")
            for line in lines:
                self.map.feed(line.decode(errors="replace"))
            return True

    def learn(self, ids: Iterable[str]) -> None:
        """Read the slot of each listed VIF the map does not know (one `tc` run)."""
        unknown = self.unknown(ids)
        if not unknown or not self.running:
            return
        read = vifsteer.active_slots(self.ns, unknown)
        with self.lock:
            self.map.learn(read)

    def unknown(self, ids: Iterable[str]) -> list[str]:
        with self.lock:
            return [v for v in ids if v not in self.map.slots and v not in self.map.seen]

    def snapshot(self) -> dict[str, str]:
        """VIF id -> slot, with every line the monitor wrote so far taken in; {} when the
        monitor is not running (nothing is known)."""
        proc = self.proc
        if proc is not None and proc.stdout is not None and self.running:
            with contextlib.suppress(OSError, ValueError):
                while select.select([proc.stdout], [], [], 0)[0] and self._read(proc):
                    pass
        with self.lock:
            return dict(self.map.slots) if self.running else {}

    def close(self) -> None:
        self._stop.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)
        if proc is not None and proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()
        with self.lock:
            self.running = False
