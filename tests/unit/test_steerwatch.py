"""The steer watch's reading of `tc monitor` (agent/steerwatch.py, the pure part)."""

from __future__ import annotations

from flowkeeper.agent.steerwatch import SteerMap

# as `tc -n NS monitor` (iproute2 6.1) prints the lines of one vifsteer.steer_lines run
STEER_TO_B = """\
replaced filter dev b11 ingress protocol all pref 1 bpf chain 0 handle 0x1 not_in_hw bytecode '1,6 0 0 4294967295'
\taction order 1: mirred (Egress Redirect to device v11) stolen
\tindex 3 ref 1 bind 1

replaced filter dev v11 ingress protocol all pref 1 bpf chain 0 handle 0x1 not_in_hw bytecode '1,6 0 0 4294967295'
\taction order 1: mirred (Egress Redirect to device b11) stolen
\tindex 4 ref 1 bind 1

replaced filter dev a11 ingress protocol all pref 1 bpf chain 0 handle 0x1 direct-action not_in_hw bytecode '1,6 0 0 2'
"""  # noqa: E501


def feed(m: SteerMap, text: str) -> None:
    for line in text.splitlines():
        m.feed(line)


def test_a_vifs_slot_is_its_vm_side_redirect() -> None:
    m = SteerMap()
    feed(m, STEER_TO_B)
    assert m.slots == {"11": "b"} and m.seen == {"11"}
    feed(m, STEER_TO_B.replace("b11", "x").replace("a11", "b11").replace("x", "a11"))
    assert m.slots == {"11": "a"}


def test_a_filter_without_its_redirect_or_deleted_is_not_known() -> None:
    m = SteerMap()
    feed(m, STEER_TO_B)
    m.feed("replaced filter dev v11 ingress protocol all pref 1 bpf chain 0 handle 0x1 da")
    assert m.slots == {}  # a VM-side filter that redirects nowhere: not known
    feed(m, STEER_TO_B)
    m.feed("deleted filter dev v11 ingress protocol all pref 1 bpf chain 0 handle 0x1")
    m.feed("\taction order 1: mirred (Egress Redirect to device b11) stolen")
    assert m.slots == {}
    # a redirect to another VIF's device, or to a device of no slot, says nothing
    m.feed("added filter dev v11 ingress protocol all pref 1 bpf chain 0 handle 0x1")
    m.feed("\taction order 1: mirred (Egress Redirect to device b12) stolen")
    m.feed("added filter dev v12 ingress protocol all pref 1 bpf chain 0 handle 0x1")
    m.feed("\taction order 1: mirred (Egress Redirect to device x12) stolen")
    assert m.slots == {}
    m.feed("added chain dev v13 parent ffff: chain 0")  # not a filter line
    assert "13" not in m.seen


def test_a_read_counts_only_for_vifs_with_no_change_seen_since() -> None:
    m = SteerMap()
    feed(m, STEER_TO_B)
    m.learn({"11": "a", "12": "a"})  # 11's read is older than the change the monitor saw
    assert m.slots == {"11": "b", "12": "a"}
