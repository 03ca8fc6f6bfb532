"""The stateful firewall on br-int: the flows of Neutron's openvswitch firewall driver.

Pure, like the rest of the pipeline. Tables are neutron-lib's (see tables.py): 60
dispatch, 71/72 egress base and rules, 73 accept-or-ingress, 81/82 ingress base and
rules, 91/92 accepted egress/ingress, 93 dropped, 94 accepted egress switching (Neutron's
NORMAL table; flowkeeper keeps its explicit MAC flows there, moved from table 60).

Port identity (reg5). Neutron loads a port's ofport into reg5 and matches it in every
table. flowkeeper never writes ofport numbers (OVS resolves names when flows are added,
and an ofport changes when a VIF is plugged again), so each port with port security
gets a number of its own, `port_numbers()`: 32 bits of a hash of its port id, probing
upward on a collision in port-id order. It is a pure function of the view, the same after
a restart, and a port keeps it whatever happens to other ports (unless a new port
collides with it and sorts first, a 1-in-10^6 event at 100 ports; then both ports' flows
are rewritten in one delta). Where the packet's in_port is the VIF itself (tables 60 and
71) the flows also match in_port by name, as Neutron's do.

reg6 holds the network's local VLAN, which is also the conntrack zone (written into the
ct() actions as a constant: every flow that commits is a port's own and knows its VLAN).

Packets: br-int table 0 tags a VIF's frames with the local VLAN as it always did, so the
egress tables see tagged frames (conntrack reads past the tag); the tag is stripped where
traffic turns to a VIF's ingress tables (60 and 73), as Neutron's untagged frames are.

Remote groups use conjunctions: one flow per member address (clause 1/2) and per port
one flow per rule (clause 2/2, matching reg5), so a group of N members referenced by R
rules costs N + R flows, not N x R. Neutron writes the member flows once per network
(matching reg6); they are the host's here, once per address: a conjunction completes only
with a port's own clause 2/2, so reg6 adds nothing, and a group used on 50 networks costs
its members once, not 50 times. A conjunction id is a block of 8 (Neutron's layout: 4
priority offsets x 2 conntrack states) numbered from a hash of the remote group's id,
probed like reg5. An address in several groups is one flow naming all their conjunctions.

Not done (as yet): IPv6 rules and addresses (IPv6 from a VIF with port security is
dropped by table 71's default, never passed), permitted ethertypes, flow logging (reg7).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from flowkeeper.flows.fields import canonical_value
from flowkeeper.flows.record import Flow, Match
from flowkeeper.naming import BR_INT, PATCH_TUN, SLOT_LINK
from flowkeeper.pipeline import tables as t
from flowkeeper.pipeline.view import HostView, LocalPort, RuleView

# ct_state values, spelled as OVS prints them back (flags in bit order).
EST_NOT_REPLY = "+est-rel-rpl"
NEW_NOT_EST = "+new-est"
EST_REPLY = "+est-rel+rpl"
RELATED = "-new-est+rel-inv"
INVALID = "+inv+trk"
NOT_EST = "-est"
EST = "+est"
NOT_TRACKED = "-trk"
TRACKED = "+trk"
RULE_STATES = (EST_NOT_REPLY, NEW_NOT_EST)  # a rule admits both; conj id + 0, + 1
CT_MARK_NORMAL = "0x0"
CT_MARK_INVALID = "0x1"  # the connection's rule was removed: drop what is left of it

IP, ARP, RARP = "0x800", "0x806", "0x8035"
PROTOCOLS = {"tcp": "6", "udp": "17", "icmp": "1"}
UDP = PROTOCOLS["udp"]
UNSPECIFIED = str(ipaddress.IPv4Address(0))  # a DHCP client's source before its lease
INGRESS, EGRESS = "ingress", "egress"
RULE_PRIORITY = 70
CONJ_BLOCK = 8
MAX_PORT_NUMBER = (1 << 32) - 1  # reg5 is 32 bits; 0 is never given
MAX_CONJ_SLOT = (1 << 29) - 1  # base = slot * 8, base + 7 < 2**32


@dataclass(frozen=True)
class PortInputs:
    """One protected port's flows that no rule changes: dispatch, base tables, conntrack."""

    cookie: int
    vlan: int
    port: LocalPort
    number: int  # reg5


# A rule flow without its port: (table, priority, match without reg5) ->
# (conjunction actions, "" to accept; ingress; ct state; where reg5 goes in the match).
RuleKey = tuple[int, int, Match]
RuleAction = tuple[str, bool, str, int]
RuleTemplate = Mapping[RuleKey, RuleAction]


@dataclass(frozen=True)
class RuleInputs:
    """One protected port's rule flows (tables 72 and 82)."""

    cookie: int
    vlan: int
    device: str
    number: int  # reg5
    rules: tuple[RuleView, ...]  # of all its groups, sorted, unique, supported ones only
    conj: tuple[tuple[str, int], ...]  # (remote group id, conjunction id base), sorted
    # rule_template(rules, conj): the flows of every port with these rules, shared
    template: RuleTemplate = field(default_factory=dict, compare=False, repr=False)

    def same_port(self, other: RuleInputs) -> bool:
        """The same port's flows but for the rules (so a template delta applies)."""
        return (
            self.cookie == other.cookie
            and self.vlan == other.vlan
            and self.device == other.device
            and self.number == other.number
        )


@dataclass(frozen=True)
class MemberInputs:
    """Remote-group member flows (conjunction clause 1/2) of one direction and priority
    offset, for the addresses of one bucket (a member change rebuilds one bucket)."""

    cookie: int
    direction: str
    offset: int
    # (canonical address, "" for any; conjunction id bases of the groups it is in), sorted
    entries: tuple[tuple[str, tuple[int, ...]], ...]


MemberPart = tuple[str, int, int]  # (direction, priority offset, bucket)
MEMBER_BUCKETS = 64


@dataclass(frozen=True)
class FirewallPlan:
    """The view's firewall, cut into parts: per protected port its base flows and its rule
    flows, and the remote groups' member flows in buckets."""

    numbers: dict[str, int]  # port id -> reg5, protected ports of present networks
    ports: dict[str, PortInputs]  # by port id
    rules: dict[str, RuleInputs]  # by port id
    members: dict[MemberPart, MemberInputs]
    # a port's groups -> (rules, conj, template) shared by the ports that have them
    shared: dict[
        tuple[str, ...], tuple[tuple[RuleView, ...], tuple[tuple[str, int], ...], RuleTemplate]
    ] = field(default_factory=dict)
    # what `members` was made of (remote rules in use, conjunction bases, the members)
    member_key: object = None


def plan(view: HostView, previous: FirewallPlan | None = None) -> FirewallPlan:
    """Cut the view's firewall into inputs; empty when the firewall is off.

    With the `previous` plan, a set of groups whose rules and conjunctions did not change
    gives the very same objects as last time (comparing inputs is then identity, and the
    rule template is not built again).
    """
    if not view.firewall:
        return FirewallPlan({}, {}, {}, {})
    vlans = {n.id: n.vlan for n in view.networks}
    protected = sorted(
        (p for p in view.local_ports if p.port_security and p.network_id in vlans),
        key=lambda p: p.id,
    )
    numbers = assign((p.id for p in protected), _port_hash)
    groups = {g.id: g.rules for g in view.groups}
    rules_memo: dict[tuple[str, ...], tuple[RuleView, ...]] = {}
    for port in protected:
        if port.security_groups not in rules_memo:
            rules_memo[port.security_groups] = _rules_of(port.security_groups, groups)
    # (direction, priority offset, remote group) of every remote rule some port has
    uses = {
        (r.direction, priority_offset(r, conjunction=True), r.remote_group)
        for rules in set(rules_memo.values())
        for r in rules
        if r.remote_group
    }
    bases = {
        g: slot * CONJ_BLOCK for g, slot in assign((g for _, _, g in uses), _conj_hash).items()
    }
    before = previous.shared if previous is not None else {}
    shared: dict[
        tuple[str, ...], tuple[tuple[RuleView, ...], tuple[tuple[str, int], ...], RuleTemplate]
    ] = {}
    ports: dict[str, PortInputs] = {}
    rule_parts: dict[str, RuleInputs] = {}
    for port in protected:
        got = shared.get(port.security_groups)
        if got is None:
            rules = rules_memo[port.security_groups]
            conj = tuple(
                sorted({(r.remote_group, bases[r.remote_group]) for r in rules if r.remote_group})
            )
            old = before.get(port.security_groups)
            if old is not None and old[0] == rules and old[1] == conj:
                got = old
            else:
                got = (rules, conj, rule_template(rules, conj))
            shared[port.security_groups] = got
        rules, conj, template = got
        vlan, number = vlans[port.network_id], numbers[port.id]
        ports[port.id] = PortInputs(view.cookie, vlan, port, number)
        rule_parts[port.id] = RuleInputs(
            view.cookie, vlan, port.device, number, rules, conj, template
        )
    member_key = (uses, bases, view.members)
    if previous is not None and previous.member_key == member_key:
        members = previous.members  # the same objects: nothing to compare part by part
    else:
        members = _member_parts(view, uses, bases)
    return FirewallPlan(numbers, ports, rule_parts, members, shared, member_key)


def _member_parts(
    view: HostView, uses: set[tuple[str, int, str]], bases: dict[str, int]
) -> dict[MemberPart, MemberInputs]:
    members = dict(view.members)
    by_use: dict[tuple[str, int], dict[str, set[int]]] = {}
    for direction, offset, group in uses:
        acc = by_use.setdefault((direction, offset), {})
        base = bases[group]
        for address in members.get(group, ()):
            prefix = _prefix(address)
            if prefix is not None:
                acc.setdefault(prefix, set()).add(base)
    buckets: dict[MemberPart, list[tuple[str, tuple[int, ...]]]] = {}
    for (direction, offset), acc in by_use.items():
        for prefix, ids in acc.items():
            part = (direction, offset, _digest(prefix) % MEMBER_BUCKETS)
            buckets.setdefault(part, []).append((prefix, tuple(sorted(ids))))
    return {
        part: MemberInputs(view.cookie, part[0], part[1], tuple(sorted(entries)))
        for part, entries in buckets.items()
    }


def assign(keys: Iterable[str], hash_fn: Callable[[str], tuple[int, int]]) -> dict[str, int]:
    """A distinct number for each key: its hash, or the next free one on a collision
    (keys taken in sorted order, so the result is a function of the set of keys)."""
    taken: set[int] = set()
    out: dict[str, int] = {}
    for key in sorted(set(keys)):
        number, limit = hash_fn(key)
        while number in taken:
            number = number % limit + 1
        taken.add(number)
        out[key] = number
    return out


@lru_cache(maxsize=1 << 16)
def _digest(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _port_hash(key: str) -> tuple[int, int]:
    return _digest(key) % MAX_PORT_NUMBER + 1, MAX_PORT_NUMBER


def _conj_hash(key: str) -> tuple[int, int]:
    return _digest(key) % MAX_CONJ_SLOT + 1, MAX_CONJ_SLOT


def _rules_of(
    group_ids: tuple[str, ...], groups: dict[str, tuple[RuleView, ...]]
) -> tuple[RuleView, ...]:
    rules = {r for g in group_ids for r in groups.get(g, ()) if supported(r)}
    return tuple(sorted(rules, key=rule_order))


def rule_order(rule: RuleView) -> tuple[str, str, str, int, int, str, str]:
    """A total order of rules (dataclass ordering fails on None next to an int)."""
    low = -1 if rule.port_min is None else rule.port_min
    high = -1 if rule.port_max is None else rule.port_max
    return (
        rule.direction,
        rule.ethertype,
        rule.protocol,
        low,
        high,
        rule.remote_ip_prefix,
        rule.remote_group,
    )


def supported(rule: RuleView) -> bool:
    """Rules the pipeline can express (others add nothing: the firewall fails closed)."""
    if rule.direction not in (INGRESS, EGRESS) or rule.ethertype != "IPv4":
        return False
    if rule.protocol and rule.protocol not in PROTOCOLS:
        return False
    if rule.remote_ip_prefix and not rule.remote_group:
        return _prefix(rule.remote_ip_prefix) is not None
    return True


@lru_cache(maxsize=1 << 16)
def _prefix(text: str) -> str | None:
    """A canonical IPv4 address/prefix, "" for any, None when not IPv4."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if net.version != 4:
        return None
    return "" if net.prefixlen == 0 else canonical_value("nw_src", str(net))


def priority_offset(rule: RuleView, *, conjunction: bool = False) -> int:
    """Neutron's rules.flow_priority_offset: more specific rules sit higher."""
    base = 0 if conjunction or rule.remote_group else 4
    if not rule.protocol:
        return base
    if rule.protocol == "icmp":
        if rule.port_min is None:
            return base + 1
        if rule.port_max is None:
            return base + 2
    return base + 3


def port_masks(low: int, high: int) -> list[str]:
    """tp_dst values (value/mask) covering [low, high] exactly (Neutron's port masking)."""
    if low <= 1 and high >= 65535:
        return []
    out: list[str] = []
    while low <= high:
        size = low & -low if low else 1 << 16
        while size > high - low + 1:
            size >>= 1
        out.append(str(low) if size == 1 else f"{low}/{0xFFFF ^ (size - 1)}")
        low += size
    return out


def _rule_matches(rule: RuleView, number: str) -> list[list[tuple[str, str]]]:
    """The match fields (without ct_state) of one rule on one port: one list per flow."""
    match = [("dl_type", IP), ("reg5", number)]
    if rule.remote_ip_prefix and not rule.remote_group:
        prefix = _prefix(rule.remote_ip_prefix)
        if prefix:
            match.append(("nw_src" if rule.direction == INGRESS else "nw_dst", prefix))
    if not rule.protocol:
        return [match]
    match.append(("nw_proto", PROTOCOLS[rule.protocol]))
    if rule.protocol == "icmp":
        if rule.port_min is not None:
            match.append(("icmp_type", f"{rule.port_min:#x}"))
            if rule.port_max is not None:
                match.append(("icmp_code", f"{rule.port_max:#x}"))
        return [match]
    if rule.port_min is None or rule.port_max is None:
        return [match]
    masks = port_masks(rule.port_min, rule.port_max)
    return [[*match, ("tp_dst", m)] for m in masks] if masks else [match]


def address_pairs(port: LocalPort) -> list[tuple[str, str]]:
    """(MAC, IPv4 address or prefix) a port may send from: its own IPs and allowed pairs."""
    pairs: set[tuple[str, str]] = set()
    mac = canonical_value("dl_src", port.mac)
    for ip in port.ips:
        prefix = _prefix(ip)
        if prefix:
            pairs.add((mac, prefix))
    for pair_mac, ip in port.allowed_pairs:
        prefix = _prefix(ip)
        if prefix:
            pairs.add((canonical_value("dl_src", pair_mac or port.mac), prefix))
    return sorted(pairs)


def allowed_macs(port: LocalPort) -> list[str]:
    """The MACs traffic to the port may be addressed to: its own and its pairs'."""
    macs = {canonical_value("dl_src", port.mac)}
    macs.update(canonical_value("dl_src", m or port.mac) for m, _ in port.allowed_pairs)
    return sorted(macs)


class _Out:
    def __init__(self, cookie: int) -> None:
        self.cookie = cookie
        self.flows: list[Flow] = []

    def add(
        self, table: int, priority: int, match: Iterable[tuple[str, str]], actions: str
    ) -> None:
        self.flows.append(Flow(BR_INT, table, priority, tuple(sorted(match)), actions, self.cookie))


def base_flows(cookie: int) -> list[Flow]:
    """The firewall's host-wide flows: table defaults and the shared conntrack checks."""
    out = _Out(cookie)
    for table in (t.BASE_EGRESS, t.RULES_EGRESS, t.ACCEPT_OR_INGRESS, t.BASE_INGRESS):
        out.add(table, 0, (), "drop")
    out.add(t.RULES_INGRESS, 0, (), "drop")
    for table in (t.ACCEPTED_INGRESS, t.DROPPED, t.ACCEPTED_EGRESS_SWITCH):
        out.add(table, 0, (), "drop")
    out.add(t.ACCEPTED_EGRESS, 1, (), f"resubmit(,{t.ACCEPTED_EGRESS_SWITCH})")
    # A frame already tracked (e.g. by another bridge) is looked up again in our zone.
    out.add(t.BASE_EGRESS, 110, [("ct_state", TRACKED)], f"ct_clear,resubmit(,{t.BASE_EGRESS})")
    for table in (t.RULES_EGRESS, t.RULES_INGRESS):
        out.add(table, 50, [("ct_state", INVALID)], f"resubmit(,{t.DROPPED})")
    return out.flows


def dispatch_flows(
    cookie: int, vlan: int, ports: Iterable[tuple[LocalPort, int]], *, slot_link: bool = False
) -> list[Flow]:
    """Table 60 and 73: traffic to a protected port's MACs turns to its ingress tables.

    One network's ports, in port-id order: a MAC two ports claim goes to the first.

    With the slot link (twin switch slots, see build.py), the frame is first copied, still
    tagged, to the other slot, which runs the port's ingress itself (and drops it if it
    lacks the port's device), unless it came from patch-tun (the other slot got that frame
    from the host NIC): table 60 has the flow without the copy one priority higher for it.
    Table 73 sees only what a local port sent, so it always copies.
    """
    out = _Out(cookie)
    dl_vlan, reg6 = str(vlan), f"{vlan:#x}"
    copy = f"output:{SLOT_LINK}," if slot_link else ""
    claimed: set[str] = set()
    for port, number in ports:
        reg5 = f"{number:#x}"
        for mac in allowed_macs(port):
            if mac in claimed:
                continue
            claimed.add(mac)
            dst = [("dl_vlan", dl_vlan), ("dl_dst", mac)]
            ingress = (
                f"set_field:{reg5}->reg5,set_field:{reg6}->reg6,pop_vlan,"
                f"resubmit(,{t.BASE_INGRESS})"
            )
            out.add(t.FW_DISPATCH, 90, dst, copy + ingress)
            if slot_link:
                out.add(t.FW_DISPATCH, 91, [*dst, ("in_port", PATCH_TUN)], ingress)
            out.add(
                t.ACCEPT_OR_INGRESS,
                100,
                [*dst, ("reg6", reg6)],
                f"{copy}set_field:{reg5}->reg5,pop_vlan,resubmit(,{t.BASE_INGRESS})",
            )
    return out.flows


def port_flows(inputs: PortInputs) -> list[Flow]:
    """Every flow of one protected port, but its MAC dispatch (see dispatch_flows)."""
    out = _Out(inputs.cookie)
    port, zone = inputs.port, inputs.vlan
    reg5 = ("reg5", f"{inputs.number:#x}")
    dev = port.device
    to_vm = f"output:{dev}"
    src = [("in_port", dev), reg5]

    out.add(
        t.FW_DISPATCH,
        100,
        [("in_port", dev)],
        f"set_field:{inputs.number:#x}->reg5,set_field:{zone:#x}->reg6,resubmit(,{t.BASE_EGRESS})",
    )

    # 71: anti-spoofing (MAC, IP, ARP), DHCP client allowed, DHCP server banned.
    pairs = address_pairs(port)
    for mac, ip in pairs:
        arp = [*src, ("dl_type", ARP), ("dl_src", mac), ("arp_spa", ip)]
        out.add(t.BASE_EGRESS, 95, arp, f"resubmit(,{t.ACCEPTED_EGRESS_SWITCH})")
        ip_match = [*src, ("dl_type", IP), ("dl_src", mac), ("nw_src", ip)]
        out.add(t.BASE_EGRESS, 65, ip_match, f"ct(table={t.RULES_EGRESS},zone={zone})")
    for mac in sorted({mac for mac, _ in pairs}):
        out.add(
            t.BASE_EGRESS,
            95,
            [*src, ("dl_type", RARP), ("dl_src", mac)],
            f"resubmit(,{t.ACCEPTED_EGRESS_SWITCH})",
        )
    dhcp_from = {*pairs, (canonical_value("dl_src", port.mac), UNSPECIFIED)}
    for mac, ip in sorted(dhcp_from):
        dhcp = [*src, ("dl_type", IP), ("nw_proto", UDP), ("dl_src", mac), ("nw_src", ip)]
        dhcp += [("tp_src", "68"), ("tp_dst", "67")]
        out.add(t.BASE_EGRESS, 80, dhcp, f"resubmit(,{t.ACCEPT_OR_INGRESS})")
    server = [*src, ("dl_type", IP), ("nw_proto", UDP), ("tp_src", "67"), ("tp_dst", "68")]
    out.add(t.BASE_EGRESS, 70, server, f"resubmit(,{t.DROPPED})")
    out.add(t.BASE_EGRESS, 10, src, f"ct_clear,resubmit(,{t.DROPPED})")

    # 73: accepted egress, to no protected port of this host: commit and switch.
    out.add(
        t.ACCEPT_OR_INGRESS,
        90,
        [("ct_state", NEW_NOT_EST), ("dl_type", IP), reg5],
        f"ct(commit,zone={zone}),resubmit(,{t.ACCEPTED_EGRESS})",
    )
    out.add(t.ACCEPT_OR_INGRESS, 80, [reg5], f"resubmit(,{t.ACCEPTED_EGRESS_SWITCH})")

    # 81: ingress base.
    out.add(t.BASE_INGRESS, 100, [("dl_type", ARP), reg5], to_vm)
    offer = [("dl_type", IP), ("nw_proto", UDP), reg5, ("tp_src", "67"), ("tp_dst", "68")]
    out.add(t.BASE_INGRESS, 95, offer, to_vm)
    out.add(
        t.BASE_INGRESS,
        90,
        [("ct_state", NOT_TRACKED), ("dl_type", IP), reg5],
        f"ct(table={t.RULES_INGRESS},zone={zone})",
    )
    out.add(t.BASE_INGRESS, 80, [("ct_state", TRACKED), reg5], f"resubmit(,{t.RULES_INGRESS})")

    # 72 and 82: conntrack verdicts, then the rules.
    for table, established in (
        (t.RULES_EGRESS, f"resubmit(,{t.ACCEPTED_EGRESS_SWITCH})"),
        (t.RULES_INGRESS, to_vm),
    ):
        out.add(table, 50, [reg5, ("ct_mark", CT_MARK_INVALID)], f"resubmit(,{t.DROPPED})")
        for state in (EST_REPLY, RELATED):
            match = [("ct_state", state), ("ct_mark", CT_MARK_NORMAL), ("ct_zone", f"{zone:#x}")]
            out.add(table, 50, [*match, reg5], established)
        out.add(table, 40, [("ct_state", NOT_EST), reg5], f"resubmit(,{t.DROPPED})")
        out.add(
            table,
            40,
            [("ct_state", EST), ("dl_type", IP), reg5],
            f"ct(commit,zone={zone},exec(set_field:{CT_MARK_INVALID}->ct_mark))",
        )
    return out.flows


def rule_flows(inputs: RuleInputs) -> list[Flow]:
    """One protected port's rules: plain ones, and remote-group ones (clause 2/2 and the
    conj_id flows that accept what completes a conjunction)."""
    template = inputs.template or rule_template(inputs.rules, inputs.conj)
    make = rule_flow_maker(inputs)
    return [make(key, action) for key, action in template.items()]


def rule_flow_maker(inputs: RuleInputs) -> Callable[[RuleKey, RuleAction], Flow]:
    """The port's flow of one template entry."""
    reg5 = ("reg5", f"{inputs.number:#x}")
    cookie, to_vm = inputs.cookie, f"output:{inputs.device}"
    accepts = {
        (ingress, state): _accept(ingress, state, inputs.vlan, to_vm)
        for ingress in (False, True)
        for state in RULE_STATES
    }

    def make(key: RuleKey, action: RuleAction) -> Flow:
        table, priority, match = key
        conj, ingress, state, at = action
        actions = conj or accepts[ingress, state]
        return Flow(BR_INT, table, priority, (*match[:at], reg5, *match[at:]), actions, cookie)

    return make


def template_delta(old: RuleTemplate, new: RuleTemplate) -> tuple[list[RuleKey], list[RuleKey]]:
    """(entries of `old` that go or change, entries of `new` that come or change)."""
    gone = [k for k, a in old.items() if new.get(k) != a]
    come = [k for k, a in new.items() if old.get(k) != a]
    return gone, come


@lru_cache(maxsize=256)
def rule_template(rules: tuple[RuleView, ...], conj: tuple[tuple[str, int], ...]) -> RuleTemplate:
    """The rule flows of any port with these rules, without the port (see RuleKey)."""
    bases = dict(conj)
    clauses: dict[tuple[int, int, Match, bool, str], set[int]] = {}
    accepts: set[tuple[str, int, int]] = set()  # (direction, priority offset, conj id base)
    plain: dict[tuple[int, int, Match], tuple[bool, str]] = {}
    for rule in rules:
        ingress = rule.direction == INGRESS
        table = t.RULES_INGRESS if ingress else t.RULES_EGRESS
        matches = _rule_matches(rule, "")
        if rule.remote_group:
            base = bases.get(rule.remote_group)
            if base is None:
                continue
            offset = priority_offset(rule, conjunction=True)
            accepts.add((rule.direction, offset, base))
            for fields in matches:
                for k, state in enumerate(RULE_STATES):
                    match = _sorted([*fields, ("ct_state", state)])
                    clause = (table, RULE_PRIORITY + offset, match, ingress, state)
                    clauses.setdefault(clause, set()).add(base + 2 * offset + k)
            continue
        priority = RULE_PRIORITY + priority_offset(rule)
        for fields in matches:
            for state in RULE_STATES:
                plain[table, priority, _sorted([*fields, ("ct_state", state)])] = (ingress, state)
    out: dict[RuleKey, RuleAction] = {}
    for key, (ingress, state) in sorted(plain.items()):
        out[key] = ("", ingress, state, _reg5_at(key[2]))
    for (table, priority, match, ingress, state), ids in sorted(clauses.items()):
        conj_actions = ",".join(f"conjunction({i},2/2)" for i in sorted(ids))
        out[table, priority, match] = (conj_actions, ingress, state, _reg5_at(match))
    for direction, offset, base in sorted(accepts):
        ingress = direction == INGRESS
        table = t.RULES_INGRESS if ingress else t.RULES_EGRESS
        for k, state in enumerate(RULE_STATES):
            accept = _sorted(
                [("conj_id", f"{base + 2 * offset + k:#x}"), ("ct_state", state), ("dl_type", IP)]
            )
            out[table, RULE_PRIORITY + offset, accept] = ("", ingress, state, _reg5_at(accept))
    return out


def _sorted(fields: Iterable[tuple[str, str]]) -> Match:
    """A rule flow's match without reg5 (the template's; the port's goes in at _reg5_at)."""
    return tuple(sorted(f for f in fields if f[0] != "reg5"))


def _reg5_at(match: Match) -> int:
    return sum(1 for name, _ in match if name < "reg5")


def _accept(ingress: bool, state: str, zone: int, to_vm: str) -> str:
    if not ingress:
        return f"resubmit(,{t.ACCEPT_OR_INGRESS})"
    if state == NEW_NOT_EST:
        return f"ct(commit,zone={zone}),{to_vm},resubmit(,{t.ACCEPTED_INGRESS})"
    return to_vm


def member_flows(inputs: MemberInputs) -> list[Flow]:
    """Clause 1/2 of the remote-group conjunctions: one flow per address and ct state,
    naming every conjunction (group) the address is a member of."""
    out = _Out(inputs.cookie)
    ingress = inputs.direction == INGRESS
    table = t.RULES_INGRESS if ingress else t.RULES_EGRESS
    field = "nw_src" if ingress else "nw_dst"
    priority = RULE_PRIORITY + inputs.offset
    step = 2 * inputs.offset
    for prefix, bases in inputs.entries:
        match = [("dl_type", IP)] + ([(field, prefix)] if prefix else [])
        for k, state in enumerate(RULE_STATES):
            actions = ",".join(f"conjunction({b + step + k},1/2)" for b in bases)
            out.add(table, priority, [*match, ("ct_state", state)], actions)
    return out.flows
