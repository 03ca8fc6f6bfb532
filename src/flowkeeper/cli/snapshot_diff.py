"""`snapshot diff`: what differs between a snapshot, the flows in OVS and the server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowkeeper.errors import UsageError
from flowkeeper.flows.flowset import FlowSet, diff
from flowkeeper.flows.record import Flow, parse_rendered
from flowkeeper.naming import BR_INT, BR_TUN
from flowkeeper.pipeline.tables import LEARNED_COOKIE
from flowkeeper.snapshot.content import SnapshotData

SAMPLES = 5


def _flows_of(data: SnapshotData) -> FlowSet:
    return FlowSet(
        parse_rendered(line, b) for b, lines in data.flows.items() for line in lines.values()
    )


def _live(ovsdb: str) -> FlowSet:
    from flowkeeper.ovs.ofctl import OfctlBridge

    if not ovsdb.startswith("unix:"):
        raise UsageError("--ovsdb must be unix:PATH")
    rundir = Path(ovsdb.removeprefix("unix:")).parent
    flows = FlowSet()
    for bridge in (BR_INT, BR_TUN):
        for flow in OfctlBridge(bridge, str(rundir / f"{bridge}.mgmt")).dump_flows():
            if flow.cookie != LEARNED_COOKIE:
                flows.add(flow)
    return flows


def flow_diff(snapshot: FlowSet, live: FlowSet) -> dict[str, Any]:
    """Pure: flows only in the snapshot, only in OVS, and in both but different."""
    delta = diff(snapshot, live)  # what would turn live into the snapshot
    cookie_only = [f for f in delta.modify if _actions(live, f) == f.actions]
    return {
        "snapshot_flows": len(snapshot),
        "ovs_flows": len(live),
        "only_in_snapshot": len(delta.add),
        "only_in_ovs": len(delta.delete),
        "different": len(delta.modify),
        "different_cookie_only": len(cookie_only),
        "samples": {
            "only_in_snapshot": [f.render() for f in delta.add[:SAMPLES]],
            "only_in_ovs": [f.render() for f in delta.delete[:SAMPLES]],
        },
    }


def _actions(flows: FlowSet, flow: Flow) -> str | None:
    have = flows.get(flow.key)
    return None if have is None else have.actions


def server_diff(data: SnapshotData, host: str, server: str | None) -> dict[str, Any]:
    from flowkeeper.client import Client, resolve_ca, resolve_server, resolve_token

    # The token and CA come from $FLOWKEEPER_TOKEN and $FLOWKEEPER_CA.
    view = Client(resolve_server(server), resolve_token(None), ca=resolve_ca(None)).view(host)
    theirs = {p.id: p.to_dict() for p in view.ports}
    ours = data.ports
    changed = [
        pid
        for pid in set(ours) & set(theirs)
        if ours[pid].get("revision") != theirs[pid].get("revision")
    ]
    return {
        "snapshot_revision": data.revision,
        "server_revision": view.revision,
        "ports_only_in_snapshot": sorted(set(ours) - set(theirs)),
        "ports_only_on_server": sorted(set(theirs) - set(ours)),
        "ports_changed": sorted(changed),
        "networks_only_in_snapshot": sorted(set(data.networks) - {n.id for n in view.networks}),
        "networks_only_on_server": sorted({n.id for n in view.networks} - set(data.networks)),
    }


def diff_report(
    data: SnapshotData, ovsdb: str, host: str | None, server: str | None
) -> dict[str, Any]:
    flows = flow_diff(_flows_of(data), _live(ovsdb))
    text = [
        f"flows: snapshot {flows['snapshot_flows']}, OVS {flows['ovs_flows']}; "
        f"only in snapshot {flows['only_in_snapshot']}, only in OVS {flows['only_in_ovs']}, "
        f"different {flows['different']} ({flows['different_cookie_only']} by cookie only)"
    ]
    for kind, samples in flows["samples"].items():
        text += [f"  {kind}: {line}" for line in samples]
    result: dict[str, Any] = {"flows": flows}
    if host:
        srv = server_diff(data, host, server)
        result["server"] = srv
        text.append(
            f"server: snapshot at revision {srv['snapshot_revision']}, server at "
            f"{srv['server_revision']}; ports only in snapshot "
            f"{len(srv['ports_only_in_snapshot'])}, only on server "
            f"{len(srv['ports_only_on_server'])}, changed {len(srv['ports_changed'])}"
        )
    result["text"] = "\n".join(text)
    return result
