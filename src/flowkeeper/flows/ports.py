"""Which OVS ports a flow names (in its match or its actions), and what of a delta the
switch's current ports allow."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache

from flowkeeper.flows.flowset import FlowDelta
from flowkeeper.flows.record import Flow

_PORT_REFS = re.compile(r'(?:in_port=|output:)"?([A-Za-z][^,"()\[\]\s]*)"?')
_RESERVED = frozenset({"IN_PORT", "NORMAL", "LOCAL", "FLOOD", "ALL", "CONTROLLER"})


def ports_named(text: str) -> set[str]:
    """Port names in one flow line, or in many lines joined by newlines."""
    return {
        m
        for m in _PORT_REFS.findall(text)
        if m not in _RESERVED and not m.startswith(("NXM_", "OXM_"))
    }


def flow_ports(flow: Flow) -> set[str]:
    """The port names a flow needs the switch to have: in_port and every output."""
    names = set(_action_ports(flow.actions))
    for name, value in flow.match:
        if name == "in_port" and _is_name(value):
            names.add(value)
    return names


@lru_cache(maxsize=8192)
def _action_ports(actions: str) -> frozenset[str]:
    return frozenset(ports_named(actions))


def _is_name(value: str) -> bool:
    return not value.isdigit() and value not in _RESERVED


@dataclass
class Resolved:
    """A delta split by what the switch's ports allow now."""

    send: FlowDelta = field(default_factory=FlowDelta)  # deletes may name ports by number
    applied: FlowDelta = field(default_factory=FlowDelta)  # `send` as the agent knows it
    deferred: FlowDelta = field(default_factory=FlowDelta)  # for a later reconcile
    missing: set[str] = field(default_factory=set)  # the ports the deferred flows wait for

    def merge(self, other: Resolved) -> None:
        for mine, theirs in (
            (self.send, other.send),
            (self.applied, other.applied),
            (self.deferred, other.deferred),
        ):
            mine.add += theirs.add
            mine.modify += theirs.modify
            mine.delete += theirs.delete
        self.missing |= other.missing


def resolve_ports(
    delta: FlowDelta, present: Mapping[str, int], remembered: Mapping[str, int]
) -> Resolved:
    """What of `delta` the switch can take, given the ports it has now (`present`).

    OVS resolves a port name when a flow is installed and keeps only the number, and it
    refuses a name it does not have. So a flow to add or modify that names a missing port
    waits (the port's arrival wakes the agent again), and a flow whose in_port port has
    gone (a VIF unplugged or moved away) is deleted by the number the port last had, or
    waits if that number is not known.
    """
    out = Resolved()
    for flows, send, applied, deferred in (
        (delta.add, out.send.add, out.applied.add, out.deferred.add),
        (delta.modify, out.send.modify, out.applied.modify, out.deferred.modify),
    ):
        for flow in flows:
            lacking = [name for name in flow_ports(flow) if name not in present]
            if lacking:
                deferred.append(flow)
                out.missing.update(lacking)
            else:
                send.append(flow)
                applied.append(flow)
    for flow in delta.delete:
        wire = _by_number(flow, present, remembered)
        if wire is None:
            out.deferred.delete.append(flow)
            out.missing.update(v for k, v in flow.match if k == "in_port" and v not in present)
        else:
            out.send.delete.append(wire)
            out.applied.delete.append(flow)
    return out


def _by_number(flow: Flow, present: Mapping[str, int], known: Mapping[str, int]) -> Flow | None:
    """`flow` with a gone in_port port named by its last number (None if unknown)."""
    match = []
    for name, value in flow.match:
        if name == "in_port" and _is_name(value) and value not in present:
            number = known.get(value)
            if number is None:
                return None
            match.append((name, str(number)))
        else:
            match.append((name, value))
    return flow if tuple(match) == flow.match else replace(flow, match=tuple(match))


def renumbered(used: Mapping[str, int], now: Mapping[str, int]) -> dict[str, int]:
    """Ports that were re-created with another number since flows naming them went in
    (`used`: the numbers those flows were resolved against): name -> old number."""
    return {name: old for name, old in used.items() if name in now and now[name] != old}


def stale_by_number(
    flows: Iterable[Flow], moved: Mapping[str, int]
) -> tuple[list[Flow], list[Flow]]:
    """For ports re-created with another number (`moved`: name -> old number).

    OVS keeps the number a flow was installed with, so every flow naming such a port now
    points at the old number. Returns (those flows, for the agent to forget so that the
    diff installs them again by name; deletes of the in_port ones by the old number,
    which an ADD by name would not replace).
    """
    forget: list[Flow] = []
    deletes: list[Flow] = []
    for flow in flows:
        if not flow_ports(flow) & moved.keys():
            continue
        forget.append(flow)
        wire = _by_number(flow, {}, moved)
        if wire is not None and wire is not flow:
            deletes.append(wire)
    return forget, deletes


_OUTPUT_REF = re.compile(r'output:"?([A-Za-z0-9][^,"()\[\]\s]*)"?')


def renamed(flow: Flow, names: Mapping[str, str]) -> Flow:
    """`flow` with its port references (in_port, output:) mapped through `names` (a name
    to a number written as text, or back); references not in `names` stay as they are."""
    if not names:
        return flow
    match = tuple((k, names.get(v, v)) if k == "in_port" else (k, v) for k, v in flow.match)
    actions = _OUTPUT_REF.sub(lambda m: "output:" + names.get(m.group(1), m.group(1)), flow.actions)
    if match == flow.match and actions == flow.actions:
        return flow
    return replace(flow, match=match, actions=actions)
