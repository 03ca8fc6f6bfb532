"""The steer VIF handover, the parts without a kernel: the tc text, the name checks, the
reading of tc's listing, the agent's and the lab's use of them."""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from flowkeeper.agent import twinops, vifsteer
from flowkeeper.agent.vifsteer import SteerError, device, steer_lines, vif_id
from flowkeeper.cli.agent_cmd import _twin_args
from flowkeeper.errors import UsageError
from flowkeeper.lab import services, slots
from flowkeeper.lab.lab import UpOptions, validate
from flowkeeper.lab.run import LabError
from flowkeeper.lab.state import HostState, LabState

TAP = "tap3f2a9c1d-4e"  # "tap" + the first 11 characters of a port id, as the lab names it
REDIRECT = 'pref 1 handle 1 protocol all bpf bytecode "1,6 0 0 4294967295," action mirred'
DROP = 'pref 1 handle 1 protocol all bpf bytecode "1,6 0 0 2," da'


def test_a_vif_id_is_the_tap_name_without_tap_and_every_wire_fits_ifnamsiz() -> None:
    vif = vif_id(TAP)
    assert vif == "3f2a9c1d-4e"
    assert [device(side, vif) for side in ("v", "a", "b")] == [
        "v3f2a9c1d-4e",
        "a3f2a9c1d-4e",
        "b3f2a9c1d-4e",
    ]
    assert vif_id("tap" + "x" * 12) == "x" * 12  # 15 characters: the longest tap name
    assert len(device("v", vif_id("tap" + "x" * 12))) <= vifsteer.IFNAMSIZ


@pytest.mark.parametrize(
    "name", ["eth0", "tap", "tap1 x", "tap1;x", "tap-1", "tap" + "x" * 13, "tap\n1", "TAP1"]
)
def test_a_name_that_is_not_a_tap_is_refused(name: str) -> None:
    with pytest.raises(SteerError, match="not a tap name"):
        vif_id(name)


def test_devices_and_slots_are_checked() -> None:
    with pytest.raises(SteerError, match="side"):
        device("c", "1")
    with pytest.raises(SteerError, match="VIF id"):
        device("v", "1 dev x")
    with pytest.raises(SteerError, match="VIF id"):
        device("v", "x" * 15)
    with pytest.raises(SteerError, match="switch slot"):
        steer_lines(["1"], "c")
    with pytest.raises(SteerError, match="VIF id"):
        steer_lines(["1", "2 action drop"], "a")


def test_steer_lines_are_three_replaces_per_vif_new_slot_first() -> None:
    text = steer_lines(["11", "22"], "b")
    assert text.splitlines() == [
        f"filter replace dev b11 ingress {REDIRECT} egress redirect dev v11",
        f"filter replace dev v11 ingress {REDIRECT} egress redirect dev b11",
        f"filter replace dev a11 ingress {DROP}",
        f"filter replace dev b22 ingress {REDIRECT} egress redirect dev v22",
        f"filter replace dev v22 ingress {REDIRECT} egress redirect dev b22",
        f"filter replace dev a22 ingress {DROP}",
    ]
    assert text.endswith("\n")
    back = steer_lines(["11"], "a").splitlines()
    assert back == [
        f"filter replace dev a11 ingress {REDIRECT} egress redirect dev v11",
        f"filter replace dev v11 ingress {REDIRECT} egress redirect dev a11",
        f"filter replace dev b11 ingress {DROP}",
    ]
    # Idempotent: the text depends on the target only, never on where a VIF is now.
    assert steer_lines(["11"], "b") == steer_lines(["11"], "b")
    assert steer_lines([], "a") == ""


class FakeRun:
    def __init__(self, rc: int = 0, stdout: str = "", stderr: str = "") -> None:
        self.rc, self.stdout, self.stderr = rc, stdout, stderr
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((argv, kw))
        return subprocess.CompletedProcess(argv, self.rc, self.stdout, self.stderr)


def test_steer_runs_one_tc_batch_in_the_namespace_without_a_shell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeRun()
    monkeypatch.setattr(subprocess, "run", fake)
    took = vifsteer.steer("lab-h1-hv", ["11", "22"], "a")
    assert isinstance(took, float) and took >= 0
    [(argv, kw)] = fake.calls
    assert argv == ["tc", "-n", "lab-h1-hv", "-force", "-batch", "-"]
    assert kw["input"] == steer_lines(["11", "22"], "a") and not kw.get("shell")
    assert vifsteer.steer("lab-h1-hv", [], "a") == 0.0 and len(fake.calls) == 1
    with pytest.raises(SteerError, match="namespace"):
        vifsteer.steer("lab h1", ["11"], "a")
    assert len(fake.calls) == 1


def test_with_an_overlap_the_new_path_is_made_then_the_old_one_broken_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeRun()
    slept: list[float] = []
    monkeypatch.setattr(subprocess, "run", fake)
    monkeypatch.setattr(time, "sleep", slept.append)
    vifsteer.steer("lab-h1-hv", ["11", "22"], "b", overlap=0.02)
    make, brk = (kw["input"] for _argv, kw in fake.calls)
    assert make.splitlines() == [
        vifsteer.redirect("b11", "v11").strip(),
        vifsteer.redirect("v11", "b11").strip(),
        vifsteer.redirect("b22", "v22").strip(),
        vifsteer.redirect("v22", "b22").strip(),
    ]
    assert brk.splitlines() == [vifsteer.drop("a11").strip(), vifsteer.drop("a22").strip()]
    assert slept == [0.02]
    # together they are the one-run text, line for line
    assert sorted((make + brk).splitlines()) == sorted(steer_lines(["11", "22"], "b").splitlines())


def test_a_make_run_that_fails_leaves_the_old_path_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeRun(1, stderr='Cannot find device "v11"\nCommand failed -:2\n')
    monkeypatch.setattr(subprocess, "run", fake)
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    with pytest.raises(SteerError):
        vifsteer.steer("lab-h1-hv", ["11"], "b", overlap=0.02)
    assert len(fake.calls) == 1  # no drop of the old slot's frames after a failed make


def test_a_failed_steer_names_the_missing_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = 'Cannot find device "v22"\nCommand failed -:4\n'
    monkeypatch.setattr(subprocess, "run", FakeRun(1, stderr=gone))
    with pytest.raises(SteerError) as err:
        vifsteer.steer("lab-h1-hv", ["11", "22"], "b")
    assert err.value.missing == {"v22"} and err.value.only_missing
    other = "Error: Specified filter kind does not match existing one.\nCommand failed -:1\n"
    monkeypatch.setattr(subprocess, "run", FakeRun(1, stderr=other))
    with pytest.raises(SteerError) as err:
        vifsteer.steer("lab-h1-hv", ["11"], "b")
    assert not err.value.only_missing


def _listing(to: str | None) -> list[dict[str, Any]]:
    """What `tc -j filter show dev v<ID> ingress` prints (as this kernel's tc prints it)."""
    head: dict[str, Any] = {"protocol": "all", "pref": 1, "kind": "bpf", "chain": 0}
    options: dict[str, Any] = {"handle": "0x1", "not_in_hw": True}
    if to is None:
        options["direct-action"] = True
    else:
        options["actions"] = [
            {
                "order": 1,
                "kind": "mirred",
                "mirred_action": "redirect",
                "direction": "egress",
                "to_dev": to,
                "control_action": {"type": "stolen"},
            }
        ]
    return [head, {**head, "options": options}]


def test_the_active_slot_is_read_from_each_listing_redirect() -> None:
    text = "\n".join(json.dumps(x) for x in (_listing("a11"), _listing("b22"), _listing(None)))
    assert vifsteer.parse_active(text + "\n[]\n") == {"11": "a", "22": "b"}
    assert vifsteer.parse_active(json.dumps(_listing("a11")) + json.dumps(_listing("b33"))) == {
        "11": "a",
        "33": "b",
    }
    assert vifsteer.parse_active("") == {}
    assert vifsteer.parse_active(json.dumps(_listing("a11")) + "\n{not json") == {"11": "a"}
    assert vifsteer.parse_active(json.dumps(_listing("eth0"))) == {}


def test_active_slots_is_one_tc_run_and_keeps_the_asked_vifs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = json.dumps(_listing("b11")) + "\n" + json.dumps(_listing("a99")) + "\n"
    fake = FakeRun(1, stdout=out, stderr='Cannot find device "v22"\n')
    monkeypatch.setattr(subprocess, "run", fake)
    assert vifsteer.active_slots("lab-h1-hv", ["11", "22"]) == {"11": "b"}
    [(argv, kw)] = fake.calls
    assert argv == ["tc", "-n", "lab-h1-hv", "-j", "-force", "-batch", "-"]
    assert kw["input"] == "filter show dev v11 ingress\nfilter show dev v22 ingress\n"


def test_the_agent_steers_tap_names_only_and_counts_the_missing_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert twinops._steerable({"tap11": 3, "eth9": 4, "tap22": 5}) == ["tap11", "tap22"]
    calls: list[tuple[str, str, list[str], str]] = []

    def gone(ns: str, ids: list[str], to: str, batch: object = None) -> float:
        calls.append(("steer", ns, ids, to))
        raise SteerError("x", {"v22", "b22"}, True, 0.004)

    def made(ns: str, ids: list[str], to: str, batch: object = None) -> float:
        calls.append(("make", ns, ids, to))
        return 0.001

    monkeypatch.setattr(vifsteer, "steer", gone)
    monkeypatch.setattr(vifsteer, "make_path", made)
    assert twinops._steer("lab-h1-hv", ["tap11", "tap22"], "b") == (0.0, 0.004, {"tap22"})
    assert calls == [("steer", "lab-h1-hv", ["11", "22"], "b")]
    calls.clear()
    # the VIFs not on slot b yet get their new path first, in a run of their own
    got = twinops._steer("lab-h1-hv", ["tap11", "tap22"], "b", first={"tap22"})
    assert got == (0.001, 0.004, {"tap22"})
    assert calls == [("make", "lab-h1-hv", ["22"], "b"), ("steer", "lab-h1-hv", ["11", "22"], "b")]

    def broken(ns: str, ids: list[str], to: str, batch: object = None) -> float:
        raise SteerError("tc failed", set(), False, 0.002)

    monkeypatch.setattr(vifsteer, "steer", broken)
    assert twinops._steer("lab-h1-hv", ["tap11"], "a") == (0.0, 0.002, set())


def _args(tmp_path: Path, **kw: str) -> argparse.Namespace:
    (tmp_path / "b").mkdir(exist_ok=True)
    base = {
        "ovsdb": "unix:/x/db.sock",
        "standby_ovsdb": f"unix:{tmp_path}/b/db.sock",
        "standby_rundir": None,
        "standby_vswitchd_ctl": "",
        "vif_netns": "lab-h1",
        "standby_vif_netns": "lab-h1-b",
        "vif_steer_netns": "",
    }
    return argparse.Namespace(**(base | kw))


def test_the_agent_flag_needs_twin_slots_and_a_namespace_name(tmp_path: Path) -> None:
    assert _twin_args(_args(tmp_path, vif_steer_netns="lab-h1-hv")) == tmp_path / "b"
    with pytest.raises(UsageError, match="not a namespace name"):
        _twin_args(_args(tmp_path, vif_steer_netns="lab h1"))
    with pytest.raises(UsageError, match="needs --standby-ovsdb"):
        _twin_args(
            _args(tmp_path, standby_ovsdb="", standby_vif_netns="", vif_steer_netns="lab-h1-hv")
        )


def test_the_lab_passes_the_hypervisor_namespace_to_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = LabState(name="fk", dir=str(tmp_path), underlay_ns="fk-ul", server_url="http://x:1")
    host = HostState("h1", 1, "fk-h1", "198.18.0.2", str(tmp_path / "hosts" / "h1"))
    host.standby = slots.standby_of(state, host)
    state.hosts.append(host)
    monkeypatch.setattr(services, "host_token", lambda _s, h: Path(h.dir) / "agent.token")
    assert "--vif-steer-netns" not in services.agent_argv(state, host)
    host.hv_ns = "fk-h1-hv"
    argv = services.agent_argv(state, host)
    assert argv[argv.index("--vif-steer-netns") + 1] == "fk-h1-hv"
    assert argv[argv.index("--standby-vif-netns") + 1] == "fk-h1-b"
    state.vif_handover = "steer"
    state.save()
    loaded = LabState.load(tmp_path)
    assert loaded == state and loaded is not None and loaded.hosts[0].hv_ns == "fk-h1-hv"


def test_the_steer_handover_needs_twin_slots() -> None:
    validate(UpOptions(standby=True, vif_handover="steer"))
    with pytest.raises(LabError, match="needs --standby"):
        validate(UpOptions(vif_handover="steer"))
    with pytest.raises(LabError, match="netns or steer"):
        validate(UpOptions(standby=True, vif_handover="bond"))
