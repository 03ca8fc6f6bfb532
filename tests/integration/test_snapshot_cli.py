"""`flowkeeper snapshot show|verify|diff|restore` against a lab host's real snapshot and OVS."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowkeeper.lab import services
from flowkeeper.naming import BR_INT, BR_TUN
from flowkeeper.pipeline.tables import COOKIE_TAG
from tests.conftest import LabFactory, wait_for

pytestmark = pytest.mark.lab


def fk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowkeeper", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def fk_json(*args: str) -> Any:
    proc = fk(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_show_verify_diff_and_restore(
    lab_factory: LabFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=1)
    # `snapshot diff --host` reads the server's view with the token in the environment.
    monkeypatch.setenv("FLOWKEEPER_TOKEN", services.ensure_token(state).read_text().strip())
    h1 = state.host("h1")
    a = next(v for v in state.vms if v.host == "h1")
    b = next(v for v in state.vms if v.host == "h2")
    state_dir = h1.path("agent")
    ovsdb = f"unix:{h1.db_sock}"
    wait_for((Path(state_dir) / "snapshot" / "MANIFEST").exists, what="a snapshot")

    def server_diff() -> Any:
        return fk_json(
            "snapshot", "diff", "--state-dir", state_dir, "--ovsdb", ovsdb,
            "--host", "h1", "--server", state.server_url,
        )  # fmt: skip

    def caught_up() -> bool:
        srv = server_diff()["server"]
        keys = ("ports_only_in_snapshot", "ports_only_on_server", "ports_changed")
        return not any(srv[key] for key in keys)

    # The agent journals the last events (its VIFs' ACTIVE status) a moment after sync.
    wait_for(caught_up, what="the snapshot to reflect the server")
    services.stop_agent(h1)  # nothing changes underneath from here on

    show = fk_json("snapshot", "show", "--state-dir", state_dir)
    assert show["manifest"]["revision"] > 0 and show["manifest"]["ports"] >= 2
    assert show["partitions"] and all(p["ok"] for p in show["partitions"])
    verify = fk_json("snapshot", "verify", "--state-dir", state_dir)
    assert verify["ok"] and verify["flows"] > 0

    # In steady state the snapshot, OVS and the server agree.
    diff = server_diff()
    flows = diff["flows"]
    assert flows["snapshot_flows"] == flows["ovs_flows"] == verify["flows"]
    assert (flows["only_in_snapshot"], flows["only_in_ovs"], flows["different"]) == (0, 0, 0)
    srv = diff["server"]
    assert not (srv["ports_only_in_snapshot"] or srv["ports_only_on_server"])
    assert not srv["ports_changed"]

    # Forwarding works (and the VMs know each other's MAC: were the first ARP request sent
    # while the flows are gone below, the VM would mark the neighbour FAILED and stay
    # silent for a while after the flows are back, whatever restored them).
    assert lab.ping(a.name, b.name, count=2, interval=0.05).lost == 0
    # OVS loses every flow; the snapshot brings them back.
    for bridge in (BR_INT, BR_TUN):
        lab.bridge(h1, bridge).delete_all()
    assert lab.ping(a.name, b.name, count=2, interval=0.05).lost == 2
    diff = fk_json("snapshot", "diff", "--state-dir", state_dir, "--ovsdb", ovsdb)
    assert diff["flows"]["only_in_snapshot"] == verify["flows"]
    restored = fk_json(
        "snapshot", "restore", "--state-dir", state_dir, "--ovsdb", ovsdb,
        "--tunnel-ip", h1.tunnel_ip,
    )  # fmt: skip
    assert restored["restored"] == verify["flows"] and restored["deferred"] == 0
    # The datapath drops the packets of the cut until its revalidators see the new table:
    # on a busy machine that can outlast a few pings, so wait for it (bounded).
    wait_for(
        lambda: lab.ping(a.name, b.name, count=3, interval=0.05).lost == 0,
        timeout=10,
        what="forwarding after the CLI restore",
    )
    # A second restore refuses to overwrite what OVS holds, in one line.
    again = fk("snapshot", "restore", "--state-dir", state_dir, "--ovsdb", ovsdb,
               "--tunnel-ip", h1.tunnel_ip)  # fmt: skip
    assert again.returncode != 0 and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    # --force replaces flowkeeper's flows with the snapshot's: a stray one of ours goes.
    stray = f"cookie={COOKIE_TAG | 0xDEAD:#x},table=22,priority=77,dl_vlan=4000,actions=drop"
    lab.bridge(h1, BR_TUN).add_lines([stray])
    before = fk_json("snapshot", "diff", "--state-dir", state_dir, "--ovsdb", ovsdb)["flows"]
    assert before["only_in_ovs"] == 1
    forced = fk_json(
        "snapshot", "restore", "--state-dir", state_dir, "--ovsdb", ovsdb,
        "--tunnel-ip", h1.tunnel_ip, "--force",
    )  # fmt: skip
    assert forced["replaced"] and forced["restored"] == verify["flows"]
    after = fk_json("snapshot", "diff", "--state-dir", state_dir, "--ovsdb", ovsdb)["flows"]
    assert (after["only_in_snapshot"], after["only_in_ovs"], after["different"]) == (0, 0, 0)
    assert lab.ping(a.name, b.name, count=3, interval=0.05).lost == 0

    # A damaged partition is found by verify (on a copy: the agent's own stays intact).
    copy = tmp_path / "state"
    shutil.copytree(Path(state_dir) / "snapshot", copy / "snapshot")
    part = next((copy / "snapshot").glob("part-*"))
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    part.write_bytes(bytes(raw))
    bad = fk("snapshot", "verify", "--state-dir", str(copy))
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1 and part.name in bad.stderr

    missing = fk("snapshot", "show", "--state-dir", str(tmp_path / "nothing"))
    assert missing.returncode != 0 and "no snapshot" in missing.stderr
