"""The probe sends only from a named network namespace (the lab's), never from the
machine's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowkeeper.lab import probe


def test_a_namespace_listed_under_run_netns_counts_as_named(tmp_path: Path) -> None:
    assert not probe.in_named_netns(str(tmp_path))
    os.symlink("/proc/self/ns/net", tmp_path / "labns")  # stands for an `ip netns add` mount
    assert probe.in_named_netns(str(tmp_path))
    assert not probe.in_named_netns(str(tmp_path / "missing"))


def test_the_probe_refuses_to_send_from_an_unnamed_namespace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(probe, "in_named_netns", lambda: False)
    sent: list[object] = []
    monkeypatch.setattr(probe, "run_probe", lambda *a, **k: sent.append(a))
    assert probe.main(["--dst", "198.19.1.10", "--count", "1"]) == 2
    assert sent == []
    assert "runs only inside a lab namespace" in capsys.readouterr().err
