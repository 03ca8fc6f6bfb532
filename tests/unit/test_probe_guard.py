"""The probe sends only from named network namespaces (the lab's), never from the
machine's own."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from flowkeeper.lab import probe, probenet


def test_a_namespace_listed_under_run_netns_counts_as_named(tmp_path: Path) -> None:
    assert not probenet.in_named_netns(str(tmp_path))
    os.symlink("/proc/self/ns/net", tmp_path / "labns")  # stands for an `ip netns add` mount
    assert probenet.in_named_netns(str(tmp_path))
    assert not probenet.in_named_netns(str(tmp_path / "missing"))


def test_the_probe_refuses_to_send_from_an_unnamed_namespace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(probenet, "in_named_netns", lambda: False)
    sent: list[object] = []
    monkeypatch.setattr(probenet, "run_targets", lambda *a, **k: sent.append(a))
    assert probe.main(["--dst", "198.19.1.10", "--count", "1"]) == 2
    assert sent == []
    assert "runs only inside a lab namespace" in capsys.readouterr().err


def test_a_target_namespace_that_is_the_machines_own_is_refused(tmp_path: Path) -> None:
    os.symlink("/proc/self/ns/net", tmp_path / "mine")  # a name standing for the caller's
    with pytest.raises(probenet.ProbeSetupError, match="machine's own"):
        probenet.netns_socket("mine", str(tmp_path))
    with pytest.raises(probenet.ProbeSetupError, match="no namespace"):
        probenet.netns_socket("absent", str(tmp_path))
    with pytest.raises(probenet.ProbeSetupError, match="not a namespace name"):
        probenet.netns_socket("../x", str(tmp_path))


def test_targets_outside_the_lab_range_or_malformed_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened: list[str] = []
    monkeypatch.setattr(probenet, "netns_socket", opened.append)
    for bad in ("labns=192.0.2.1", "labns", "=198.19.1.10", "labns=nope"):
        assert probe.main(["--target", "a=198.19.1.10", "--target", bad]) == 2
        assert capsys.readouterr().err.startswith("probe: ")
    assert opened == []  # nothing opened before every target was checked
    assert probe.parse_target("labns=198.19.1.10") == ("labns", "198.19.1.10")


def test_commands_change_one_target_or_all(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = socket.socketpair()
    try:
        targets = [probenet.Target(f"198.19.1.{n}", a, n, 0.01) for n in range(3)]
        probenet.apply_commands([probe.Command("interval", 0.001, 1)], targets, now=5.0)
        assert [t.interval for t in targets] == [0.01, 0.001, 0.01]
        assert targets[1].due == 5.0  # the changed target sends at once
        probenet.apply_commands([probe.Command("stop", None, 2)], targets, now=6.0)
        assert [t.done for t in targets] == [False, False, True]
        probenet.apply_commands([probe.Command("interval", 0.02, 9)], targets, now=7.0)
        assert [t.interval for t in targets] == [0.01, 0.001, 0.01]  # no target 9: ignored
        probenet.apply_commands([probe.Command("stop")], targets, now=8.0)
        assert all(t.done for t in targets)
    finally:
        a.close()
        b.close()
