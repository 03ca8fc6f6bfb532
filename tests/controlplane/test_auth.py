"""Per-host, admin and read-only tokens on a real server: who may do what, and revocation."""

from __future__ import annotations

import asyncio

import pytest

from flowkeeper.client import ApiError, AsyncClient, Client, ServerUnavailable
from tests.controlplane.conftest import LiveServer, ServerFactory


def tokens(server: LiveServer) -> tuple[Client, Client, Client, Client]:
    """admin (bootstrap), host h1, host h2, read-only."""
    admin = server.client()
    h1 = admin.create_token("host", "h1")["secret"]
    h2 = admin.create_token("host", "h2")["secret"]
    ro = admin.create_token("read-only")["secret"]
    return admin, server.client(h1), server.client(h2), server.client(ro)


def refused(call: object, status: int = 403) -> str:
    assert callable(call)
    with pytest.raises(ApiError) as exc:
        call()
    assert exc.value.status == status, exc.value
    assert "\n" not in exc.value.message
    return exc.value.message


def test_a_host_token_cannot_repoint_another_hosts_tunnel(server: LiveServer) -> None:
    """With one shared token, agent h2 could re-register h1 with its own tunnel IP and so
    draw h1's traffic. A host token registers and heartbeats only its own host."""
    admin, h1, h2, _ = tokens(server)
    h1.register_host("h1", "198.18.0.1")
    rev = admin.revision()
    message = refused(lambda: h2.register_host("h1", "198.18.0.66"))
    assert "(host h2) may not act as host 'h1'" in message
    assert admin.get_host("h1").tunnel_ip == "198.18.0.1"
    assert admin.revision() == rev
    h2.register_host("h2", "198.18.0.2")  # its own host: fine, heartbeats too
    h2.register_host("h2", "198.18.0.2", state="in-sync", revision=rev)
    assert admin.get_host("h2").state == "in-sync"
    # an admin still may (operators re-address hosts)
    admin.register_host("h1", "198.18.0.11")
    assert admin.get_host("h1").tunnel_ip == "198.18.0.11"


def test_host_tokens_read_only_their_own_view_and_set_their_own_ports(
    server: LiveServer,
) -> None:
    admin, h1, h2, ro = tokens(server)
    net = admin.create_network("net1", "vxlan", cidr="198.19.1.0/24")
    p1 = admin.create_port(net.id, "h1", "fa:16:3e:00:00:01", ["198.19.1.10"])
    p2 = admin.create_port(net.id, "h2", "fa:16:3e:00:00:02", ["198.19.1.11"])
    assert [p.id for p in h1.view("h1").ports] == sorted([p1.id, p2.id])
    assert "may not act as host 'h1'" in refused(lambda: h2.view("h1"))
    assert h1.set_port_status(p1.id, "ACTIVE").status == "ACTIVE"
    message = refused(lambda: h2.set_port_status(p1.id, "DOWN"))
    assert f"may not set the status of port {p1.id!r}: it is bound to 'h1'" in message
    assert admin.get_port(p1.id).status == "ACTIVE"
    assert refused(lambda: h1.set_port_status("nope", "DOWN"), 404) == "port 'nope' not found"
    # a host token touches nothing shared, nor reads it
    for call in (
        lambda: h1.create_network("net2", "gre"),
        h1.list_networks,
        h1.list_hosts,
        lambda: h1.bind_port(p2.id, "h1"),
        lambda: h1.delete_port(p2.id),
        lambda: h1.create_port(net.id, "h1", "fa:16:3e:00:00:03"),
        h1.list_tokens,
        lambda: h1.create_token("admin"),
    ):
        refused(call)
    # read-only reads everything but tokens, writes nothing
    assert len(ro.list_ports()) == 2 and ro.view("h2").revision == admin.revision()
    assert "may only read" in refused(lambda: ro.set_port_status(p2.id, "ACTIVE"))
    assert "may only read" in refused(lambda: ro.register_host("h3", "198.18.0.3"))
    assert "may only read" in refused(ro.list_tokens)
    assert admin.get_port(p2.id).status == "DOWN"


def test_token_list_never_shows_secrets_and_revocation_is_immediate(
    server: LiveServer,
) -> None:
    admin = server.client()
    made = admin.create_token("host", "h1", note="rack 1")
    secret = made.pop("secret")
    listed = admin.list_tokens()
    assert listed == [made]
    assert secret not in str(listed) and "digest" not in listed[0]
    h1 = server.client(secret)
    h1.register_host("h1", "198.18.0.1")
    assert admin.revoke_token(made["id"]) == {"revoked": made["id"], "closed_streams": 0}
    assert refused(lambda: h1.register_host("h1", "198.18.0.1"), 401) == (
        "unknown or revoked token"
    )
    assert admin.list_tokens() == []
    assert "not found" in refused(lambda: admin.revoke_token(made["id"]), 404)
    assert "not revocable" in refused(lambda: admin.revoke_token("bootstrap"), 409)
    assert "expected a token id" in refused(lambda: admin.revoke_token("x"), 400)
    assert refused(lambda: admin.create_token("host"), 400) == "token: missing field 'host'"
    assert refused(lambda: admin.create_token("admin", "h1"), 400) == (
        "token: unknown field 'host'"
    )


def test_tokens_are_stored_as_hashes_and_outlive_the_server(
    server_factory: ServerFactory,
) -> None:
    first = server_factory(name="a")
    made = first.client().create_token("read-only")
    second = server_factory(name="a")  # another server on the same store loads its tokens
    assert second.client(made["secret"]).list_networks() == []
    raw = b"".join(p.read_bytes() for p in first.db.parent.iterdir() if p.is_file())
    assert made["id"].encode() in raw
    assert made["secret"].encode() not in raw


def test_revoking_a_token_ends_its_watch_streams(server: LiveServer) -> None:
    admin = server.client()
    made = admin.create_token("host", "h1")
    secret = made["secret"]
    admin.register_host("h1", "198.18.0.1")  # as its agent does before it watches

    async def scenario() -> tuple[dict[str, object], str]:
        async with AsyncClient(server.url, secret, timeout=10) as ac:
            stream = ac.watch("h1", 0, idle_timeout=20)
            first = await anext(stream)
            assert first.kind == "heartbeat"
            done = await asyncio.to_thread(admin.revoke_token, made["id"])
            with pytest.raises(ServerUnavailable) as exc:
                await asyncio.wait_for(anext(stream), 10)
            return done, str(exc.value)

    done, why = asyncio.run(scenario())
    assert done["closed_streams"] == 1
    assert why.startswith("watch of h1 at ") or "ended the watch stream" in why, why
    assert server.running.state.streams.count(made["id"]) == 0
