"""The lab with TLS on: agents and simulated hosts reach the server over HTTPS with their CA,
each with a host token of its own, and VMs ping each other."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from flowkeeper.client import ApiError, Client
from flowkeeper.lab.procs import cmdline
from tests.conftest import LabFactory, wait_for

pytestmark = pytest.mark.lab


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_lab_over_tls_with_a_token_per_host(lab_factory: LabFactory) -> None:
    lab, state = lab_factory(hosts=2, vms_per_host=1, tls=True, virtual_hosts=2, virtual_ports=2)
    assert state.server_url.startswith("https://127.0.0.1:") and state.ca
    a = next(v for v in state.vms if v.host == "h1")
    b = next(v for v in state.vms if v.host == "h2")
    assert lab.ping(a.name, b.name, count=20, interval=0.02).lost <= 1
    assert lab.ping(b.name, a.name, count=10, interval=0.02).lost == 0

    admin = lab.client(state)
    hosts = {t["host"] for t in admin.list_tokens() if t["role"] == "host"}
    assert hosts == {"h1", "h2", "v0000", "v0001"}
    # The simulated hosts bound their ports with their own tokens.
    wait_for(
        lambda: all(p.status == "ACTIVE" for p in admin.list_ports() if p.host.startswith("v")),
        what="the virtual hosts' ports ACTIVE",
    )
    tls_dir = Path(state.ca).parent
    assert mode(tls_dir) == 0o700
    assert all(mode(p) == 0o600 for p in tls_dir.iterdir())
    assert mode(Path(state.dir) / "simhosts.tokens") == 0o600
    for host, other in (("h1", "h2"), ("h2", "h1")):
        h = state.host(host)
        token_file = Path(h.dir) / "agent.token"
        assert mode(token_file) == 0o600
        argv = cmdline(h.pids["agent"])
        assert f"--token-file {token_file}" in argv and f"--ca {state.ca}" in argv
        own = Client(state.server_url, token_file.read_text().strip(), ca=state.ca)
        assert own.view(host).revision > 0
        with pytest.raises(ApiError) as exc:
            own.register_host(other, "198.18.0.99")
        assert exc.value.status == 403
    assert admin.get_host("h2").tunnel_ip == state.host("h2").tunnel_ip

    # A restarted agent reuses its token and the CA; traffic still flows.
    lab.restart_agent("h1")
    wait_for(lambda: admin.get_host("h1").state == "in-sync", what="h1 in sync again")
    assert lab.ping(a.name, b.name, count=10, interval=0.02).lost == 0
