"""The mirror and revisions whose events come as several messages: a watch that breaks
anywhere and resumes from `resume_from()` loses no event and applies none twice."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from flowkeeper.agent.mirror import Mirror
from flowkeeper.model import Network, Port, WatchEvent

NET = Network("11111111-1111-1111-1111-111111111111", "a", "vxlan", 101)


def port(i: int, revision: int, host: str = "h2") -> Port:
    return Port(f"p{i}", NET.id, host, f"fa:16:3e:00:00:{i:02x}", (), revision=revision)


def apply(m: Mirror, e: WatchEvent) -> bool:
    return m.apply(e.revision, e.kind, e.op, e.object)


def test_events_of_one_revision_are_all_applied_and_the_revision_stays_open() -> None:
    m = Mirror()
    m.load(5, [NET], [])
    assert m.resume_from() == 5
    assert apply(m, WatchEvent(6, "port", "put", port(1, 6)))
    assert m.revision == 6 and m.resume_from() == 5  # more of revision 6 may follow
    assert apply(m, WatchEvent(6, "port", "put", port(2, 6)))
    assert not apply(m, WatchEvent(6, "port", "put", port(1, 6)))  # a repeat
    assert apply(m, WatchEvent(7, "port", "delete", port(1, 6)))  # 6 is complete now
    assert m.resume_from() == 6
    assert not apply(m, WatchEvent(6, "port", "put", port(3, 6)))  # below: ignored
    m.complete(7)
    assert m.resume_from() == 7 and not m.open
    assert not apply(m, WatchEvent(7, "port", "put", port(3, 7)))  # at a complete one
    assert sorted(m.ports) == ["p2"]


def test_a_heartbeat_behind_does_not_close_the_open_revision() -> None:
    m = Mirror()
    m.load(5, [NET], [])
    apply(m, WatchEvent(6, "port", "put", port(1, 6)))
    m.complete(5)
    assert m.resume_from() == 5
    m.complete(9)  # a heartbeat past it: all of 6 was sent, and nothing up to 9 was ours
    assert m.revision == 9 and m.resume_from() == 9


def test_a_list_closes_everything() -> None:
    m = Mirror()
    apply(m, WatchEvent(3, "network", "put", NET))
    assert m.open
    m.load(4, [NET], [port(1, 4)])
    assert not m.open and m.resume_from() == 4
    copy = m.copy()
    apply(m, WatchEvent(5, "port", "put", port(2, 5)))
    assert not copy.open and copy.revision == 4  # copies do not share the open set


# A history: revisions 1.., each with 1-4 port events (puts and deletes of a few ports).
EVENTS = st.lists(
    st.lists(
        st.tuples(st.sampled_from(["put", "delete"]), st.integers(1, 5)),
        min_size=1,
        max_size=4,
        unique_by=lambda t: t[1],
    ),
    min_size=1,
    max_size=12,
)


def history(spec: list[list[tuple[str, int]]]) -> list[WatchEvent]:
    out = [WatchEvent(1, "network", "put", NET)]
    for n, group in enumerate(spec, start=2):
        out += [WatchEvent(n, "port", op, port(i, n)) for op, i in group]  # type: ignore[arg-type]
    return out


def stream(events: list[WatchEvent], after: int) -> list[WatchEvent]:
    """What a server sends a watch from `after`: every message of a later revision, then a
    heartbeat at the head."""
    head = events[-1].revision
    return [e for e in events if e.revision > after] + [WatchEvent(head, "heartbeat", "")]


@given(spec=EVENTS, breaks=st.lists(st.integers(0, 60), max_size=4))
def test_a_watch_broken_anywhere_and_resumed_applies_each_event_once(
    spec: list[list[tuple[str, int]]], breaks: list[int]
) -> None:
    events = history(spec)
    reference = Mirror()
    for e in events:
        assert apply(reference, e)
    m = Mirror()
    applied: list[WatchEvent] = []
    pending = list(breaks)
    while True:
        msgs = stream(events, m.resume_from())
        cut = pending.pop(0) if pending else None  # the stream breaks after `cut` messages
        for k, msg in enumerate(msgs):
            if cut is not None and k == cut:
                break
            if msg.kind == "heartbeat":
                m.complete(msg.revision)
            elif apply(m, msg):
                applied.append(msg)
        else:
            break
    assert applied == events  # every event once, in order
    assert (m.networks, m.ports, m.revision) == (
        reference.networks,
        reference.ports,
        reference.revision,
    )
    assert not m.open
