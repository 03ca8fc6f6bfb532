"""Security groups on a real lab: groups through the API, traffic verdicts and streams."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from flowkeeper.client import Client
from flowkeeper.lab import trafficrun
from flowkeeper.lab.lab import Lab
from flowkeeper.lab.state import LabState, VmState

FIREWALL_TABLES = (60, 71, 72, 73, 81, 82, 91, 92, 93, 94)  # neutron-lib's ovs_constants
ENFORCE_S = 20.0  # bound on a rule or membership change reaching the agents


# --- the API ---------------------------------------------------------------------
def rule(
    direction: str,
    protocol: str | None = None,
    port: int | None = None,
    *,
    remote_group: str | None = None,
    remote_ip_prefix: str | None = None,
) -> dict[str, Any]:
    """One IPv4 rule's fields (a tcp/udp rule for one port)."""
    return {
        "direction": direction,
        "ethertype": "IPv4",
        "protocol": protocol,
        "port_range_min": port,
        "port_range_max": port,
        "remote_group_id": remote_group,
        "remote_ip_prefix": remote_ip_prefix,
    }


def make_group(client: Client, name: str, rules: list[dict[str, Any]]) -> str:
    """A group with exactly these rules (a new group's own egress rules removed)."""
    group = client.request("POST", "/v1/security-groups", {"name": name})
    for old in group["rules"]:
        delete_rule(client, group["id"], old["id"])
    for spec in rules:
        add_rule(client, group["id"], spec)
    return str(group["id"])


def add_rule(client: Client, group_id: str, spec: dict[str, Any]) -> str:
    body = {k: v for k, v in spec.items() if v is not None}
    made = client.request("POST", f"/v1/security-groups/{group_id}/rules", body)
    return str(made["id"])


def delete_rule(client: Client, group_id: str, rule_id: str) -> None:
    client.request("DELETE", f"/v1/security-groups/{group_id}/rules/{rule_id}")


def set_port(client: Client, port_id: str, **fields: Any) -> None:
    """PATCH a port's security_groups / allowed_address_pairs / port_security_enabled."""
    client.request("PATCH", f"/v1/ports/{port_id}", fields)


# --- traffic -----------------------------------------------------------------------
def verdict(vm: VmState, dst: VmState, port: int, timeout: float = 1.0) -> str:
    result = trafficrun.once(
        vm, "connect", "--dst", dst.ip, "--port", str(port), "--timeout", str(timeout)
    )
    return str(result["verdict"])


def eventually(check: Callable[[], bool], what: str, timeout: float = ENFORCE_S) -> None:
    """Poll until `check` holds (bounded); the check itself is the assertion."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.2)


def becomes(src: VmState, dst: VmState, port: int, want: str) -> None:
    eventually(lambda: verdict(src, dst, port) == want, f"{src.name} -> {dst.name}:{port} {want}")


@dataclass
class Stream:
    """One long-lived counted TCP stream between two VMs."""

    server: trafficrun.Background
    client: trafficrun.Background

    def results(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.client.result(), self.server.result()


def stream(
    state: LabState,
    src: VmState,
    dst: VmState,
    port: int,
    seconds: float,
    *,
    name: str,
    rate: int = 100_000,
    grace: float = 8.0,
) -> Stream:
    total = seconds + grace + 2
    server = trafficrun.start(
        state,
        dst,
        f"{name}-server",
        "stream-server",
        "--port",
        str(port),
        "--seconds",
        str(total),
        seconds=total,
        ready=True,
    )
    client = trafficrun.start(
        state,
        src,
        f"{name}-client",
        "stream-client",
        "--dst",
        dst.ip,
        "--port",
        str(port),
        "--seconds",
        str(seconds),
        "--rate",
        str(rate),
        "--grace",
        str(grace),
        seconds=seconds + grace + 5,
    )
    return Stream(server, client)


def ok(client_side: dict[str, object], server_side: dict[str, object]) -> None:
    """A stream that lost nothing: no reset, every byte sent arrived, in order."""
    assert client_side["resets"] == 0 and server_side["resets"] == 0, (client_side, server_side)
    assert client_side["error"] == "", client_side
    assert server_side["sequence_errors"] == 0, server_side
    assert server_side["received"] == client_side["sent"] == client_side["server_count"], (
        client_side,
        server_side,
    )


def udp_counter(state: LabState, vm: VmState, port: int, seconds: float, name: str) -> Any:
    return trafficrun.start(
        state,
        vm,
        name,
        "udp-count",
        "--port",
        str(port),
        "--seconds",
        str(seconds),
        seconds=seconds,
        ready=True,
    )


def _spoof_args(
    src_mac: str, src_ip: str, dst: VmState, port: int, count: int, interval: float, tag: str
) -> list[str]:
    """The traffic tool's spoof-send arguments: `count` tagged UDP datagrams to `dst`."""
    return [
        "spoof-send",
        *("--src-mac", src_mac, "--src-ip", src_ip, "--dst-mac", dst.mac, "--dst-ip", dst.ip),
        *("--port", str(port), "--count", str(count), "--interval", str(interval)),
        *("--tag", tag),
    ]


def send_udp(
    src: VmState,
    dst: VmState,
    port: int,
    *,
    tag: str,
    src_mac: str | None = None,
    src_ip: str | None = None,
    count: int = 5,
    interval: float = 0.01,
) -> None:
    args = _spoof_args(src_mac or src.mac, src_ip or src.ip, dst, port, count, interval, tag)
    trafficrun.once(src, *args, timeout=count * interval + 15)


def udp_sender(
    state: LabState, src: VmState, dst: VmState, port: int, seconds: float, *, name: str
) -> trafficrun.Background:
    """A steady UDP sender (every 20 ms for `seconds`), tagged with its name."""
    args = _spoof_args(src.mac, src.ip, dst, port, int(seconds / 0.02), 0.02, name.replace("-", ""))
    return trafficrun.start(state, src, name, *args, seconds=seconds + 5)


# --- flows -------------------------------------------------------------------------
def firewall_flows(lab: Lab, state: LabState, host: str) -> list[str]:
    """br-int's flows in the firewall's tables, rendered."""
    from flowkeeper.naming import BR_INT

    flows = lab.bridge(state.host(host), BR_INT).dump_flows()
    return [f.render() for f in flows if f.table in FIREWALL_TABLES]
