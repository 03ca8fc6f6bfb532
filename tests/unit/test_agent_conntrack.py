"""The agent's conntrack cleanup: flushed once in sync, after the flows, never before."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowkeeper.agent import conntrack
from flowkeeper.agent.conntrack import Flush
from flowkeeper.agent.daemon import Agent, AgentConfig
from flowkeeper.pipeline.view import HostView, LocalPort, NetworkView

NET = NetworkView("n1", "vxlan", 1001, 3)


def view(*ips: str) -> HostView:
    ports = tuple(
        LocalPort(f"p{i}", "n1", f"tap{i}", "fa:16:3e:00:00:01", (ip,), port_security=True)
        for i, ip in enumerate(ips)
    )
    return HostView("198.18.0.1", networks=(NET,), local_ports=ports, firewall=True)


def agent(tmp_path: Path, firewall: str = "openvswitch", ctl: str = "") -> Agent:
    cfg = AgentConfig(
        host="h1",
        tunnel_ip="198.18.0.1",
        server="http://127.0.0.1:9",
        ovsdb="unix:/nonexistent/db.sock",
        rundir=tmp_path,
        state_dir=tmp_path,
        firewall=firewall,
        vswitchd_ctl=ctl,
    )
    return Agent(cfg)


def test_flush_waits_for_sync_then_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Flush, str, str | None]] = []
    monkeypatch.setattr(
        conntrack, "flush", lambda what, target, rundir=None: calls.append((what, target, rundir))
    )
    a = agent(tmp_path, ctl="/lab/h1/ovs-vswitchd.ctl")

    async def steps() -> None:
        await a._conntrack(view("198.19.1.5", "198.19.1.6"), in_sync=False)
        await a._conntrack(view("198.19.1.6"), in_sync=False)  # not in sync: no flush yet
        assert calls == []
        await a._conntrack(view("198.19.1.6"), in_sync=True)
        await a._conntrack(view("198.19.1.6"), in_sync=True)  # nothing new
        await a._conntrack(view(), in_sync=True)

    asyncio.run(steps())
    assert calls == [
        (Flush((), ((3, "198.19.1.5"),)), "/lab/h1/ovs-vswitchd.ctl", str(tmp_path)),
        (Flush((3,), ()), "/lab/h1/ovs-vswitchd.ctl", str(tmp_path)),
    ]


def test_view_carries_the_firewall_option(tmp_path: Path) -> None:
    from flowkeeper.agent.mirror import Mirror

    assert agent(tmp_path)._view(Mirror(), {}).firewall is True
    assert agent(tmp_path, "noop")._view(Mirror(), {}).firewall is False
