"""Security groups through a real server: a host's view and watch carry exactly the groups
its ports use and the members of the groups those name as remote groups; a host that
neither uses nor references a group hears nothing of it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from flowkeeper.client import AsyncClient, Client, Event
from flowkeeper.model import GroupMember, SecurityGroup, View
from tests.controlplane.conftest import TOKEN, ServerFactory
from tests.unit.cpfake import Replay, normal

HOSTS = ("h1", "h2", "h3", "h4", "h5")
Inbox = dict[str, list[Event]]


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """A bound on a wait, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def groups_of(view: View) -> list[str]:
    return [g.id for g in view.security_groups]


def members_of(view: View) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(m.group_id, m.port_id, m.ips) for m in view.members]


def setup(c: Client) -> tuple[str, str]:
    """web (ingress tcp 80 from db), db and other; p1 on h1 in web, p2 on h2 in db, p3 on
    h3 in other, p4 on h4 without port security (net1, with p1). h5 has no port."""
    net1 = c.create_network("net1", "vxlan", cidr="198.19.1.0/24")
    net2 = c.create_network("net2", "vxlan", cidr="198.19.2.0/24")
    for gid in ("web", "db", "other"):
        c.create_security_group(gid, id=gid)
    c.create_security_group_rule(
        "web",
        direction="ingress",
        protocol="tcp",
        port_range_min=80,
        port_range_max=80,
        remote_group_id="db",
    )
    c.create_port(
        net1.id, "h1", "fa:16:3e:00:00:01", ["198.19.1.1"], id="p1", security_groups=["web"]
    )
    c.create_port(
        net2.id, "h2", "fa:16:3e:00:00:02", ["198.19.2.2"], id="p2", security_groups=["db"]
    )
    c.create_port(
        net2.id, "h3", "fa:16:3e:00:00:03", ["198.19.2.3"], id="p3", security_groups=["other"]
    )
    c.create_port(
        net1.id,
        "h4",
        "fa:16:3e:00:00:04",
        ["198.19.1.4"],
        id="p4",
        port_security_enabled=False,
        security_groups=[],
    )
    for i, h in enumerate(HOSTS, start=1):
        c.register_host(h, f"198.18.0.{i}")
    return net1.id, net2.id


def test_a_hosts_view_holds_exactly_its_groups_and_referenced_members(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    c = server.client()
    setup(c)
    views = {h: c.view(h) for h in HOSTS}
    assert groups_of(views["h1"]) == ["web"]
    assert members_of(views["h1"]) == [("db", "p2", ("198.19.2.2",))]
    remotes = [r.remote_group_id for r in views["h1"].security_groups[0].rules]
    assert [r for r in remotes if r] == ["db"]  # and Neutron's egress rules of a new group
    assert (groups_of(views["h2"]), members_of(views["h2"])) == (["db"], [])
    assert (groups_of(views["h3"]), members_of(views["h3"])) == (["other"], [])
    for h in ("h4", "h5"):  # no port with port security: no group, no member
        assert (groups_of(views[h]), members_of(views[h])) == ([], [])


def test_a_hosts_watch_carries_exactly_its_groups_and_referenced_members(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(heartbeat_s=0.2)
    c = server.client()
    _net1, net2 = setup(c)
    start = c.revision()
    first = {h: c.view(h) for h in HOSTS}

    async def scenario() -> tuple[Inbox, int]:
        inbox: Inbox = {h: [] for h in HOSTS}
        heard: dict[str, int] = {h: -1 for h in HOSTS}

        async def follow(ac: AsyncClient, host: str) -> None:
            async for event in ac.watch(host, start):
                inbox[host].append(event)
                if event.kind == "heartbeat":
                    heard[host] = event.revision

        async with AsyncClient(server.url, TOKEN) as ac:
            tasks = [asyncio.create_task(follow(ac, h)) for h in HOSTS]
            await until(lambda: all(r >= start for r in heard.values()))  # all subscribed
            # a new member of db (on h3, which then uses db too): h1 references db
            await ac.create_port(
                net2, "h3", "fa:16:3e:00:00:05", ["198.19.2.5"], id="p5", security_groups=["db"]
            )
            # db's rules now name web: db's users (h2, h3) get web's members
            await asyncio.to_thread(
                c.create_security_group_rule, "db", direction="ingress", remote_group_id="web"
            )
            # a member of db joins another group: its IPs in db are the same, h1 hears nothing
            await asyncio.to_thread(c.update_port, "p2", security_groups=["db", "other"])
            # a rule of a group nobody references or uses
            await asyncio.to_thread(c.create_security_group, "lonely", id="lonely")
            await asyncio.to_thread(
                c.create_security_group_rule, "lonely", direction="egress", remote_group_id="web"
            )
            end = await asyncio.to_thread(c.revision)
            await until(lambda: all(r >= end for r in heard.values()))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return inbox, end

    inbox, end = asyncio.run(scenario())

    def sg_messages(host: str) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        for e in inbox[host]:
            if isinstance(e.object, SecurityGroup):
                out.append((e.kind, e.op, e.object.id))
            elif isinstance(e.object, GroupMember):
                out.append((e.kind, e.op, f"{e.object.group_id}/{e.object.port_id}"))
        return out

    assert sg_messages("h1") == [("member", "put", "db/p5")]  # p2's groups: db kept
    assert sg_messages("h2") == [
        ("security_group", "put", "db"),
        ("member", "put", "web/p1"),
        ("security_group", "put", "other"),
    ]
    assert sg_messages("h3") == [
        ("security_group", "put", "db"),
        ("security_group", "put", "db"),
        ("member", "put", "web/p1"),
    ]
    assert sg_messages("h4") == [] and sg_messages("h5") == []
    assert all(e.kind == "heartbeat" for e in inbox["h5"])
    for h in HOSTS:  # the first view plus the stream is the last view
        replay = Replay(first[h])
        replay.apply([e for e in inbox[h] if e.kind != "heartbeat"])
        assert replay.as_view(end) == normal(c.view(h)), h
