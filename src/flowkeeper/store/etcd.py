"""The etcd store: the Store protocol on an etcd cluster (Debian's etcd-server, v3 API).

Every event is one etcd transaction (one revision): the object key, its index keys
(uniqueness by compare create_revision == 0) and the head key. Other writers are found
by optimistic compares on mod_revision; a lost race re-reads and tries again. See
etcd_keys.py for the key layout and docs/control-plane.md ("The etcd store").
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from flowkeeper.model import (
    DEFAULT_PROJECT,
    AddressPair,
    Host,
    Network,
    NetworkType,
    Port,
    PortStatus,
    SecurityGroup,
    check_port_in_network,
)
from flowkeeper.store import sgcheck
from flowkeeper.store.base import (
    DEFAULT_KEEP_EVENTS,
    DEFAULT_LIVENESS_TTL_S,
    Compacted,
    Conflict,
    Event,
    HostLiveness,
    Kind,
    NotFound,
    Objects,
    Snapshot,
    StoreError,
    StoreObject,
    security_changes,
    status_unchanged,
)
from flowkeeper.store.etcd_conn import ATTEMPT_TIMEOUT_S, DEADLINE_S, CompactedError, Conn
from flowkeeper.store.etcd_events import Ring
from flowkeeper.store.etcd_keys import (
    DIR_KINDS,
    Keys,
    decode_value,
    encode_value,
    loads,
    lowest_free,
    parse_url,
    segment_of,
)
from flowkeeper.store.etcd_live import Liveness, gone_since, overlay
from flowkeeper.store.etcd_sg import EtcdSecurityGroups
from flowkeeper.store.etcd_txn import (
    KV,
    absent,
    count,
    delete,
    get,
    get_op,
    header_revision,
    none_under,
    put,
    range_kvs,
    scan,
    txn,
    unchanged,
)
from flowkeeper.store.etcd_watch import Follower, follow_keys, history
from flowkeeper.store.tokens import TokenRecord, encode_token
from flowkeeper.validation import SEGMENT_RANGES, ValidationError

log = logging.getLogger("flowkeeper.store")

T = TypeVar("T")
CONCURRENCY = 32
RING_MAX = 50_000  # revisions kept in memory for events_since
RING_WAIT_S = 2.0  # how long events_since waits for the watch to reach the head
COMPACT_EVERY_S = 30.0
NETWORK_CACHE = 100_000
RACES = 64  # optimistic retries of one write before giving up


class _Race(Exception):
    """A compare failed: someone else wrote in between; read again and retry."""


class EtcdStore(EtcdSecurityGroups):
    """A Store on etcd. Thread-safe: calls from any thread run on the store's own loop."""

    concurrency = CONCURRENCY

    def __init__(
        self,
        url: str,
        *,
        keep_events: int = DEFAULT_KEEP_EVENTS,
        liveness_ttl_s: float = DEFAULT_LIVENESS_TTL_S,
        compact_every_s: float = COMPACT_EVERY_S,
        attempt_s: float = ATTEMPT_TIMEOUT_S,
        deadline_s: float = DEADLINE_S,
    ) -> None:
        if keep_events < 1:
            raise ValidationError(f"keep_events must be >= 1, got {keep_events}")
        if not liveness_ttl_s > 0:
            raise ValidationError(f"liveness_ttl_s must be > 0, got {liveness_ttl_s}")
        self.url = parse_url(url)
        self.keep_events = keep_events
        self.keys = Keys(self.url.prefix)
        self.conn = Conn(self.url, attempt_s, deadline_s)
        self.live = Liveness(self.conn, self.keys, max(1, math.ceil(liveness_ttl_s)))
        self._callbacks: list[Callable[[], None]] = []
        self._networks: dict[str, tuple[Network, int]] = {}  # on the loop thread only
        self._etcd_compacted = 0  # etcd's own compaction, as far as a watch has seen it
        try:
            self._cluster_id, self._origin = self.conn.call(self._init_cluster_id)
            head, now = self.conn.call(self._head_and_now)
        except BaseException:
            self.conn.close()
            raise
        self.ring = Ring(head or now, min(keep_events, RING_MAX))
        self._tasks = [
            self.conn.spawn(Follower(self.conn, self.keys, self.ring, self._changed).run()),
            self.conn.spawn(self.live.keep_alive()),
            self.conn.spawn(follow_keys(self.conn, self.keys.live, self.live.on_live_event)),
            self.conn.spawn(self._compact_loop(compact_every_s)),
        ]

    # --- plumbing -----------------------------------------------------------
    def _changed(self) -> None:
        for callback in list(self._callbacks):
            try:
                callback()
            except Exception as exc:
                log.warning("store change callback failed: %s", exc)

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def _write(self, attempt: Callable[[Any, bool], Awaitable[T]]) -> T:
        """Run a read-check-transaction `attempt(kv, ambiguous)` until no race is lost."""

        async def op(ambiguous: bool) -> T:
            for _ in range(RACES):
                _, kv = await self.conn.kv()
                try:
                    return await attempt(kv, ambiguous)
                except _Race:
                    await asyncio.sleep(0)
            raise StoreError(f"gave up after {RACES} concurrent changes of the same keys")

        return self.conn.call(op)

    def _read(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        async def op(_ambiguous: bool) -> T:
            _, kv = await self.conn.kv()
            return await fn(kv)

        return self.conn.call(op)

    async def _commit(self, kv: Any, compare: list[Any], ops: list[Any]) -> int:
        """An event transaction: `ops` and the head key, if `compare` holds; its revision."""
        resp = await txn(kv, compare, [*ops, put(self.keys.head)])
        if not resp.succeeded:
            raise _Race
        return header_revision(resp)

    async def _gets(self, kv: Any, *keys: bytes) -> list[KV | None]:
        """Several keys read at one revision."""
        resp = await txn(kv, [], [get_op(k) for k in keys])
        out: list[KV | None] = []
        for r in resp.responses:
            kvs = range_kvs(r)
            out.append(kvs[0] if kvs else None)
        return out

    async def _init_cluster_id(self, _ambiguous: bool) -> tuple[str, int]:
        """The store's id (made once: create-only) and the revision it was made at: every
        event of this prefix comes after it."""
        _, kv = await self.conn.kv()
        key = self.keys.cluster_id
        new = str(uuid.uuid4())
        resp = await txn(kv, [absent(key)], [put(key, new.encode())], [get_op(key)])
        if resp.succeeded:
            return new, header_revision(resp)
        found = range_kvs(resp.responses[0])[0]
        return found.value.decode(), found.create_revision

    async def _head_and_now(self, _ambiguous: bool) -> tuple[int, int]:
        _, kv = await self.conn.kv()
        head, now, _ = await self._head(kv)
        return head, now

    async def _head(self, kv: Any) -> tuple[int, int, int]:
        """(last event revision, etcd's revision, compaction mark), read at one revision."""
        resp = await txn(kv, [], [get_op(self.keys.head), get_op(self.keys.compacted)])
        head = range_kvs(resp.responses[0])
        mark = range_kvs(resp.responses[1])
        return (
            head[0].mod_revision if head else 0,
            header_revision(resp),
            int(mark[0].value) if mark else 0,
        )

    # --- reads --------------------------------------------------------------
    def cluster_id(self) -> str:
        return self._cluster_id

    def revision(self) -> int:
        return self._read(self._head)[0]

    def compact_revision(self) -> int:
        return max(self._read(self._head)[2], self._compacted_seen())

    def _compacted_seen(self) -> int:
        """etcd compacts all prefixes at once: a compaction some other user of the cluster
        made shows up here once a watch has met it (events up to it are gone)."""
        return max(self._etcd_compacted, self.ring.compacted)

    async def _objects(self, kv: Any, kind: Kind | None) -> tuple[dict[Kind, Objects], int]:
        """Every object (of one kind, or all), with the last event revision they are at."""
        head, now, _ = await self._head(kv)
        prefix = self.keys.objects if kind is None else self.keys.obj_dir(kind)
        found, _ = await scan(kv, prefix, revision=now)
        lives, _ = (
            await scan(kv, self.keys.live, revision=now) if kind in (None, "host") else ([], 0)
        )
        live = {self.keys.last_part(k.key): loads(k.value, "liveness") for k in lives}
        out: dict[Kind, Objects] = {"network": [], "port": [], "host": [], "security_group": []}
        for item in found:
            which = self.keys.object_kind(item.key)
            if which is None:
                continue
            obj = decode_value(which[0], item.value, item.mod_revision)
            if isinstance(obj, Host):
                obj = overlay(obj, live.get(obj.name), self.live.local.get(obj.name))
            out[which[0]].append(obj)
        out["network"].sort(key=lambda n: n.name if isinstance(n, Network) else "")
        return out, head

    def snapshot(self) -> Snapshot:
        objs, rev = self._read(lambda kv: self._objects(kv, None))
        return Snapshot(
            rev,
            [o for o in objs["network"] if isinstance(o, Network)],
            [o for o in objs["port"] if isinstance(o, Port)],
            [o for o in objs["host"] if isinstance(o, Host)],
            [o for o in objs["security_group"] if isinstance(o, SecurityGroup)],
        )

    def _kind(self, kind: Kind) -> tuple[Objects, int]:
        if kind not in DIR_KINDS.values():
            raise StoreError(f"unknown object kind {kind!r}")
        objs, rev = self._read(lambda kv: self._objects(kv, kind))
        return objs[kind], rev

    def list_networks(self) -> tuple[list[Network], int]:
        objs, rev = self._kind("network")
        return [o for o in objs if isinstance(o, Network)], rev

    def list_ports(
        self, network_id: str | None = None, host: str | None = None
    ) -> tuple[list[Port], int]:
        objs, rev = self._kind("port")
        ports = [
            o
            for o in objs
            if isinstance(o, Port)
            and (network_id is None or o.network_id == network_id)
            and (host is None or o.host == host)
        ]
        return ports, rev

    def list_hosts(self) -> tuple[list[Host], int]:
        objs, rev = self._kind("host")
        return [o for o in objs if isinstance(o, Host)], rev

    def list_security_groups(
        self, project_id: str | None = None
    ) -> tuple[list[SecurityGroup], int]:
        objs, rev = self._kind("security_group")
        groups = [
            o for o in objs if isinstance(o, SecurityGroup) and project_id in (None, o.project_id)
        ]
        return groups, rev

    async def _get(self, kv: Any, kind: Kind, key: str) -> tuple[StoreObject, KV]:
        found = await get(kv, self.keys.obj(kind, key))
        if found is None:
            raise NotFound(f"{kind} {key!r} not found")
        return decode_value(kind, found.value, found.mod_revision), found

    def get_network(self, network_id: str) -> Network:
        async def read(kv: Any) -> Network:
            obj, _ = await self._get(kv, "network", network_id)
            assert isinstance(obj, Network)
            return obj

        return self._read(read)

    def get_port(self, port_id: str) -> Port:
        async def read(kv: Any) -> Port:
            obj, _ = await self._get(kv, "port", port_id)
            assert isinstance(obj, Port)
            return obj

        return self._read(read)

    def get_host(self, name: str) -> Host:
        async def read(kv: Any) -> Host:
            item, live = await self._gets(kv, self.keys.obj("host", name), self.keys.live_key(name))
            if item is None:
                raise NotFound(f"host {name!r} not found")
            obj = decode_value("host", item.value, item.mod_revision)
            assert isinstance(obj, Host)
            state = None if live is None else loads(live.value, "liveness")
            return overlay(obj, state, self.live.local.get(name))

        return self._read(read)

    def events_since(self, revision: int, limit: int | None = None) -> list[Event]:
        if revision < 0:
            raise ValidationError(f"bad revision {revision}: must be >= 0")
        head, _, mark = self._read(self._head)
        mark = max(mark, self._compacted_seen())
        if revision < mark:
            raise _compacted(revision, mark)
        if revision >= head:
            return []
        after = max(revision, self._origin)  # nothing of this prefix came before its origin
        if self.ring.wait(head, RING_WAIT_S):
            found = self.ring.read(after, head, limit)
            if found is not None:
                return found

        async def old(_ambiguous: bool) -> list[Event]:
            return await history(self.conn, self.keys, after, head, limit)

        try:
            return self.conn.call(old)
        except CompactedError as exc:
            self._etcd_compacted = max(self._etcd_compacted, exc.revision)
            raise _compacted(revision, max(mark, self._compacted_seen())) from None

    # --- writes -------------------------------------------------------------
    def create_network(
        self,
        name: str,
        type: NetworkType,
        segmentation_id: int | None = None,
        cidr: str | None = None,
        id: str | None = None,
        *,
        project_id: str = DEFAULT_PROJECT,
    ) -> Network:
        net_id = id or str(uuid.uuid4())
        keys = self.keys

        async def attempt(kv: Any, ambiguous: bool) -> Network:
            seg = segmentation_id
            if seg is None:
                low, high = SEGMENT_RANGES[type]
                used, _ = await scan(kv, keys.seg_dir(type), keys_only=True)
                seg = lowest_free([segment_of(k.key) for k in used], low, high)
                if seg is None:
                    raise Conflict(f"no free segmentation_id left for {type}")
            net = Network(net_id, name, type, seg, cidr, project_id=project_id)
            key = keys.obj("network", net.id)
            mine, by_name, by_seg = await self._gets(
                kv, key, keys.net_name(net.name), keys.seg(net.type, seg)
            )
            if mine is not None:
                old = decode_value("network", mine.value, mine.mod_revision)
                if ambiguous and _same_network(old, net, segmentation_id is None):
                    assert isinstance(old, Network)
                    return old  # our own write, whose answer was lost
                raise Conflict(f"network id {net.id!r} already exists")
            if by_name is not None:
                raise Conflict(f"network name {net.name!r} already exists")
            if by_seg is not None:
                if segmentation_id is None:
                    raise _Race  # taken since we looked: look again
                raise Conflict(
                    f"segmentation_id {seg} is already used by {net.type} network "
                    f"{by_seg.value.decode()!r}"
                )
            index = [keys.net_name(net.name), keys.seg(net.type, seg)]
            rev = await self._commit(
                kv,
                [absent(key), *(absent(k) for k in index)],
                [
                    put(key, encode_value(net)),
                    put(index[0], net.id.encode()),
                    put(index[1], net.name.encode()),
                ],
            )
            return replace(net, revision=rev)

        return self._write(attempt)

    def delete_network(self, network_id: str) -> Network:
        keys = self.keys
        seen: list[Network] = []

        async def attempt(kv: Any, ambiguous: bool) -> Network:
            try:
                obj, item = await self._get(kv, "network", network_id)
            except NotFound:
                if ambiguous and seen:
                    return seen[-1]  # our delete went through; its answer was lost
                raise
            assert isinstance(obj, Network)
            ports = await count(kv, keys.net_ports(network_id))
            if ports:
                raise Conflict(f"network {obj.name!r} still has {ports} port(s); delete them first")
            seen.append(obj)
            self._networks.pop(network_id, None)
            await self._commit(
                kv,
                [unchanged(item.key, item.mod_revision), none_under(keys.net_ports(network_id))],
                [
                    delete(item.key),
                    delete(keys.net_name(obj.name)),
                    delete(keys.seg(obj.type, obj.segmentation_id)),
                ],
            )
            return obj

        return self._write(attempt)

    def create_port(self, port: Port) -> Port:
        """One round trip when the network is known: the transaction's compares are the
        uniqueness rules, and when one fails its else-branch reads why."""
        keys = self.keys
        stored = replace(port, revision=0, tunnel_ip=None)
        net_key, key = keys.obj("network", port.network_id), keys.obj("port", port.id)
        mac_key = keys.mac(port.network_id, port.mac)
        ip_keys = [keys.ip(port.network_id, ip) for ip in port.fixed_ips]
        pid = port.id.encode()
        writes = [
            put(key, encode_value(stored)),
            put(mac_key, pid),
            *(put(k, pid) for k in ip_keys),
            put(keys.net_ports(port.network_id) + pid),
            put(keys.host_ports(port.host) + pid),
            *(put(keys.sg_ports(g) + pid) for g in port.security_groups),
            put(keys.head),
        ]
        reads = [get_op(k) for k in (net_key, key, mac_key, *ip_keys)]

        async def attempt(kv: Any, ambiguous: bool) -> Port:
            known = self._networks.get(port.network_id)
            if known is None:
                item = await get(kv, net_key)
                if item is None:
                    raise NotFound(f"network {port.network_id!r} not found")
                known = self._remember(item)
            net, net_mod = known
            check_port_in_network(port, net)
            groups, group_compares = await self.read_groups(kv, port.security_groups)
            sgcheck.check_port_groups(port, groups)
            compare = [
                unchanged(net_key, net_mod),
                absent(key),
                absent(mac_key),
                *(absent(k) for k in ip_keys),
                *group_compares,
            ]
            resp = await txn(kv, compare, writes, reads)
            if resp.succeeded:
                return replace(stored, revision=header_revision(resp))
            found = [(kvs[0] if kvs else None) for kvs in map(range_kvs, resp.responses)]
            net_item, mine, by_mac, by_ip = found[0], found[1], found[2], found[3:]
            if net_item is None:
                self._networks.pop(port.network_id, None)
                raise NotFound(f"network {port.network_id!r} not found")
            if net_item.mod_revision != net_mod:
                self._remember(net_item)
                raise _Race
            if mine is not None:
                old = decode_value("port", mine.value, mine.mod_revision)
                if ambiguous and replace(old, revision=0) == stored:
                    assert isinstance(old, Port)
                    return old  # our own write, whose answer was lost
                raise Conflict(f"port id {port.id!r} already exists")
            if by_mac is not None:
                raise Conflict(
                    f"MAC {port.mac} is already used by port {by_mac.value.decode()!r} "
                    f"on network {net.name!r}"
                )
            for ip, other in zip(port.fixed_ips, by_ip, strict=True):
                if other is not None:
                    raise Conflict(
                        f"IP {ip} is already used by port {other.value.decode()!r} "
                        f"on network {net.name!r}"
                    )
            raise _Race

        return self._write(attempt)

    def _remember(self, item: KV) -> tuple[Network, int]:
        """Networks never change once made: keep them for the one-round-trip port create."""
        net = decode_value("network", item.value, item.mod_revision)
        assert isinstance(net, Network)
        if len(self._networks) >= NETWORK_CACHE:
            self._networks.clear()
        self._networks[net.id] = (net, item.mod_revision)
        return net, item.mod_revision

    def delete_port(self, port_id: str) -> Port:
        keys = self.keys
        seen: list[Port] = []

        async def attempt(kv: Any, ambiguous: bool) -> Port:
            try:
                obj, item = await self._get(kv, "port", port_id)
            except NotFound:
                if ambiguous and seen:
                    return seen[-1]
                raise
            assert isinstance(obj, Port)
            seen.append(obj)
            pid = obj.id.encode()
            await self._commit(
                kv,
                [unchanged(item.key, item.mod_revision)],
                [
                    delete(item.key),
                    delete(keys.mac(obj.network_id, obj.mac)),
                    *(delete(keys.ip(obj.network_id, ip)) for ip in obj.fixed_ips),
                    delete(keys.net_ports(obj.network_id) + pid),
                    delete(keys.host_ports(obj.host) + pid),
                    *(delete(keys.sg_ports(g) + pid) for g in obj.security_groups),
                ],
            )
            return obj

        return self._write(attempt)

    def set_port_status(self, port_id: str, status: PortStatus, host: str | None = None) -> Port:
        return self._update_port(port_id, status_unchanged(port_id, status, host), status=status)

    def bind_port(self, port_id: str, host: str) -> Port:
        return self._update_port(port_id, lambda p: p.host == host, host=host)

    def update_port_security(
        self,
        port_id: str,
        *,
        security_groups: tuple[str, ...] | None = None,
        port_security_enabled: bool | None = None,
        allowed_address_pairs: tuple[AddressPair, ...] | None = None,
    ) -> Port:
        changes = security_changes(security_groups, port_security_enabled, allowed_address_pairs)
        keys = self.keys

        async def attempt(kv: Any, _ambiguous: bool) -> Port:
            obj, item = await self._get(kv, "port", port_id)
            assert isinstance(obj, Port)
            new = sgcheck.updated_port(obj, changes)
            if new == obj:
                return obj
            groups, compares = await self.read_groups(kv, new.security_groups)
            sgcheck.check_port_groups(new, groups)
            pid = obj.id.encode()
            old_groups, new_groups = set(obj.security_groups), set(new.security_groups)
            ops = [put(item.key, encode_value(new))]
            ops += [delete(keys.sg_ports(g) + pid) for g in sorted(old_groups - new_groups)]
            ops += [put(keys.sg_ports(g) + pid) for g in sorted(new_groups - old_groups)]
            rev = await self._commit(kv, [unchanged(item.key, item.mod_revision), *compares], ops)
            return replace(new, revision=rev)

        return self._write(attempt)

    def _update_port(self, port_id: str, same: Callable[[Port], bool], **changes: Any) -> Port:
        keys = self.keys

        async def attempt(kv: Any, _ambiguous: bool) -> Port:
            obj, item = await self._get(kv, "port", port_id)
            assert isinstance(obj, Port)
            if same(obj):
                return obj
            new = replace(obj, **changes)
            ops = [put(item.key, encode_value(new))]
            if new.host != obj.host:
                pid = obj.id.encode()
                ops += [
                    delete(keys.host_ports(obj.host) + pid),
                    put(keys.host_ports(new.host) + pid),
                ]
            rev = await self._commit(kv, [unchanged(item.key, item.mod_revision)], ops)
            return replace(new, revision=rev)

        return self._write(attempt)

    def put_host(self, host: Host) -> Host:
        key = self.keys.obj("host", host.name)

        async def attempt(kv: Any, _ambiguous: bool) -> Host:
            item = await get(kv, key)
            old = None if item is None else decode_value("host", item.value, item.mod_revision)
            if not isinstance(old, Host) or not old.same_spec(host):
                mod = 0 if item is None else item.mod_revision
                await self._commit(kv, [unchanged(key, mod)], [put(key, encode_value(host))])
            await self.live.heartbeat(kv, host)
            return host

        return self._write(attempt)

    def delete_host(self, name: str) -> Host:
        keys = self.keys
        seen: list[Host] = []

        async def attempt(kv: Any, ambiguous: bool) -> Host:
            item = await get(kv, keys.obj("host", name))
            if item is None:
                if ambiguous and seen:
                    return seen[-1]
                raise NotFound(f"host {name!r} not found")
            obj = decode_value("host", item.value, item.mod_revision)
            assert isinstance(obj, Host)
            bound = await count(kv, keys.host_ports(name))
            if bound:
                raise Conflict(
                    f"host {name!r} still has {bound} bound port(s); delete or move them first"
                )
            seen.append(obj)
            await self._commit(
                kv,
                [unchanged(item.key, item.mod_revision), none_under(keys.host_ports(name))],
                [delete(item.key), delete(keys.live_key(name)), delete(keys.gone_key(name))],
            )
            lease = self.live.forget(name)
            if lease:
                await self.live.revoke(lease)
            return obj

        return self._write(attempt)

    def host_liveness(self) -> dict[str, HostLiveness]:
        keys = self.keys

        async def read(kv: Any) -> tuple[list[str], dict[str, KV], dict[str, KV]]:
            resp = await txn(
                kv,
                [],
                [
                    get_op(keys.obj_dir("host"), prefix=True),
                    get_op(keys.live, prefix=True),
                    get_op(keys.gone, prefix=True),
                ],
            )
            hosts, lives, gones = (range_kvs(r) for r in resp.responses)
            return (
                [keys.last_part(h.key) for h in hosts],
                {keys.last_part(k.key): k for k in lives},
                {keys.last_part(k.key): k for k in gones},
            )

        names, lives, gones = self._read(read)
        out: dict[str, HostLiveness] = {}
        missing = []
        for name in names:
            if name in lives:
                since = float(loads(lives[name].value, "liveness").get("since", 0.0))
                out[name] = HostLiveness(True, since)
            elif (gone := gone_since(gones.get(name))) is not None:
                out[name] = HostLiveness(False, gone)
            else:
                missing.append(name)
        if missing:  # gone before any server saw its key go: gone from now
            now = time.time()

            async def mark(_ambiguous: bool) -> dict[str, float]:
                _, kv = await self.conn.kv()
                found: dict[str, float] = {}
                for name in missing:
                    await self.live.mark_gone(name, now)
                    since = gone_since(await get(kv, keys.gone_key(name)))
                    if since is not None:
                        found[name] = since
                return found

            for name, since in self.conn.call(mark).items():
                out[name] = HostLiveness(False, since)
        return out

    # --- tokens (no event, no revision of the store's) ------------------------
    def add_token(self, token: TokenRecord) -> TokenRecord:
        key, value = self.keys.token(token.id), encode_token(token).encode()

        async def attempt(kv: Any, ambiguous: bool) -> TokenRecord:
            resp = await txn(kv, [absent(key)], [put(key, value)], [get_op(key)])
            if resp.succeeded:
                return token
            kvs = range_kvs(resp.responses[0])
            if ambiguous and kvs and kvs[0].value == value:
                return token
            raise Conflict(f"token id {token.id!r} already exists")

        return self._write(attempt)

    def delete_token(self, token_id: str) -> TokenRecord:
        key = self.keys.token(token_id)
        seen: list[TokenRecord] = []

        async def attempt(kv: Any, ambiguous: bool) -> TokenRecord:
            item = await get(kv, key)
            if item is None:
                if ambiguous and seen:
                    return seen[-1]
                raise NotFound(f"token {token_id!r} not found")
            record = TokenRecord.from_dict(loads(item.value, "token"))
            seen.append(record)
            resp = await txn(kv, [unchanged(key, item.mod_revision)], [delete(key)])
            if not resp.succeeded:
                raise _Race
            return record

        return self._write(attempt)

    def list_tokens(self) -> list[TokenRecord]:
        async def read(kv: Any) -> list[TokenRecord]:
            items, _ = await scan(kv, self.keys.tokens)
            return [TokenRecord.from_dict(loads(i.value, "token")) for i in items]

        return self._read(read)

    # --- compaction ---------------------------------------------------------
    def compact(self) -> int:
        """Keep the last keep_events etcd revisions up to the last event: write the mark,
        then compact etcd to it. Safe with several servers at once. Returns the mark."""
        return self.conn.call(self._compact)

    async def _compact(self, _ambiguous: bool) -> int:
        _, kv = await self.conn.kv()
        head, _, mark = await self._head(kv)
        cut = head - self.keep_events  # from the last event: marks and the like do not count
        if cut <= mark:
            return mark
        item = await get(kv, self.keys.compacted)
        resp = await txn(
            kv,
            [unchanged(self.keys.compacted, 0 if item is None else item.mod_revision)],
            [put(self.keys.compacted, str(cut).encode())],
        )
        if not resp.succeeded:  # another server moved the mark: take theirs next time
            return (await self._head(kv))[2]
        from aetcd import rpc

        try:
            await kv.Compact(rpc.CompactionRequest(revision=cut))
        except rpc.AioRpcError as exc:
            if exc.code() != rpc.StatusCode.OUT_OF_RANGE:  # already compacted: fine
                raise
        return cut

    async def _compact_loop(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.conn.run_op(self._compact)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("etcd compaction failed: %s", exc)

    def close(self) -> None:
        self.conn.close()

    def list(self, kind: Kind) -> tuple[Objects, int]:
        return self._kind(kind)


def _compacted(revision: int, mark: int) -> Compacted:
    return Compacted(
        f"revision {revision} was compacted away; the event log starts after revision {mark}"
    )


def _same_network(old: StoreObject, new: Network, any_segment: bool) -> bool:
    if not isinstance(old, Network):
        return False
    if any_segment:
        new = replace(new, segmentation_id=old.segmentation_id)
    return replace(old, revision=0) == new
