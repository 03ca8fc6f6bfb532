"""Server counters for /v1/stats: events, watch messages, and how far each port event fanned out."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

RECENT = 1000


@dataclass
class Stats:
    """Counters, updated by the hub and the watch streams; pure."""

    events: Counter[str] = field(default_factory=Counter)  # per kind
    messages: Counter[str] = field(default_factory=Counter)  # per kind, written to watchers
    watch_connections: int = 0
    port_events: int = 0
    port_deliveries: int = 0  # sum over port events of hosts that got >= 1 message
    port_interested: int = 0  # ... of hosts with a port on the event's network
    port_registered: int = 0  # ... of registered hosts (what fan-out-to-all would send to)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT))

    def event(self, kind: str) -> None:
        self.events[kind] += 1

    def port_fanout(
        self, revision: int, network_id: str, delivered: int, interested: int, registered: int
    ) -> None:
        self.port_events += 1
        self.port_deliveries += delivered
        self.port_interested += interested
        self.port_registered += registered
        self.recent.append(
            {
                "revision": revision,
                "network_id": network_id,
                "delivered": delivered,
                "interested": interested,
                "registered": registered,
            }
        )

    def sent(self, kind: str, count: int = 1) -> None:
        self.messages[kind] += count

    def to_dict(self, revision: int, watchers: int, hosts: int) -> dict[str, Any]:
        n = self.port_events
        return {
            "revision": revision,
            "events_written": sum(self.events.values()),
            "events_by_kind": dict(self.events),
            "messages_sent": sum(self.messages.values()),
            "messages_by_kind": dict(self.messages),
            "watchers": watchers,
            "watch_connections": self.watch_connections,
            "registered_hosts": hosts,
            "port_events": {
                "count": n,
                "hosts_delivered_total": self.port_deliveries,
                "hosts_interested_total": self.port_interested,
                "hosts_registered_total": self.port_registered,
                "mean_hosts_delivered": round(self.port_deliveries / n, 3) if n else 0.0,
                "mean_hosts_registered": round(self.port_registered / n, 3) if n else 0.0,
                "recent": list(self.recent),
            },
        }
