"""The kept-running tc's marker: what belongs to a run, and when it is complete."""

from __future__ import annotations

from flowkeeper.agent.tcbatch import marker, marker_line, split_at_marker


def test_the_marker_is_a_short_device_name() -> None:
    assert marker(7) == "fkmark7"
    assert len(marker(10**9 + 123456)) <= 15
    assert marker_line(7) == "qdisc show dev fkmark7\n"


def test_a_run_is_complete_once_the_markers_error_and_its_command_line_are_in() -> None:
    mine = 'Cannot find device "v11"\nCommand failed -:4\n'
    tail = 'Cannot find device "fkmark3"\nCommand failed -:5\n'
    assert split_at_marker(mine + tail, 3) == (mine, True)
    assert split_at_marker(tail, 3) == ("", True)
    assert split_at_marker(mine + 'Cannot find device "fkmark3"\nCommand fai', 3)[1] is False
    assert split_at_marker(mine + 'Cannot find device "fkmark3"\nCommand failed -:', 3)[1] is False
    assert split_at_marker(mine, 3) == (mine, False)
    # an earlier run's marker is not this run's
    assert split_at_marker('Cannot find device "fkmark2"\nCommand failed -:1\n', 3)[1] is False
