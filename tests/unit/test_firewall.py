"""The firewall pipeline: Neutron's openvswitch firewall flows, built and kept up to date."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from flowkeeper.flows.flowset import FlowSet
from flowkeeper.flows.record import Flow, parse_flow
from flowkeeper.naming import BR_INT, BR_TUN, PATCH_INT, PATCH_TUN, SLOT_LINK
from flowkeeper.pipeline import firewall as fw
from flowkeeper.pipeline import tables as t
from flowkeeper.pipeline.build import build_flows
from flowkeeper.pipeline.incremental import IncrementalBuild
from flowkeeper.pipeline.tables import cookie_for
from flowkeeper.pipeline.view import (
    GroupView,
    HostView,
    LocalPort,
    NetworkView,
    RemotePort,
    RuleView,
)

NETS = (NetworkView("net-a", "vxlan", 1001, 1), NetworkView("net-b", "gre", 2002, 2))
WEB, DB = "sg-web", "sg-db"
RULES = (
    RuleView("egress", "IPv4"),
    RuleView("ingress", "IPv4", "tcp", 22, 22),
    RuleView("ingress", "IPv4", "tcp", 8000, 8099, remote_ip_prefix="198.18.0.0/16"),
    RuleView("ingress", "IPv4", "icmp", 8, None),
    RuleView("ingress", "IPv4", "tcp", 80, 80, remote_group=DB),
)


def port(
    i: int, net: str = "net-a", *, secure: bool = True, groups: tuple[str, ...] = (WEB,)
) -> LocalPort:
    return LocalPort(
        f"lp{i}",
        net,
        f"tap{i:011d}",
        f"fa:16:3e:00:00:{i:02x}",
        (f"198.19.1.{i}",),
        port_security=secure,
        security_groups=groups if secure else (),
    )


def view(*ports: LocalPort, firewall: bool = True, **kw: object) -> HostView:
    base = HostView(
        "198.18.0.2",
        cookie=cookie_for(3),
        networks=NETS,
        local_ports=ports,
        remote_ports=(
            RemotePort("rp1", "net-a", "fa:16:3e:01:00:01", "198.18.0.5", ("198.19.1.50",)),
        ),
        firewall=firewall,
        groups=(GroupView(DB, ()), GroupView(WEB, RULES)),
        members=((DB, ("198.19.1.60", "198.19.1.61")),),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def of(flows: FlowSet, table: int) -> list[Flow]:
    return sorted(
        (f for f in flows if f.bridge == BR_INT and f.table == table), key=lambda f: f.key
    )


def number(v: HostView, port_id: str) -> str:
    return f"{fw.plan(v).numbers[port_id]:#x}"


def test_firewall_off_gives_todays_flows_whatever_the_ports_say() -> None:
    plain = [replace(port(i), port_security=False, security_groups=()) for i in (1, 2)]
    today = build_flows(view(*plain, firewall=False, groups=(), members=()))
    assert build_flows(view(port(1), port(2), firewall=False)) == today
    assert not [f for f in today if f.table in t.FIREWALL_TABLES]


def test_firewall_on_moves_switching_to_table_94_and_keeps_every_other_flow() -> None:
    plain = [port(i, secure=False) for i in (1, 2)]
    off = build_flows(view(*plain, firewall=False))
    on = build_flows(view(*plain))
    moved = {
        replace(f, table=t.ACCEPTED_EGRESS_SWITCH)
        for f in off
        if f.bridge == BR_INT and f.table == t.INT_SWITCH and f.priority > 0
    }
    assert moved and moved <= set(on)
    assert {f for f in off if f.table != t.INT_SWITCH} <= set(on)
    # No port with port security: the firewall's own flows are the host-wide base only.
    assert not [f for f in on if any(k == "reg5" for k, _ in f.match)]
    assert of(on, t.FW_DISPATCH) == [
        parse_flow(f"cookie={cookie_for(3):#x},table=60,priority=0,actions=resubmit(,94)", BR_INT)
    ]
    assert not [f for f in on if f.bridge == BR_INT and f.table == t.INT_SWITCH and f.priority > 0]


def test_every_flow_is_canonical() -> None:
    v = view(port(1), port(2, groups=(WEB, DB)), port(3, "net-b", secure=False))
    for flow in build_flows(v):
        assert parse_flow(flow.render(), flow.bridge) == flow, flow.render()


def test_dispatch_and_anti_spoofing_of_a_protected_port() -> None:
    p = replace(port(1), allowed_pairs=(("fa:16:3e:aa:00:01", "198.19.9.0/24"),))
    v = view(p)
    flows = build_flows(v)
    reg5, tap = number(v, "lp1"), p.device
    dispatch = {(f.priority, f.match, f.actions) for f in of(flows, t.FW_DISPATCH)}
    assert (
        100,
        (("in_port", tap),),
        f"set_field:{reg5}->reg5,set_field:0x1->reg6,resubmit(,71)",
    ) in dispatch
    to_ingress = f"set_field:{reg5}->reg5,set_field:0x1->reg6,pop_vlan,resubmit(,81)"
    for mac in ("fa:16:3e:00:00:01", "fa:16:3e:aa:00:01"):
        assert (90, (("dl_dst", mac), ("dl_vlan", "1")), to_ingress) in dispatch
    base = {(f.priority, f.match, f.actions) for f in of(flows, t.BASE_EGRESS)}
    src = (("in_port", tap), ("reg5", reg5))

    def m(*fields: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((*src, *fields)))

    ip = ("dl_type", "0x800")
    for mac, addr in (("fa:16:3e:00:00:01", "198.19.1.1"), ("fa:16:3e:aa:00:01", "198.19.9.0/24")):
        assert (65, m(ip, ("dl_src", mac), ("nw_src", addr)), "ct(table=72,zone=1)") in base
        arp = m(("dl_type", "0x806"), ("dl_src", mac), ("arp_spa", addr))
        assert (95, arp, "resubmit(,94)") in base
    dhcp = m(ip, ("nw_proto", "17"), ("dl_src", "fa:16:3e:00:00:01"), ("nw_src", "0.0.0.0"))
    dhcp += (("tp_dst", "67"), ("tp_src", "68"))
    assert (80, tuple(sorted(dhcp)), "resubmit(,73)") in base
    server = m(ip, ("nw_proto", "17"), ("tp_src", "67"), ("tp_dst", "68"))
    assert (70, server, "resubmit(,93)") in base
    assert (10, m(), "ct_clear,resubmit(,93)") in base
    # Everything else from the port is dropped: no flow of 71 lets another source through.
    assert all(("dl_src", "fa:16:3e:00:00:02") not in f.match for f in of(flows, t.BASE_EGRESS))


def test_conntrack_in_the_networks_zone_and_removed_rules_stop_their_connections() -> None:
    v = view(port(1, "net-b"))
    flows = build_flows(v)
    reg5 = ("reg5", number(v, "lp1"))
    rules_in = {(f.priority, f.match): f.actions for f in of(flows, t.RULES_INGRESS)}
    assert rules_in[(50, (("ct_state", "+inv+trk"),))] == "resubmit(,93)"
    assert rules_in[(50, tuple(sorted((reg5, ("ct_mark", "0x1")))))] == "resubmit(,93)"
    est = (("ct_mark", "0x0"), ("ct_state", "+est-rel+rpl"), ("ct_zone", "0x2"), reg5)
    assert rules_in[(50, est)] == "output:tap00000000001"
    marked = rules_in[(40, (("ct_state", "+est"), ("dl_type", "0x800"), reg5))]
    assert marked == "ct(commit,zone=2,exec(set_field:0x1->ct_mark))"
    # tcp/22 from anywhere: new connections committed, established ones (not replies) passed.
    ssh = (("dl_type", "0x800"), ("nw_proto", "6"), reg5, ("tp_dst", "22"))
    new = tuple(sorted((*ssh, ("ct_state", "+new-est"))))
    assert rules_in[(77, new)] == "ct(commit,zone=2),output:tap00000000001,resubmit(,92)"
    old = tuple(sorted((*ssh, ("ct_state", "+est-rel-rpl"))))
    assert rules_in[(77, old)] == "output:tap00000000001"
    egress = {(f.priority, f.match): f.actions for f in of(flows, t.RULES_EGRESS)}
    assert egress[(74, (("ct_state", "+new-est"), ("dl_type", "0x800"), reg5))] == "resubmit(,73)"
    accept = {(f.priority, f.match): f.actions for f in of(flows, t.ACCEPT_OR_INGRESS)}
    commit = (("ct_state", "+new-est"), ("dl_type", "0x800"), reg5)
    assert accept[(90, commit)] == "ct(commit,zone=2),resubmit(,91)"
    assert accept[(80, (reg5,))] == "resubmit(,94)"


def test_a_removed_rule_takes_its_flows_with_it() -> None:
    v = view(port(1))
    shorter = GroupView(WEB, tuple(r for r in RULES if r.port_min != 22))
    after = build_flows(replace(v, groups=(GroupView(DB, ()), shorter)))
    assert [f for f in build_flows(v) if ("tp_dst", "22") in f.match]
    assert not [f for f in after if ("tp_dst", "22") in f.match]


def test_local_traffic_to_a_protected_port_passes_its_ingress() -> None:
    v = view(port(1), port(2))
    accept = {(f.priority, f.match): f.actions for f in of(build_flows(v), t.ACCEPT_OR_INGRESS)}
    match = (("dl_dst", "fa:16:3e:00:00:02"), ("dl_vlan", "1"), ("reg6", "0x1"))
    assert accept[(100, match)] == f"set_field:{number(v, 'lp2')}->reg5,pop_vlan,resubmit(,81)"


def test_a_port_without_port_security_has_no_firewall_flow() -> None:
    v = view(port(1), port(2, secure=False))
    flows = build_flows(v)
    tap2 = "tap00000000002"
    mentions = [f for f in flows if tap2 in f.actions or ("in_port", tap2) in f.match]
    assert {(f.table, f.priority) for f in mentions} == {(0, 10), (94, 20), (94, 5)}
    assert set(fw.plan(v).numbers) == {"lp1"}


def test_remote_group_costs_members_plus_rules() -> None:
    def conj_flows(members: int, rules: int, ports: int) -> int:
        group = GroupView(
            WEB,
            tuple(
                RuleView("ingress", "IPv4", "tcp", 1000 + r, 1000 + r, remote_group=DB)
                for r in range(rules)
            ),
        )
        ips = tuple(f"198.19.{2 + m // 250}.{m % 250}" for m in range(members))
        v = view(*(port(i) for i in range(1, ports + 1)), groups=(group,), members=((DB, ips),))
        return sum(
            1 for f in build_flows(v) if "conjunction(" in f.actions or "conj_id" in dict(f.match)
        )

    # Clause 1: 2 per member (two ct states). Clause 2: 2 per rule and port. Accept: 2 per port.
    assert conj_flows(1000, 10, 1) == 2 * 1000 + 2 * 10 + 2
    assert conj_flows(10, 10, 1) == 2 * 10 + 2 * 10 + 2
    assert conj_flows(1000, 1, 1) == 2 * 1000 + 2 + 2
    assert conj_flows(1000, 10, 3) == 2 * 1000 + 3 * (2 * 10 + 2)


def test_a_member_in_two_remote_groups_is_one_flow_per_state() -> None:
    rules = (
        RuleView("ingress", "IPv4", "tcp", 80, 80, remote_group=DB),
        RuleView("ingress", "IPv4", "tcp", 80, 80, remote_group=WEB),
    )
    ip = "198.19.1.77"
    v = view(
        port(1), groups=(GroupView(WEB, rules),), members=((DB, (ip,)), (WEB, (ip, f"{ip}/32")))
    )
    flows = build_flows(v)
    clause1 = [f for f in flows if ("nw_src", ip) in f.match]
    assert len(clause1) == 2
    assert all(f.actions.count("conjunction(") == 2 and "1/2" in f.actions for f in clause1)
    clause2 = [f for f in flows if ("tp_dst", "80") in f.match]
    assert len(clause2) == 2 and all(f.actions.count(",2/2)") == 2 for f in clause2)


@given(st.integers(0, 65535), st.integers(0, 65535))
def test_port_masks_cover_exactly_the_range(a: int, b: int) -> None:
    low, high = min(a, b), max(a, b)
    masks = fw.port_masks(low, high)
    covered: set[int] = set()
    for text in masks:
        value, _, mask = text.partition("/")
        m = int(mask) if mask else 0xFFFF
        covered |= {
            p for p in range(int(value), int(value) + (0xFFFF ^ m) + 1) if p & m == int(value)
        }
    if not masks:
        assert low <= 1 and high == 65535
    else:
        assert covered == set(range(low, high + 1))
        assert len(masks) <= 32


def test_numbers_are_distinct_and_collisions_probe_in_id_order() -> None:
    def clash(key: str) -> tuple[int, int]:
        return 7, 8

    assert fw.assign(["b", "a", "c"], clash) == {"a": 7, "b": 8, "c": 1}
    v = view(*(port(i) for i in range(1, 60)))
    numbers = fw.plan(v).numbers
    assert len(set(numbers.values())) == len(numbers) == 59
    assert all(0 < n < 1 << 32 for n in numbers.values())
    # A port's number is its own: other ports coming and going leave it alone.
    assert fw.plan(view(port(5))).numbers["lp5"] == numbers["lp5"]


def test_unsupported_rules_add_nothing() -> None:
    odd = (
        RuleView("ingress", "IPv6", "tcp", 22, 22),
        RuleView("ingress", "IPv4", "sctp"),
        RuleView("sideways", "IPv4"),
        RuleView("ingress", "IPv4", remote_ip_prefix="2001:db8::/32"),
    )
    with_odd = build_flows(view(port(1), groups=(GroupView(DB, ()), GroupView(WEB, RULES + odd))))
    assert with_odd == build_flows(view(port(1)))


# --- the property: incremental == from scratch, and nothing of a gone port is left ---

POOL_IPS = ("198.19.1.1", "198.19.1.2", "198.19.1.3", "198.19.1.70", "198.19.7.0/24")
GROUPS = ("sg1", "sg2", "sg3")
rule_st = st.builds(
    RuleView,
    st.sampled_from(["ingress", "egress"]),
    st.just("IPv4"),
    st.sampled_from(["", "tcp", "udp", "icmp"]),
    st.sampled_from([None, 22, 80]),
    st.sampled_from([None, 80, 90]),
    st.sampled_from(["", "198.18.0.0/16"]),
    st.sampled_from(["", "", *GROUPS]),
)
group_st = st.builds(
    lambda gid, rules: GroupView(gid, tuple(sorted(set(rules), key=fw.rule_order))),
    st.sampled_from(GROUPS),
    st.lists(rule_st, max_size=4),
)
local_st = st.builds(
    lambda i, net, secure, groups, pair: LocalPort(
        f"lp{i}",
        net,
        f"tap{i:011d}",
        f"fa:16:3e:00:00:{i:02x}",
        (f"198.19.1.{i}",),
        secure,
        tuple(sorted(groups)) if secure else (),
        ((("fa:16:3e:0a:00:01", "198.19.7.0/24"),) if pair else ()) if secure else (),
    ),
    st.integers(1, 6),
    st.sampled_from(["net-a", "net-b"]),
    st.booleans(),
    st.sets(st.sampled_from(GROUPS), max_size=2),
    st.booleans(),
)
fw_views_st = st.builds(
    lambda nets, ports, groups, members, firewall, gen, slot_link: HostView(
        "198.18.0.2",
        cookie=cookie_for(gen),
        networks=tuple(sorted(nets)),
        local_ports=tuple(ports),
        firewall=firewall,
        groups=tuple(sorted(groups, key=lambda g: g.id)),
        members=tuple(sorted((g, tuple(sorted(ips))) for g, ips in members.items())),
        slot_link=slot_link,
    ),
    st.lists(st.sampled_from(NETS), unique_by=lambda n: n.id, max_size=2),
    st.lists(local_st, unique_by=lambda p: p.id, max_size=5),
    st.lists(group_st, unique_by=lambda g: g.id, max_size=3),
    st.dictionaries(st.sampled_from(GROUPS), st.sets(st.sampled_from(POOL_IPS), max_size=3)),
    st.sampled_from([True, True, True, False]),
    st.integers(1, 2),
    st.booleans(),
)


def _devices(flow: Flow) -> set[str]:
    names = {v for k, v in flow.match if k == "in_port"}
    for action in flow.actions.split(","):
        if action.startswith("output:"):
            names.add(action[len("output:") :])
    return names


def assert_nothing_leaked(v: HostView, flows: FlowSet) -> None:
    present = {n.id for n in v.networks}
    live = {p for p in v.local_ports if p.network_id in present}
    devices = {p.device for p in live} | {PATCH_TUN, PATCH_INT, "IN_PORT"}
    if v.slot_link:
        devices.add(SLOT_LINK)
    numbers = fw.plan(v).numbers
    regs = {f"{n:#x}" for n in numbers.values()}
    secure_macs = {m for p in live if p.id in numbers for m in fw.allowed_macs(p)}
    member_ips = {ip for _, ips in v.members for ip in ips}
    for flow in flows:
        if flow.bridge == BR_TUN:
            continue
        assert _devices(flow) <= devices, flow.render()
        match = dict(flow.match)
        if "reg5" in match:
            assert match["reg5"] in regs, flow.render()
        dispatch = flow.table == t.ACCEPT_OR_INGRESS or (flow.table == t.FW_DISPATCH and v.firewall)
        if dispatch and "dl_dst" in match:
            assert match["dl_dst"] in secure_macs, flow.render()
        if "conjunction(" in flow.actions and ",1/2)" in flow.actions:
            addr = match.get("nw_src", match.get("nw_dst"))
            assert addr in {fw._prefix(ip) for ip in member_ips}, flow.render()
        if not v.firewall:
            assert flow.table not in t.FIREWALL_TABLES, flow.render()


@settings(max_examples=300, deadline=None)
@given(st.lists(fw_views_st, min_size=1, max_size=8))
def test_incremental_equals_scratch_and_nothing_is_left_of_what_is_gone(
    views: list[HostView],
) -> None:
    inc = IncrementalBuild()
    for v in views:
        inc.update(v)
        full = build_flows(v)
        assert inc.desired == full
        assert_nothing_leaked(v, full)
    # Every port deleted: no firewall flow names any of them.
    last = replace(views[-1], local_ports=())
    inc.update(last)
    assert inc.desired == build_flows(last)
    assert not [f for f in inc.desired if "reg5" in dict(f.match) or "conj_id" in dict(f.match)]
    assert not [f for f in inc.desired if "conjunction(" in f.actions]


def test_a_member_change_rebuilds_only_the_member_flows() -> None:
    v = view(port(1), port(2), port(3, "net-b"))
    inc = IncrementalBuild()
    inc.update(v)
    changed = inc.update(replace(v, members=((DB, ("198.19.1.60", "198.19.1.62")),)))
    assert inc.desired == build_flows(replace(v, members=((DB, ("198.19.1.60", "198.19.1.62")),)))
    # Ports of two networks use DB's members, whose flows are the host's (not per network):
    # 2 flows go and 2 come (one per ct state), and no port's flow changes.
    assert len(changed) == 2 * 2
    assert all(
        ("nw_src", "198.19.1.61") in k[3] or ("nw_src", "198.19.1.62") in k[3] for k in changed
    )


# --- rule changes: the template delta (per port, only the flows a rule changes) ---


def _reference_rule_flows(inputs: fw.RuleInputs) -> list[Flow]:
    """Each port's rule flows written out directly, as the pipeline did before templates."""
    zone, num = inputs.vlan, f"{inputs.number:#x}"
    to_vm = f"output:{inputs.device}"
    bases = dict(inputs.conj)
    conj: dict[tuple[int, int, tuple[tuple[str, str], ...]], set[int]] = {}
    accepts: set[tuple[str, int, int]] = set()
    plain: dict[tuple[int, int, tuple[tuple[str, str], ...]], str] = {}
    for rule in inputs.rules:
        ingress = rule.direction == "ingress"
        table = t.RULES_INGRESS if ingress else t.RULES_EGRESS
        matches = fw._rule_matches(rule, num)
        if rule.remote_group:
            base = bases.get(rule.remote_group)
            if base is None:
                continue
            offset = fw.priority_offset(rule, conjunction=True)
            accepts.add((rule.direction, offset, base))
            for match in matches:
                for k, state in enumerate(fw.RULE_STATES):
                    key = (table, 70 + offset, tuple(sorted([*match, ("ct_state", state)])))
                    conj.setdefault(key, set()).add(base + 2 * offset + k)
            continue
        priority = 70 + fw.priority_offset(rule)
        for match in matches:
            for state in fw.RULE_STATES:
                key = (table, priority, tuple(sorted([*match, ("ct_state", state)])))
                plain[key] = fw._accept(ingress, state, zone, to_vm)
    out = [Flow(BR_INT, tb, p, m, a, inputs.cookie) for (tb, p, m), a in plain.items()]
    for (tb, p, m), ids in conj.items():
        actions = ",".join(f"conjunction({i},2/2)" for i in sorted(ids))
        out.append(Flow(BR_INT, tb, p, m, actions, inputs.cookie))
    for direction, offset, base in accepts:
        ingress = direction == "ingress"
        table = t.RULES_INGRESS if ingress else t.RULES_EGRESS
        for k, state in enumerate(fw.RULE_STATES):
            match = [("conj_id", f"{base + 2 * offset + k:#x}"), ("ct_state", state)]
            match += [("dl_type", fw.IP), ("reg5", num)]
            actions = fw._accept(ingress, state, zone, to_vm)
            out.append(
                Flow(BR_INT, table, 70 + offset, tuple(sorted(match)), actions, inputs.cookie)
            )
    return out


@settings(max_examples=200, deadline=None)
@given(fw_views_st)
def test_rule_flows_from_the_template_are_each_ports_own(v: HostView) -> None:
    for inputs in fw.plan(v).rules.values():
        assert FlowSet(fw.rule_flows(inputs)) == FlowSet(_reference_rule_flows(inputs))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(local_st, unique_by=lambda p: p.id, min_size=1, max_size=5),
    st.lists(st.lists(group_st, unique_by=lambda g: g.id, max_size=3), min_size=2, max_size=6),
)
def test_rule_changes_on_the_same_ports_equal_scratch(
    ports: list[LocalPort], group_sets: list[list[GroupView]]
) -> None:
    """Only the rules change (the template-delta path), the ports stay."""
    inc = IncrementalBuild()
    members = ((g, ("198.19.1.1", "198.19.7.0/24")) for g in GROUPS)
    base = replace(view(*ports), members=tuple(members))
    previous = FlowSet()
    for groups in group_sets:
        v = replace(base, groups=tuple(sorted(groups, key=lambda g: g.id)))
        changed = inc.update(v)
        full = build_flows(v)
        assert inc.desired == full
        moved = {f.key for f in full if previous.get(f.key) != f}
        moved |= {f.key for f in previous if full.get(f.key) != f}
        assert moved <= changed
        previous = full


def test_a_rule_change_makes_only_that_rules_flows() -> None:
    ports = [port(i, "net-a" if i % 2 else "net-b") for i in range(1, 41)]
    v = view(*ports)
    inc = IncrementalBuild()
    inc.update(v)
    added = RuleView("ingress", "IPv4", "udp", 53, 53)
    more = replace(v, groups=(GroupView(DB, ()), GroupView(WEB, (*RULES, added))))
    changed = inc.update(more)
    assert inc.desired == build_flows(more)
    # one flow per ct state and port, in table 82, and nothing else
    assert len(changed) == 2 * len(ports)
    assert all(k[1] == t.RULES_INGRESS and ("tp_dst", "53") in k[3] for k in changed)
    assert inc.update(more) == set()
