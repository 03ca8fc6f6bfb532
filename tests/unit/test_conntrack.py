"""Conntrack cleanup: what is flushed when firewalled ports go away, and how."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from flowkeeper.agent import conntrack
from flowkeeper.agent.conntrack import Flush, held, taken_over, to_flush
from flowkeeper.pipeline.view import HostView, LocalPort, NetworkView

NETS = (NetworkView("n1", "vxlan", 1001, 1), NetworkView("n2", "vxlan", 1002, 2))


def lport(pid: str, net: str, *ips: str, pairs: tuple[tuple[str, str], ...] = ()) -> LocalPort:
    return LocalPort(
        pid,
        net,
        f"tap{pid}",
        "fa:16:3e:00:00:01",
        ips,
        port_security=True,
        security_groups=("g",),
        allowed_pairs=pairs,
    )


def view(*ports: LocalPort, firewall: bool = True) -> HostView:
    return HostView("198.18.0.1", networks=NETS, local_ports=ports, firewall=firewall)


def test_held_addresses_per_zone() -> None:
    v = view(
        lport("a", "n1", "198.19.1.5", pairs=(("fa:16:3e:00:00:09", "198.19.1.50"),)),
        lport("b", "n2", "198.19.2.5", pairs=(("fa:16:3e:00:00:09", "198.19.2.0/28"),)),
    )
    assert held(v) == {
        ("a", 1, "198.19.1.5"),
        ("a", 1, "198.19.1.50"),
        ("b", 2, "198.19.2.5"),
    }  # a CIDR pair is a range, not one conntrack address


def test_nothing_held_without_firewall_or_port_security() -> None:
    unfiltered = LocalPort("c", "n1", "tapc", "fa:16:3e:00:00:03", ("198.19.1.7",))
    assert held(view(unfiltered)) == frozenset()
    assert held(view(lport("a", "n1", "198.19.1.5"), firewall=False)) == frozenset()
    assert held(view(lport("x", "n9", "198.19.9.5"))) == frozenset()  # no VLAN: no zone


def test_deleted_port_flushes_its_addresses_or_its_zone() -> None:
    a, b = lport("a", "n1", "198.19.1.5"), lport("b", "n1", "198.19.1.6")
    both, only_b = held(view(a, b)), held(view(b))
    assert to_flush(both, only_b) == Flush((), ((1, "198.19.1.5"),))
    assert to_flush(only_b, frozenset()) == Flush((1,), ())  # the zone is empty: whole
    assert not to_flush(both, both)


def test_zone_change_flushes_the_old_zone() -> None:
    before = held(view(lport("a", "n1", "198.19.1.5"), lport("b", "n2", "198.19.2.9")))
    after = held(view(lport("a", "n2", "198.19.1.5"), lport("b", "n2", "198.19.2.9")))
    assert to_flush(before, after) == Flush((1,), ())


def test_shared_pair_kept_by_the_port_that_stays() -> None:
    vip = (("fa:16:3e:00:00:09", "198.19.1.100"),)
    a, b = lport("a", "n1", "198.19.1.5", pairs=vip), lport("b", "n1", "198.19.1.6", pairs=vip)
    assert to_flush(held(view(a, b)), held(view(b))) == Flush((), ((1, "198.19.1.5"),))


def test_address_taken_by_a_new_port_is_flushed() -> None:
    """Port a deleted and port c created with its address in one step: c must not
    inherit a's connections."""
    before = held(view(lport("a", "n1", "198.19.1.5"), lport("b", "n1", "198.19.1.6")))
    after = held(view(lport("c", "n1", "198.19.1.5"), lport("b", "n1", "198.19.1.6")))
    assert to_flush(before, after) == Flush((), ((1, "198.19.1.5"),))


def test_argvs_by_address_only() -> None:
    argvs = conntrack.argvs(Flush((3,), ((1, "198.19.1.5"), (1, "fd00::5"))), "/x/vs.ctl")
    base = ["ovs-appctl", "--timeout=5", "-t", "/x/vs.ctl", "dpctl/flush-conntrack"]
    assert argvs == [
        [*base, "zone=3"],
        [*base, "zone=1", "ct_nw_src=198.19.1.5"],
        [*base, "zone=1", "ct_nw_dst=198.19.1.5"],
        [*base, "zone=1", "ct_ipv6_src=fd00::5"],
        [*base, "zone=1", "ct_ipv6_dst=fd00::5"],
    ]


def test_flush_reports_failures_and_goes_on() -> None:
    ran: list[list[str]] = []

    def runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        ran.append(list(argv))
        code = 2 if argv[-1] == "zone=3" else 0
        return subprocess.CompletedProcess(argv, code, "", "failed to flush conntrack")

    errors = conntrack.flush(Flush((3,), ((1, "198.19.1.5"),)), "t", runner=runner)
    assert len(ran) == 3
    assert errors == ["dpctl/flush-conntrack zone=3: failed to flush conntrack"]


Spec = tuple[str, str, str]  # (port, network, address)
addresses = st.sampled_from([f"198.19.1.{i}" for i in range(1, 6)])
ports = st.lists(
    st.tuples(st.sampled_from("abcd"), st.sampled_from(["n1", "n2"]), addresses),
    max_size=8,
    unique_by=lambda t: t[0],
)


@given(ports, ports)
def test_flush_covers_exactly_what_went_away(before_p: list[Spec], after_p: list[Spec]) -> None:
    before = held(view(*(lport(p, n, ip) for p, n, ip in before_p)))
    after = held(view(*(lport(p, n, ip) for p, n, ip in after_p)))
    what = to_flush(before, after)
    flushed = {(z, ip) for z, ip in what.addresses}
    flushed |= {(z, ip) for _p, z, ip in before if z in what.zones}
    # Every address a port stopped holding is flushed, unless a port kept holding it.
    kept = {(z, ip) for _p, z, ip in before & after}
    for _p, z, ip in before - after:
        assert (z, ip) in flushed or (z, ip) in kept
    # Nothing a staying port holds is touched; a whole zone only when nothing is left.
    assert not flushed & kept
    assert not set(what.zones) & {z for _p, z, _ip in after}


def test_take_over_of_every_port_flushes_their_zones_whole() -> None:
    h = held(view(lport("a", "n1", "198.19.1.5"), lport("b", "n2", "198.19.2.5")))
    assert taken_over(h, ["a", "b"]) == Flush((1, 2), ())


def test_take_over_of_some_ports_flushes_only_their_addresses() -> None:
    h = held(view(lport("a", "n1", "198.19.1.5"), lport("b", "n1", "198.19.1.6")))
    assert taken_over(h, ["a"]) == Flush((), ((1, "198.19.1.5"),))
    assert not taken_over(h, [])
    assert not taken_over(h, ["not-a-port"])


@given(ports, st.sets(st.sampled_from("abcd")))
def test_take_over_flushes_the_taken_and_spares_the_rest(
    specs: list[Spec], taken: set[str]
) -> None:
    h = held(view(*(lport(p, n, ip) for p, n, ip in specs)))
    what = taken_over(h, taken)
    flushed = set(what.addresses) | {(z, ip) for _p, z, ip in h if z in what.zones}
    mine = {(z, ip) for p, z, ip in h if p in taken}
    assert mine <= flushed
    # An address only ports left where they were hold is left alone.
    others = {(z, ip) for p, z, ip in h if p not in taken} - mine
    assert not flushed & others
