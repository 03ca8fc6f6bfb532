"""What the agent may do to the switch's bridges and to flow-restore-wait, and HostOvs
applying those rules to a fake OVSDB."""

from __future__ import annotations

import logging
from typing import cast

import pytest

from flowkeeper.agent.bridges import may_clear_flow_restore_wait, plan_bridges
from flowkeeper.agent.ovsside import BRIDGES, HostOvs
from flowkeeper.naming import BR_INT, BR_TUN
from flowkeeper.ovs.ovsdb import BridgeInfo, Ovsdb


class FakeOvsdb:
    """The OVSDB calls ensure_bridges and clear_flow_restore_wait make, on plain dicts."""

    def __init__(self, bridges: dict[str, BridgeInfo], other_config: dict[str, str]) -> None:
        self.rows = bridges
        self.other_config = other_config
        self.writes: list[str] = []

    def bridges(self) -> dict[str, BridgeInfo]:
        return dict(self.rows)

    def create_bridge(self, name: str, *, datapath_type: str, fail_mode: str) -> bool:
        self.writes.append(f"create {name} {datapath_type} {fail_mode}")
        self.rows[name] = BridgeInfo(name, datapath_type, fail_mode)
        return True

    def ensure_patch_port(self, bridge: str, name: str, peer: str) -> None:
        self.writes.append(f"patch {bridge} {name}")

    def wait_ofports(self, names: list[str], timeout: float = 10.0) -> dict[str, int]:
        return {n: i + 1 for i, n in enumerate(names)}

    def global_other_config(self) -> dict[str, str]:
        return dict(self.other_config)

    def set_global_other_config(self, key: str, value: str | None) -> None:
        self.writes.append(f"other_config {key}={value}")
        if value is None:
            self.other_config.pop(key, None)
        else:
            self.other_config[key] = value


def host_ovs(db: FakeOvsdb, datapath_type: str = "system") -> HostOvs:
    ovs = object.__new__(HostOvs)  # no sockets: only the OVSDB side is under test
    ovs.db = cast(Ovsdb, db)
    ovs.datapath_type = datapath_type
    ovs._frw_noted = None
    return ovs


def info(name: str, dp: str = "system", fail: str = "secure") -> BridgeInfo:
    return BridgeInfo(name, dp, fail)


def test_missing_bridges_are_created_and_existing_ones_only_warned_about() -> None:
    plan = plan_bridges({BR_INT: "netdev"}, BRIDGES, "system")
    assert plan.create == [BR_TUN]
    assert plan.warnings == [
        "bridge br-int has datapath_type netdev, not the configured system: left as it is"
    ]
    assert plan_bridges({BR_INT: "system", BR_TUN: "system"}, BRIDGES, "system").warnings == []


def test_flow_restore_wait_may_be_cleared_only_with_our_bridges_alone() -> None:
    assert may_clear_flow_restore_wait([BR_INT, BR_TUN], BRIDGES)
    assert may_clear_flow_restore_wait([BR_INT], BRIDGES)  # br-tun not made yet
    assert not may_clear_flow_restore_wait([BR_INT, BR_TUN, "br-ex"], BRIDGES)


def test_ensure_bridges_creates_what_is_missing_with_the_configured_datapath() -> None:
    db = FakeOvsdb({"br-ex": info("br-ex", "netdev", "standalone")}, {})
    host_ovs(db, "netdev").ensure_bridges()
    assert db.writes[:2] == ["create br-int netdev secure", "create br-tun netdev secure"]
    assert db.rows["br-ex"] == info("br-ex", "netdev", "standalone")


def test_ensure_bridges_never_changes_an_existing_bridge(caplog: pytest.LogCaptureFixture) -> None:
    rows = {BR_INT: info(BR_INT, "netdev", "standalone"), BR_TUN: info(BR_TUN)}
    db = FakeOvsdb(dict(rows), {})
    with caplog.at_level(logging.WARNING):
        host_ovs(db, "system").ensure_bridges()
    assert [w for w in db.writes if not w.startswith("patch")] == []
    assert db.rows == rows
    assert "bridge br-int has datapath_type netdev" in caplog.text


@pytest.mark.parametrize(
    ("others", "cleared"), [((), True), (("br-ex",), False), (("br-ex", "br-prov"), False)]
)
def test_clear_flow_restore_wait_leaves_it_while_other_bridges_exist(
    others: tuple[str, ...], cleared: bool, caplog: pytest.LogCaptureFixture
) -> None:
    rows = {n: info(n) for n in (*BRIDGES, *others)}
    db = FakeOvsdb(rows, {"flow-restore-wait": "true", "other": "kept"})
    ovs = host_ovs(db)
    with caplog.at_level(logging.INFO):
        assert ovs.clear_flow_restore_wait() is cleared
        assert ovs.clear_flow_restore_wait() is False  # second call: gone, or still others
    assert ("flow-restore-wait" not in db.other_config) is cleared
    assert db.other_config["other"] == "kept"
    if not cleared:
        assert caplog.text.count("left for ovs-ctl to clear") == 1  # logged once, not per call
        assert ", ".join(others) in caplog.text


def test_nothing_is_written_when_the_key_is_not_set() -> None:
    db = FakeOvsdb({n: info(n) for n in BRIDGES}, {})
    assert host_ovs(db).clear_flow_restore_wait() is False
    assert db.writes == []
