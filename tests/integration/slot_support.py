"""A stand-in for the agent's twin-slot side, for testing the lab's plumbing on its own.

It does, for one host of a `lab up --standby --flows static` lab, the part of the
agent that the lab's upgrade relies on: every VIF and tunnel port of slot a gets its
ofport pinned (ofport_request) and a copy of its Interface row in slot b under that
number; both slots get slot a's static flows (by number); after a slot's vswitchd
restarts it puts them back; and it keeps AGENT_STATE_DIR/slots.json as agreed.
Bounded: it stops after `max_seconds` at the latest.
"""

from __future__ import annotations

import json
import threading
import time

from flowkeeper.fsutil import atomic_write
from flowkeeper.lab import ovsproc, slotupgrade, supervise
from flowkeeper.lab.hostops import BRIDGES
from flowkeeper.lab.state import HostState
from flowkeeper.naming import BR_INT, BR_TUN
from flowkeeper.ovs.ovsdb import InterfaceInfo, Ovsdb


def _copyable(info: InterfaceInfo) -> bool:
    return info.iface_id is not None or info.type in ("vxlan", "gre")


class StandInAgent:
    def __init__(self, host: HostState, *, max_seconds: float = 300.0) -> None:
        assert host.standby is not None
        self.host = host
        self.max_seconds = max_seconds
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.pids: dict[str, int | None] = {"a": None, "b": None}
        self.prepared = {"a": False, "b": False}
        self.restarts = {"a": 0, "b": 0}
        self.seen = {"a": False, "b": False}  # a vswitchd of the slot ran once
        self.vifs: dict[str, list[str]] = {"a": [], "b": []}
        self.flows: dict[str, str] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> StandInAgent:
        self._pin_and_copy_rows()
        saved = ovsproc.save_flows(self.host)
        self.flows = {b: text for b, text in saved.items() if b in (BR_INT, BR_TUN)}
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)

    def _pin_and_copy_rows(self) -> None:
        a, b = self.host, self.host.standby
        assert b is not None
        with Ovsdb(f"unix:{a.db_sock}") as db:
            rows = [i for i in db.interfaces() if _copyable(i)]
        for info in rows:
            bridge = BR_TUN if info.type in ("vxlan", "gre") else BR_INT
            assert info.ofport is not None, info
            pin = f"ofport_request={info.ofport}"
            ovsproc.vsctl(a, "set", "Interface", info.name, pin)
            args = [
                "--may-exist",
                "add-port",
                bridge,
                info.name,
                "--",
                "set",
                "Interface",
                info.name,
                pin,
                "external_ids:flowkeeper-copy=true",
            ]
            args += [f"external_ids:{k}={v}" for k, v in info.external_ids.items()]
            if info.type:
                args.append(f"type={info.type}")
                args += [f"options:{k}={v}" for k, v in info.options.items()]
            ovsproc.vsctl(b, *args)

    def _slot(self, name: str) -> HostState:
        return self.host.slot(name)

    def _sync(self, name: str) -> None:
        slot = self._slot(name)
        ovsproc.wait_bridge_sockets(slot, BRIDGES)
        ovsproc.restore_flows(slot, self.flows)
        with Ovsdb(f"unix:{slot.db_sock}") as db:
            names = {i.name for i in db.interfaces() if i.ofport is not None}
        self.vifs[name] = sorted(n for n in names if n.startswith("tap"))

    def write(self) -> None:
        doc = {
            "time": time.time(),
            "slots": {
                s: {
                    "alive": self.pids[s] is not None,
                    "prepared": self.prepared[s],
                    "vifs": self.vifs[s],
                    "restarts": self.restarts[s],
                }
                for s in ("a", "b")
            },
        }
        atomic_write(slotupgrade.slots_path(self.host), json.dumps(doc).encode(), sync_dir=False)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            for name in ("a", "b"):
                pid = supervise.vswitchd_pid(self._slot(name).dir)
                if pid != self.pids[name]:
                    if pid is not None and self.seen[name]:
                        self.restarts[name] += 1
                    self.seen[name] = self.seen[name] or pid is not None
                    self.pids[name] = pid
                    self.prepared[name] = False
                    self.write()
                if pid is not None and not self.prepared[name]:
                    try:
                        self._sync(name)
                    except Exception as exc:  # keep trying; the test shows what failed
                        self.errors.append(f"{name}: {exc}")
                        continue
                    self.prepared[name] = True
            self.write()
            self.stop.wait(0.05)


def link_stats(ns: str, dev: str) -> dict[str, int]:
    """rx/tx packet counts of a device (`ip -s -j link show`)."""
    from flowkeeper.lab.run import run

    out = json.loads(run(["ip", "-s", "-j", "link", "show", "dev", dev], ns=ns).stdout)
    stats = out[0]["stats64"]
    return {"rx": int(stats["rx"]["packets"]), "tx": int(stats["tx"]["packets"])}
