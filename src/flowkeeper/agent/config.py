"""The agent's configuration and the status it reports to the server."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flowkeeper.agent.bridges import DEFAULT_DATAPATH_TYPE


@dataclass
class AgentConfig:
    host: str
    tunnel_ip: str
    server: str
    ovsdb: str
    rundir: Path
    state_dir: Path
    token: str | None = None
    l2pop: bool = True
    arp_responder: bool = True
    # A hot upgrade's new switch slot: also hold this host's networks before its VMs move.
    standby_for: str = ""
    datapath_type: str = DEFAULT_DATAPATH_TYPE  # of the bridges the agent creates


@dataclass
class AgentStatus:
    state: str = "starting"  # starting -> syncing -> in-sync (-> disconnected)
    applied_revision: int = 0
    reported: dict[str, str] = field(default_factory=dict)  # port id -> status told
