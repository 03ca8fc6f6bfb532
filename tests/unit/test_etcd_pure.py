"""The etcd store's pure parts: URLs, key layout, segment allocation, events by revision,
the ring of recent revisions."""

from __future__ import annotations

import pytest

from flowkeeper.errors import UsageError
from flowkeeper.model import Network
from flowkeeper.store.etcd_events import RawEvent, Ring, group, page
from flowkeeper.store.etcd_keys import (
    DEFAULT_PREFIX,
    Keys,
    encode_value,
    lowest_free,
    parse_url,
    range_end,
    segment_of,
)


def test_urls() -> None:
    url = parse_url("etcd://127.0.0.1:2379,h2:2380/lab/one")
    assert url.endpoints == (("127.0.0.1", 2379), ("h2", 2380)) and url.prefix == "lab/one"
    assert parse_url("etcd://h:1").prefix == DEFAULT_PREFIX
    assert parse_url("etcd://h:1/").prefix == DEFAULT_PREFIX
    assert url.names() == "127.0.0.1:2379,h2:2380"
    for bad in (
        "etcd://",
        "etcd://h",
        "etcd://h:x",
        "etcd://h:70000",
        "etcd://:1",
        "etcd://h:1,h:1",
        "etcd://h:1/a//b",
        "etcd://h:1/a b",
        "http://h:1",
    ):
        with pytest.raises(UsageError) as info:
            parse_url(bad)
        text = str(info.value)
        assert "\n" not in text and text.startswith(f"bad --store {bad!r}: ")


def test_keys_and_segments() -> None:
    k = Keys("fk")
    assert k.obj("port", "p1") == b"fk/obj/port/p1"
    assert k.object_kind(b"fk/obj/net/n1") == ("network", "n1")
    assert k.object_kind(b"fk/idx/name/n1") is None and k.object_kind(b"fk/head") is None
    assert k.seg("gre", 4_294_967_295) == b"fk/idx/seg/gre/4294967295"
    assert k.seg("vxlan", 7) < k.seg("vxlan", 10)  # zero-padded: key order is number order
    assert segment_of(k.seg("vxlan", 42)) == 42
    assert range_end(b"fk/obj/") == b"fk/obj0"
    assert lowest_free([], 1, 5) == 1
    assert lowest_free([1, 3], 1, 5) == 2
    assert lowest_free([1, 2, 3], 1, 5) == 4
    assert lowest_free([1, 2], 1, 2) is None


def net(i: int) -> Network:
    return Network(f"n{i}", f"net{i}", "vxlan", i)


def raw(i: int, rev: int, key: bytes | None = None) -> RawEvent:
    k = Keys("fk")
    return RawEvent(False, key or k.obj("network", f"n{i}"), encode_value(net(i)), rev)


def test_events_are_grouped_by_revision_and_pages_keep_revisions_whole() -> None:
    k = Keys("fk")
    raws = [raw(1, 5), raw(2, 5), raw(9, 5, b"fk/idx/name/x"), raw(3, 6), raw(4, 8)]
    groups = group(k, raws)
    assert [(r, [e.id for e in evs]) for r, evs in groups] == [
        (5, ["n1", "n2"]),
        (6, ["n3"]),
        (8, ["n4"]),
    ]
    assert groups[0][1][0].object == Network("n1", "net1", "vxlan", 1, revision=5)
    assert [e.id for e in page(groups, 0, 1)] == ["n1", "n2"]
    assert [e.id for e in page(groups, 5, 1)] == ["n3"]
    assert [e.id for e in page(groups, 0, None)] == ["n1", "n2", "n3", "n4"]
    with pytest.raises(Exception, match="out of order"):
        group(k, [raw(1, 6), raw(2, 5)])


def test_the_ring_serves_only_what_it_holds_completely() -> None:
    k = Keys("fk")
    ring = Ring(start=4, capacity=2)
    assert ring.read(4, 4, None) == []
    assert ring.read(4, 5, None) is None  # not there yet
    assert not ring.wait(5, 0.01)
    ring.append(group(k, [raw(1, 5), raw(2, 5)]), 5)
    assert ring.wait(5, 0.01)
    assert [e.id for e in ring.read(4, 5, 1) or []] == ["n1", "n2"]
    ring.append(group(k, [raw(3, 6), raw(4, 7)]), 7)
    assert ring.start == 5  # capacity 2: revision 5 fell out
    assert ring.read(4, 7, None) is None
    assert [e.revision for e in ring.read(5, 7, None) or []] == [6, 7]
    ring.reset(20)
    assert ring.compacted == 20 and ring.read(7, 20, None) is None and ring.read(20, 20, None) == []
