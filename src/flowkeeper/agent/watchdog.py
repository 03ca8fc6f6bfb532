"""Notice at once that ovs-vswitchd restarted or lost its flows, so the agent can put them
back with no operator action.

Two signals, checked every WATCH_INTERVAL_S:
- the agent's OpenFlow connection to a bridge had to reconnect (the old vswitchd is gone);
- less often, a canary count: how many flows with flowkeeper's cookie a bridge holds.
Either one leads to the same question, asked cheaply: does the bridge still hold any of
our flows? A bridge that holds none is restored.
"""

from __future__ import annotations

import time

from flowkeeper.agent.ovsside import HostOvs
from flowkeeper.errors import FlowkeeperError
from flowkeeper.pipeline.tables import COOKIE_TAG

WATCH_INTERVAL_S = 0.05
CANARY_EVERY_S = 5.0
OURS = f"cookie={COOKIE_TAG:#x}/{0xFFFF << 48:#x}"


class OvsWatch:
    def __init__(self, ovs: HostOvs) -> None:
        self.ovs = ovs
        self.reconnects = {name: b.conn.reconnects for name, b in ovs.bridges.items()}
        self.next_canary = time.monotonic() + CANARY_EVERY_S
        self.down_since: float | None = None

    def check(self) -> set[str]:
        """Bridges that lost flowkeeper's flows (empty set: all is well or OVS is down)."""
        suspects: set[str] = set()
        for name, bridge in self.ovs.bridges.items():
            try:
                bridge.port_numbers()  # one round trip; reconnects if vswitchd changed
            except FlowkeeperError:
                if self.down_since is None:
                    self.down_since = time.monotonic()
                return set()  # vswitchd is down: wait for it
            if bridge.conn.reconnects != self.reconnects[name]:
                self.reconnects[name] = bridge.conn.reconnects
                suspects.add(name)
        if time.monotonic() >= self.next_canary:
            self.next_canary = time.monotonic() + CANARY_EVERY_S
            suspects = set(self.ovs.bridges)
        if self.down_since is not None:
            suspects = set(self.ovs.bridges)
        lost = set()
        for name in suspects:
            try:
                if self.ovs.bridges[name].flow_count(OURS) == 0:
                    lost.add(name)
            except FlowkeeperError:
                return set()  # not ready yet: ask again at the next tick
        self.down_since = None
        return lost
