"""Twin switch slots: the pure parts (row plan, port renaming, OpenFlow framing, moves)."""

from __future__ import annotations

import pytest

from flowkeeper.agent.deathwatch import ECHO_REPLY, ECHO_REQUEST, header, messages
from flowkeeper.agent.twinplan import COPY_KEY, VifRow, plan, resolution
from flowkeeper.agent.vifmove import MoveError, absent, batch
from flowkeeper.flows.ports import renamed
from flowkeeper.flows.record import Flow

IDS = {"iface-id": "p1", "attached-mac": "fa:16:3e:00:00:01"}


def row(name: str, ofport: int | None, request: int | None = None, **ids: str) -> VifRow:
    return VifRow(name, {**IDS, **ids}, ofport, request)


def test_an_original_is_pinned_and_copied_into_the_other_slot() -> None:
    p = plan({"a": [row("tap1", 7)], "b": []}, {"a": {"tap1": 7, "patch-tun": 1}, "b": {}})
    assert p.pinned == {"tap1": 7}
    assert p.requests == [("a", "tap1", 7)]
    assert len(p.copies) == 1
    copy = p.copies[0]
    assert (copy.slot, copy.name, copy.ofport_request) == ("b", "tap1", 7)
    assert copy.external_ids == {**IDS, COPY_KEY: "true"}
    assert p.where == {"tap1": "a"} and not p.deletes and not p.problems


def test_a_pinned_pair_needs_no_write_wherever_the_device_is() -> None:
    rows = {
        "a": [row("tap1", None, 7)],
        "b": [row("tap1", 7, 7, **{COPY_KEY: "true"})],
    }
    p = plan(rows, {"a": {"tap1": 7}, "b": {"tap1": 7}})
    assert p.writes == 0 and p.pinned == {"tap1": 7} and p.where == {"tap1": "b"}


def test_a_copy_whose_original_is_gone_is_deleted() -> None:
    rows = {"a": [], "b": [row("tap1", 7, 7, **{COPY_KEY: "true"})]}
    p = plan(rows, {"a": {}, "b": {"tap1": 7}})
    assert p.deletes == [("b", "tap1")] and not p.pinned and not p.copies


def test_a_copy_out_of_date_is_rewritten() -> None:
    stale = VifRow("tap1", {"iface-id": "old", COPY_KEY: "true"}, None, 7)
    p = plan({"a": [row("tap1", 7, 7)], "b": [stale]}, {"a": {"tap1": 7}, "b": {"tap1": 7}})
    assert [c.external_ids["iface-id"] for c in p.copies] == ["p1"] and not p.requests
    extra = VifRow("tap1", {**IDS, COPY_KEY: "true", "vm-id": "old"}, None, 7)
    p = plan({"a": [row("tap1", 7, 7)], "b": [extra]}, {"a": {"tap1": 7}, "b": {"tap1": 7}})
    assert [c.stale_keys for c in p.copies] == [("vm-id",)]


def test_a_number_held_by_another_port_in_the_other_slot_is_refused() -> None:
    p = plan({"a": [row("tap1", 2)], "b": []}, {"a": {"tap1": 2}, "b": {"patch-tun": 2}})
    assert not p.copies and p.problems == ["tap1: number 2 is held by patch-tun in slot b"]


def test_a_vif_without_a_number_yet_waits() -> None:
    p = plan({"a": [row("tap1", None)], "b": []}, {"a": {}, "b": {}})
    assert p.writes == 0 and not p.pinned


def test_resolution_names_absent_pinned_vifs_by_number_and_keeps_present_ones() -> None:
    assert resolution({"patch-tun": 1, "tap1": 5}, {"tap1": 9, "tap2": 6}) == {
        "patch-tun": 1,
        "tap1": 5,
        "tap2": 6,
    }


def test_renamed_maps_in_port_and_outputs_and_back() -> None:
    flow = Flow(
        "br-int",
        60,
        20,
        (("dl_dst", "fa:16:3e:00:00:01"), ("dl_vlan", "1")),
        "output:fk-slot,strip_vlan,output:tap1",
    )
    numbered = renamed(flow, {"tap1": "1005"})
    assert numbered.actions == "output:fk-slot,strip_vlan,output:1005"
    assert renamed(numbered, {"1005": "tap1"}) == flow
    inport = Flow("br-int", 0, 10, (("in_port", "tap1"),), "mod_vlan_vid:1,resubmit(,60)")
    assert renamed(inport, {"tap1": "1005"}).match == (("in_port", "1005"),)
    assert renamed(inport, {}) is inport
    assert renamed(inport, {"tap10": "3"}) is inport  # a longer name is another port


def test_openflow_framing_splits_whole_messages_only() -> None:
    buf = bytearray(header(ECHO_REQUEST, 5, b"xy") + header(ECHO_REPLY, 6))
    tail = header(ECHO_REPLY, 7)
    buf += tail[:3]
    assert messages(buf) == [(ECHO_REQUEST, 5, b"xy"), (ECHO_REPLY, 6, b"")]
    assert bytes(buf) == tail[:3]
    buf += tail[3:]
    assert messages(buf) == [(ECHO_REPLY, 7, b"")] and not buf


def test_move_batch_is_one_line_per_device_and_refuses_odd_names() -> None:
    assert batch(["tap1", "tap2"], "lab-h1-b") == (
        "link set dev tap1 netns lab-h1-b up\nlink set dev tap2 netns lab-h1-b up\n"
    )
    with pytest.raises(MoveError):
        batch(["tap1 netns x"], "lab-h1-b")
    with pytest.raises(MoveError):
        batch(["tap1"], "bad ns")


def test_a_device_that_was_not_there_is_not_a_failed_move() -> None:
    err = 'Cannot find device "tap1"\nCommand failed -:1\n'
    assert absent(err) == ({"tap1"}, True)
    assert absent(err + "RTNETLINK answers: Operation not permitted\n") == ({"tap1"}, False)
