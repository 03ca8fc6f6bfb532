"""build_flows, kept up to date network by network instead of recomputed whole.

At 20,000 flows a full build plus a full diff costs the agent ~60 ms of CPU per event
(more on a busy host), though a port change touches a handful of flows. The view is cut
into the same parts build_flows is made of: the host-wide base, one part per network,
and with the firewall on, per protected port one part of base flows and one of rule
flows, and the remote groups' members in buckets of addresses (a member change rebuilds
the few buckets it concerns; a rule change makes, for each port of the group, only the
flows the rule adds or takes away, from a template of its rules without the port). A
part is rebuilt only when its inputs changed, and the flows that changed are reported,
so that a diff against installed flows known to match the previous result can look at
those keys alone. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from flowkeeper.flows.flowset import FlowDelta, FlowSet, same_but_cookie
from flowkeeper.flows.record import Flow, FlowKey
from flowkeeper.pipeline import firewall as fw
from flowkeeper.pipeline.build import Options, base_flows, by_network, network_flows
from flowkeeper.pipeline.view import HostView, tunnel_peers

PartName = tuple[str, str]  # (kind, id)
BASE: PartName = ("base", "")


@dataclass
class _Part:
    inputs: object
    flows: dict[FlowKey, Flow]


@dataclass
class IncrementalBuild:
    """`desired` equals build_flows(view) of the last view given to update()."""

    desired: FlowSet = field(default_factory=FlowSet)
    _parts: dict[PartName, _Part] = field(default_factory=dict)
    # A port's rule flows are not kept: they are its RuleInputs' template, made again
    # when needed. A rule change then costs the flows it changes: the template delta,
    # worked out once per set of groups, made for each port that has them.
    _rules: dict[str, fw.RuleInputs] = field(default_factory=dict)
    _plan: fw.FirewallPlan | None = None

    def update(self, view: HostView) -> set[FlowKey]:
        """Bring `desired` to build_flows(view); return the keys whose flow changed."""
        base_key = (Options.of(view), frozenset(tunnel_peers(view)))
        wanted: dict[PartName, tuple[object, Callable[[], list[Flow]]]] = {
            BASE: (base_key, lambda: base_flows(view))
        }
        firewall = fw.plan(view, self._plan)
        self._plan = firewall
        for inputs in by_network(view, firewall.numbers):
            wanted[("net", inputs.network.id)] = (inputs, partial(network_flows, inputs))
        for port_id, port in firewall.ports.items():
            wanted[("port", port_id)] = (port, partial(fw.port_flows, port))
        for (direction, offset, bucket), members in firewall.members.items():
            name = ("members", f"{direction}/{offset}/{bucket}")
            wanted[name] = (members, partial(fw.member_flows, members))
        gone: list[tuple[FlowKey, Flow]] = []  # flows that go or change
        come: list[Flow] = []  # flows that come or change
        for name in [n for n in self._parts if n not in wanted]:
            gone.extend(self._parts.pop(name).flows.items())
        for name, (key, make) in wanted.items():
            part = self._parts.get(name)
            if part is not None and part.inputs == key:
                continue
            after = {f.key: f for f in make()}
            if part is not None:
                gone.extend((k, f) for k, f in part.flows.items() if after.get(k) != f)
            before = part.flows if part is not None else {}
            come.extend(f for k, f in after.items() if before.get(k) != f)
            self._parts[name] = _Part(key, after)
        self._update_rules(firewall.rules, gone, come)
        # All removals before all additions: a flow may pass from one part to another
        # (a device re-used on another network keeps its in_port flow's key).
        changed: set[FlowKey] = set()
        desired = self.desired
        for key, flow in gone:
            changed.add(key)
            if desired.get(key) == flow:
                desired.discard(key)
        for flow in come:
            changed.add(flow.key)
            desired.add(flow)
        return changed

    def _update_rules(
        self,
        wanted: dict[str, fw.RuleInputs],
        gone: list[tuple[FlowKey, Flow]],
        come: list[Flow],
    ) -> None:
        deltas: dict[tuple[int, int], tuple[list[fw.RuleKey], list[fw.RuleKey]]] = {}
        for port_id in [p for p in self._rules if p not in wanted]:
            gone.extend((f.key, f) for f in fw.rule_flows(self._rules.pop(port_id)))
        for port_id, new in wanted.items():
            old = self._rules.get(port_id)
            if old is not None and (old is new or old == new):
                continue
            self._rules[port_id] = new
            if old is None:
                come.extend(fw.rule_flows(new))
            elif old.same_port(new):
                pair = (id(old.template), id(new.template))
                delta = deltas.get(pair)
                if delta is None:
                    delta = deltas[pair] = fw.template_delta(old.template, new.template)
                make_old, make_new = fw.rule_flow_maker(old), fw.rule_flow_maker(new)
                for k in delta[0]:
                    flow = make_old(k, old.template[k])
                    gone.append((flow.key, flow))
                come.extend(make_new(k, new.template[k]) for k in delta[1])
            else:
                before = {f.key: f for f in fw.rule_flows(old)}
                after = {f.key: f for f in fw.rule_flows(new)}
                gone.extend((k, f) for k, f in before.items() if after.get(k) != f)
                come.extend(f for k, f in after.items() if before.get(k) != f)


def diff_keys(desired: FlowSet, installed: FlowSet, keys: set[FlowKey]) -> FlowDelta:
    """diff(desired, installed, ignore_cookie=True) when the two may differ only at `keys`."""
    delta = FlowDelta()
    for key in sorted(keys):
        want, have = desired.get(key), installed.get(key)
        if want is None:
            if have is not None:
                delta.delete.append(have)
        elif have is None:
            delta.add.append(want)
        elif have != want and not same_but_cookie(have, want):
            delta.modify.append(want)
    return delta
