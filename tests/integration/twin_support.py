"""Helpers of the twin-slot tests with the agent (test_twin_slots, test_twin_steer): the
lab, the flows a cut must not change, probes between the hosts, the agent's status file."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from flowkeeper.lab import slots, slotupgrade
from flowkeeper.lab.lab import Lab, UpOptions
from flowkeeper.lab.state import HostState, LabState, VmState
from tests.conftest import leftovers, require_lab, wait_for

FORWARD_S = 20.0  # bound for a VM to answer again after a cut or a failover


@dataclass
class Twin:
    lab: Lab
    name: str

    @property
    def state(self) -> LabState:
        return self.lab.state()

    def h1(self) -> HostState:
        return self.state.host("h1")

    def vms(self, host: str) -> list[VmState]:
        return [vm for vm in self.state.vms if vm.host == host]


@contextmanager
def logs_kept_on_failure(lab: Lab, session: pytest.Session) -> Iterator[None]:
    """Around a module's lab: if one of its tests failed, its logs go to LABDIR.failed/
    before the lab goes down (the agents' and switches' logs say what the slots did)."""
    failed = session.testsfailed
    try:
        yield
    finally:
        if session.testsfailed > failed:
            print(f"lab logs kept in {lab.keep_logs()}")


@contextmanager
def twin_lab(
    session: pytest.Session,
    prefix: str,
    handover: str = "netns",
    *,
    firewall: str = "noop",
    vms_per_host: int = 3,
    networks: int = 2,
) -> Iterator[Twin]:
    """A twin-slot lab (2 hosts, 3 VMs each on 2 networks unless asked otherwise) under a
    fresh name, down after."""
    require_lab()
    name = f"{prefix}{uuid.uuid4().hex[:4]}"  # never the name of a lab already up
    lab = Lab(Path(f"/tmp/{name}"))
    lab.down()
    opts = UpOptions(
        name=name,
        hosts=2,
        vms_per_host=vms_per_host,
        networks=networks,
        standby=True,
        vif_handover=handover,
        firewall=firewall,
    )
    lab.up(opts)
    try:
        with logs_kept_on_failure(lab, session):
            yield Twin(lab, name)
    finally:
        lab.down()
        assert leftovers(name, lab.dir) == [], "lab down left things behind"


def remote_flows(host: HostState) -> list[str]:
    """A peer's br-int and br-tun flows, by number, without counters or MAC learning."""
    return slots.flow_dump(host)


def slot_flows(slot: HostState) -> list[str]:
    """A slot's flows by number; cookies left out (an agent restarted since may have put
    some back under its new generation, in one slot and not the other: the agent's diff
    ignores cookies too)."""
    return sorted(re.sub(r"cookie=0x[0-9a-f]+, ?", "", line) for line in remote_flows(slot))


def pairs(t: Twin) -> list[tuple[str, str]]:
    """Each of h1's VMs probed from the VM of h2 on its network."""
    peers = {vm.network: vm.name for vm in t.vms("h2")}
    return [(peers[vm.network], vm.name) for vm in t.vms("h1")]


def forwards(t: Twin, src: str, dst: str) -> bool:
    return t.lab.ping(src, dst, count=3, interval=0.05).received == 3


def all_forward(t: Twin) -> None:
    h1 = t.vms("h1")
    same = [(a.name, b.name) for a in h1 for b in h1 if a.network == b.network and a != b]
    for src, dst in [*pairs(t), *same[:2]]:  # local traffic between the slots, too
        wait_for(partial(forwards, t, src, dst), FORWARD_S, f"{src} -> {dst}")


def status(host: HostState) -> dict[str, object]:
    path = slotupgrade.slots_path(host)
    data: dict[str, object] = json.loads(path.read_text())
    return data


def failovers(host: HostState) -> list[dict[str, object]]:
    records = status(host)["failovers"]
    assert isinstance(records, list)
    return records


def settled(t: Twin) -> None:
    """Both slots prepared (the agent says so) and holding the same flows."""
    h1 = t.h1()
    for slot in ("a", "b"):
        slotupgrade.wait_ready(h1, slot, timeout=60)
    wait_for(
        lambda: slot_flows(h1.slot("a")) == slot_flows(h1.slot("b")),
        30,
        "both slots of h1 to hold the same flows",
    )
