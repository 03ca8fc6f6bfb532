"""The restore's handling of a VIF re-plugged while the snapshot goes in (fake target)."""

from __future__ import annotations

from flowkeeper.agent.restore import restore
from flowkeeper.snapshot.content import SnapshotData

IN_A = "cookie=0x1,table=0,priority=10,in_port=tapA,actions=mod_vlan_vid:1,resubmit(,60)"
TO_A = "cookie=0x1,table=60,priority=20,dl_vlan=1,dl_dst=fa:16:3e:00:00:01,actions=output:tapA"
IN_B = "cookie=0x1,table=0,priority=10,in_port=tapB,actions=mod_vlan_vid:1,resubmit(,60)"


class Target:
    """Ports as the switch reports them, one answer per call; bundles as sent."""

    def __init__(self, answers: list[dict[str, int]]) -> None:
        self.answers = answers
        self.bundles: list[tuple[str, list[str]]] = []

    def port_numbers(self) -> dict[str, int]:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def ensure_tunnels(self, peers: set[tuple[str, str]], local_ip: str) -> None:
        pass

    def add_lines(self, bridge: str, lines: list[str]) -> None:
        self.bundles.append((bridge, list(lines)))


def data() -> SnapshotData:
    snap = SnapshotData()
    snap.flows["br-int"] = {"a": IN_A, "b": TO_A, "c": IN_B}
    return snap


def test_a_vif_replugged_during_the_restore_gets_its_flows_again() -> None:
    target = Target([{"tapA": 5, "tapB": 6}, {"tapA": 105, "tapB": 6}])
    result = restore(target, data(), "198.18.0.2")
    assert target.bundles[0] == ("br-int", [IN_A, TO_A, IN_B])
    bridge, fix = target.bundles[1]
    assert bridge == "br-int"
    # The old in_port flow goes by its number; tapA's flows go in again by name.
    assert fix == ["delete_strict table=0,priority=10,in_port=5", IN_A, TO_A]
    assert result.numbers == {"tapA": 105, "tapB": 6}


def test_no_second_bundle_when_no_port_moved() -> None:
    target = Target([{"tapA": 5, "tapB": 6}])
    result = restore(target, data(), "198.18.0.2")
    assert len(target.bundles) == 1 and result.restored == 3
