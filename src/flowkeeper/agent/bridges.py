"""What the agent may do to the switch's bridges and to flow-restore-wait: pure rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DATAPATH_TYPES = ("system", "netdev")
DEFAULT_DATAPATH_TYPE = "system"  # the kernel datapath, as Neutron's default
FAIL_MODE = "secure"  # bridges the agent creates: no NORMAL flow before its own flows
FLOW_RESTORE_WAIT = "flow-restore-wait"


@dataclass(frozen=True)
class BridgePlan:
    """Bridges to create, and one warning line per existing bridge left as it is."""

    create: list[str]
    warnings: list[str]


def plan_bridges(
    existing: Mapping[str, str], ours: Iterable[str], datapath_type: str
) -> BridgePlan:
    """`existing`: bridge name -> its datapath type. Only missing bridges of ours are
    created (with `datapath_type`); an existing one is never changed, and a datapath type
    other than the configured one is only worth a warning (changing it would rebuild the
    bridge in the datapath and drop every flow it holds)."""
    create, warnings = [], []
    for name in ours:
        have = existing.get(name)
        if have is None:
            create.append(name)
        elif have != datapath_type:
            warnings.append(
                f"bridge {name} has datapath_type {have}, not the configured "
                f"{datapath_type}: left as it is"
            )
    return BridgePlan(create, warnings)


def may_clear_flow_restore_wait(bridges: Iterable[str], ours: Iterable[str]) -> bool:
    """flow-restore-wait is one switch-wide key: while it is set, ovs-vswitchd forwards
    nothing on any bridge. The agent may clear it only when every bridge on the switch is
    its own (its flows are in, so no one else can still be waiting for theirs). With other
    bridges (br-ex, provider bridges), whoever set it (ovs-ctl restart) restores their
    flows and clears it."""
    return set(bridges) <= set(ours)


def other_bridges(bridges: Iterable[str], ours: Iterable[str]) -> list[str]:
    return sorted(set(bridges) - set(ours))
