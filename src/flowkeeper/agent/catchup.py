"""How the agent follows the server: whose history it follows, and when it is in sync; pure."""

from __future__ import annotations

from flowkeeper.flows.flowset import FlowDelta
from flowkeeper.flows.record import Flow


def same_history(known: str, server: str | None) -> bool:
    """May the agent go on from its own revision with this server?

    `known` is the cluster id its mirror came from ("" when it does not know: a snapshot
    written before snapshots recorded it); `server` the id the server sent (None: a server
    that does not send one). Revisions of two stores are unrelated numbers: following a
    replaced or restored store's watch from our revision would skip or misapply its events,
    so a different id, or an unknown one of ours, means listing the whole view again.
    """
    if server is None:
        return True
    return known == server


def gate_deletes(delta: FlowDelta, in_sync: bool, broken: list[Flow]) -> FlowDelta:
    """Until the agent is in sync its view may be old or partial: a flow it does not
    desire may still be live, so stale flows are deleted only once in sync (never on a
    timer). Flows left on a re-created port's old number are broken, not stale: they go
    at once. Changes `delta` and returns it."""
    if not in_sync:
        delta.delete = []
    delta.delete += broken
    return delta


def must_record(delta: bool, events: bool, compaction_due: bool) -> bool:
    """Does this reconcile write to the snapshot? When it changed flows or consumed watch
    events, or when a compaction is due: a list replaced the mirror since the last one (the
    snapshot must name the revision and store listed, even if no flow changed), there is
    no usable snapshot yet, or the journal is long."""
    return delta or events or compaction_due
