"""Sets of canonical flows keyed by identity, and the delta between two of them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from flowkeeper.flows.record import Flow, FlowKey


class FlowSet:
    """Flows by key (bridge, table, priority, match); a later flow with the same key wins."""

    __slots__ = ("_flows", "version")

    def __init__(self, flows: Iterable[Flow] = ()) -> None:
        self._flows: dict[FlowKey, Flow] = {f.key: f for f in flows}
        self.version = 0  # counts changes: tells a caller whether the set moved under it

    def __len__(self) -> int:
        return len(self._flows)

    def __iter__(self) -> Iterator[Flow]:
        return iter(self._flows.values())

    def __contains__(self, flow: object) -> bool:
        return isinstance(flow, Flow) and self._flows.get(flow.key) == flow

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlowSet) and self._flows == other._flows

    def __hash__(self) -> int:
        return hash(frozenset(self._flows.values()))

    def get(self, key: FlowKey) -> Flow | None:
        return self._flows.get(key)

    def add(self, flow: Flow) -> None:
        self._flows[flow.key] = flow
        self.version += 1

    def discard(self, key: FlowKey) -> None:
        self._flows.pop(key, None)
        self.version += 1

    def bridges(self) -> list[str]:
        return sorted({key[0] for key in self._flows})

    def for_bridge(self, bridge: str) -> FlowSet:
        return FlowSet(f for f in self._flows.values() if f.bridge == bridge)

    def copy(self) -> FlowSet:
        return FlowSet(self._flows.values())


@dataclass
class FlowDelta:
    """What turns an installed FlowSet into a desired one."""

    add: list[Flow] = field(default_factory=list)
    modify: list[Flow] = field(default_factory=list)
    delete: list[Flow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.add or self.modify or self.delete)

    def __len__(self) -> int:
        return len(self.add) + len(self.modify) + len(self.delete)

    def bridges(self) -> list[str]:
        return sorted({f.bridge for f in (*self.add, *self.modify, *self.delete)})

    def for_bridge(self, bridge: str) -> FlowDelta:
        def keep(flows: list[Flow]) -> list[Flow]:
            return [f for f in flows if f.bridge == bridge]

        return FlowDelta(keep(self.add), keep(self.modify), keep(self.delete))


def diff(desired: FlowSet, installed: FlowSet, *, ignore_cookie: bool = False) -> FlowDelta:
    """Flows to add, to modify (same key, other actions or cookie) and to delete.

    With ignore_cookie, a flow that differs only by its cookie counts as unchanged: the
    agent leaves such flows alone across restarts instead of rewriting them.
    """
    delta = FlowDelta()
    for flow in desired:
        have = installed.get(flow.key)
        if have is None:
            delta.add.append(flow)
        elif have != flow and not (ignore_cookie and same_but_cookie(have, flow)):
            delta.modify.append(flow)
    for flow in installed:
        if desired.get(flow.key) is None:
            delta.delete.append(flow)
    return delta


def same_but_cookie(a: Flow, b: Flow) -> bool:
    return (a.actions, a.idle_timeout, a.hard_timeout) == (
        b.actions,
        b.idle_timeout,
        b.hard_timeout,
    )
