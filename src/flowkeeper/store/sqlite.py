"""The embedded SQLite store: WAL mode, synchronous=FULL, one revision counter, an event log.

synchronous=FULL: in WAL mode every COMMIT fsyncs the WAL, so a write the API has
acknowledged survives power loss. NORMAL would fsync only at checkpoints and could lose
the last acknowledged writes, whose revisions agents may already have applied.

One exception: a host heartbeat that changes nothing but `last_seen` and the applied
`revision` commits with synchronous=NORMAL (no fsync). The WAL is appended in order, so
the next FULL commit's fsync makes it durable too; a power cut can lose only such
heartbeats, never a state change (see liveness.must_sync).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from flowkeeper.model import (
    DEFAULT_PROJECT,
    AddressPair,
    Host,
    Network,
    NetworkType,
    Port,
    PortStatus,
    SecurityGroup,
    SecurityGroupRule,
    check_port_in_network,
)
from flowkeeper.store import liveness as live
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
    decode_object,
    encode_object,
    security_changes,
    status_unchanged,
)
from flowkeeper.store.schema import SCHEMA, SCHEMA_VERSION
from flowkeeper.store.sqlite_rows import (
    FILE_MODE,
    GROUPS,
    HOSTS,
    NETS,
    PORTS,
    Writer,
    create_private,
    decode_event,
    parse_json,
)
from flowkeeper.store.tokens import TokenRecord, encode_token
from flowkeeper.validation import SEGMENT_RANGES, ValidationError


class _NeedsSync(Exception):
    """A host PUT begun as a heartbeat turned out to change state: redo it with fsync."""


class SqliteStore:
    """A Store in one SQLite file. Thread-safe; all access goes through one connection."""

    concurrency = 1  # one writer: the server runs its calls in order on one thread

    def __init__(
        self,
        path: Path,
        keep_events: int = DEFAULT_KEEP_EVENTS,
        synchronous: str = "FULL",
        liveness_ttl_s: float = DEFAULT_LIVENESS_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if keep_events < 1:
            raise ValidationError(f"keep_events must be >= 1, got {keep_events}")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValidationError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = path
        self.keep_events = keep_events
        self.liveness_ttl_s = live.check_ttl(liveness_ttl_s)
        self._synchronous = synchronous
        self._clock = clock
        self._lock = threading.RLock()
        try:
            create_private(path)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"store {path}: cannot switch to WAL mode (got {mode})")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._init_schema()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from None
        for suffix in ("-wal", "-shm"):
            side = Path(f"{path}{suffix}")
            if side.exists():
                os.chmod(side, FILE_MODE)

    def _init_schema(self) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._create_tables()
                self._db.execute("COMMIT")
            finally:
                self._rollback()

    def _create_tables(self) -> None:
        for stmt in SCHEMA:
            self._db.execute(stmt)
        for key, value in (("revision", 0), ("compact_revision", 0)):
            self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        # The store's identity, made once with the store (a store made before this row
        # existed gets one the first time it is opened). A UUID's text never looks like a
        # number, so the INTEGER column keeps it as text.
        new_id = str(uuid.uuid4())
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('cluster_id', ?)", (new_id,))
        self._cluster_id = self._meta_text("cluster_id")
        found = self._meta("schema")
        if found != SCHEMA_VERSION:
            raise StoreError(f"store schema {found} is not {SCHEMA_VERSION}")

    def on_change(self, callback: Callable[[], None]) -> None:
        """Never called: the server's own writes poke its hub; other writers of the file
        are found by the hub's idle poll."""

    # --- transactions -------------------------------------------------------
    @contextmanager
    def _write(self, sync: bool = True) -> Iterator[Writer]:
        """One write transaction. `sync=False`: commit without fsync (heartbeats only)."""
        with self._lock, self._no_sync(not sync):
            try:
                self._db.execute("BEGIN IMMEDIATE")
                writer = Writer(self._db, self._meta("revision"))
                yield writer
                if writer.bumped:
                    self._compact(writer.revision)
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                self._rollback()
                raise Conflict(f"conflicts with stored data: {exc}") from None
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"store {self.path}: {exc}") from None
            except BaseException:
                self._rollback()
                raise

    @contextmanager
    def _no_sync(self, active: bool) -> Iterator[None]:
        # SQLite refuses to change the safety level inside a transaction: set it around one.
        if not active or self._synchronous == "NORMAL":
            yield
            return
        try:
            self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from None
        try:
            yield
        finally:
            self._db.execute(f"PRAGMA synchronous={self._synchronous}")

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN")
                yield self._db
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: {exc}") from None
            finally:
                self._rollback()

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _meta_text(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else ""

    def _compact(self, revision: int) -> None:
        cut = revision - self.keep_events
        if cut > self._meta("compact_revision"):
            self._db.execute("DELETE FROM events WHERE revision <= ?", (cut,))
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'compact_revision'", (cut,))

    def _one(self, sql: str, args: tuple[object, ...]) -> str | None:
        row = self._db.execute(sql, args).fetchone()
        return None if row is None else str(row[0])

    def _network(self, network_id: str) -> Network:
        data = self._one("SELECT data FROM networks WHERE id = ?", (network_id,))
        if data is None:
            raise NotFound(f"network {network_id!r} not found")
        return Network.from_dict(parse_json(data))

    def _port(self, port_id: str) -> Port:
        data = self._one("SELECT data FROM ports WHERE id = ?", (port_id,))
        if data is None:
            raise NotFound(f"port {port_id!r} not found")
        return Port.from_dict(parse_json(data))

    def _host(self, name: str) -> Host | None:
        data = self._one("SELECT data FROM hosts WHERE name = ?", (name,))
        return None if data is None else Host.from_dict(parse_json(data))

    def _all(self, sql: str, args: tuple[object, ...] = ()) -> list[str]:
        return [str(row[0]) for row in self._db.execute(sql, args)]

    # --- reads --------------------------------------------------------------
    def cluster_id(self) -> str:
        return self._cluster_id

    def revision(self) -> int:
        with self._read():
            return self._meta("revision")

    def compact_revision(self) -> int:
        with self._read():
            return self._meta("compact_revision")

    def snapshot(self) -> Snapshot:
        with self._read():
            return Snapshot(
                revision=self._meta("revision"),
                networks=[Network.from_dict(parse_json(d)) for d in self._all(NETS)],
                ports=[Port.from_dict(parse_json(d)) for d in self._all(PORTS)],
                hosts=[Host.from_dict(parse_json(d)) for d in self._all(HOSTS)],
                security_groups=[SecurityGroup.from_dict(parse_json(d)) for d in self._all(GROUPS)],
            )

    def list_networks(self) -> tuple[list[Network], int]:
        with self._read():
            nets = [Network.from_dict(parse_json(d)) for d in self._all(NETS)]
            return nets, self._meta("revision")

    def list_ports(
        self, network_id: str | None = None, host: str | None = None
    ) -> tuple[list[Port], int]:
        where, args = [], []
        for column, value in (("network_id", network_id), ("host", host)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        # Only constant column names are joined in; values go in as parameters.
        sql = "SELECT data FROM ports" + (" WHERE " + " AND ".join(where) if where else "")  # noqa: S608
        with self._read():
            ports = [
                Port.from_dict(parse_json(d)) for d in self._all(sql + " ORDER BY id", tuple(args))
            ]
            return ports, self._meta("revision")

    def list_hosts(self) -> tuple[list[Host], int]:
        with self._read():
            hosts = [Host.from_dict(parse_json(d)) for d in self._all(HOSTS)]
            return hosts, self._meta("revision")

    def get_network(self, network_id: str) -> Network:
        with self._read():
            return self._network(network_id)

    def get_port(self, port_id: str) -> Port:
        with self._read():
            return self._port(port_id)

    def get_host(self, name: str) -> Host:
        with self._read():
            host = self._host(name)
        if host is None:
            raise NotFound(f"host {name!r} not found")
        return host

    def events_since(self, revision: int, limit: int | None = None) -> list[Event]:
        if revision < 0:
            raise ValidationError(f"bad revision {revision}: must be >= 0")
        sql = "SELECT revision, kind, op, id, object, prev FROM events WHERE revision > ?"
        sql += " ORDER BY revision" + ("" if limit is None else f" LIMIT {int(limit)}")
        with self._read():
            compacted = self._meta("compact_revision")
            if revision < compacted:
                raise Compacted(
                    f"revision {revision} was compacted away; the event log starts after "
                    f"revision {compacted}"
                )
            rows = self._db.execute(sql, (revision,)).fetchall()
        return [decode_event(row) for row in rows]

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
        with self._write() as w:
            seg = self._free_segment(type) if segmentation_id is None else segmentation_id
            net = Network(id or str(uuid.uuid4()), name, type, seg, cidr, w.next, project_id)
            if self._one("SELECT id FROM networks WHERE id = ?", (net.id,)):
                raise Conflict(f"network id {net.id!r} already exists")
            if self._one("SELECT id FROM networks WHERE name = ?", (net.name,)):
                raise Conflict(f"network name {net.name!r} already exists")
            other = self._one(
                "SELECT name FROM networks WHERE type = ? AND segmentation_id = ?",
                (net.type, net.segmentation_id),
            )
            if other is not None:
                raise Conflict(
                    f"segmentation_id {net.segmentation_id} is already used by "
                    f"{net.type} network {other!r}"
                )
            self._db.execute(
                "INSERT INTO networks (id, name, type, segmentation_id, data) VALUES (?,?,?,?,?)",
                (net.id, net.name, net.type, net.segmentation_id, encode_object(net)),
            )
            w.record("network", "put", net, None)
        return net

    def _free_segment(self, kind: NetworkType) -> int:
        low, high = SEGMENT_RANGES[kind]
        used = self._db.execute(
            "SELECT segmentation_id FROM networks WHERE type = ? ORDER BY segmentation_id",
            (kind,),
        )
        candidate = low
        for (seg,) in used:
            if seg > candidate:
                break
            candidate = max(candidate, int(seg) + 1)
        if candidate > high:
            raise Conflict(f"no free segmentation_id left for {kind}")
        return candidate

    def delete_network(self, network_id: str) -> Network:
        with self._write() as w:
            net = self._network(network_id)
            row = self._db.execute(
                "SELECT COUNT(*) FROM ports WHERE network_id = ?", (network_id,)
            ).fetchone()
            if row[0]:
                raise Conflict(
                    f"network {net.name!r} still has {row[0]} port(s); delete them first"
                )
            self._db.execute("DELETE FROM networks WHERE id = ?", (network_id,))
            w.record("network", "delete", net, net)
        return net

    def create_port(self, port: Port) -> Port:
        with self._write() as w:
            net = self._network(port.network_id)
            check_port_in_network(port, net)
            sgcheck.check_port_groups(port, self._groups(port.security_groups))
            if self._one("SELECT id FROM ports WHERE id = ?", (port.id,)):
                raise Conflict(f"port id {port.id!r} already exists")
            other = self._one(
                "SELECT id FROM ports WHERE network_id = ? AND mac = ?", (net.id, port.mac)
            )
            if other is not None:
                raise Conflict(
                    f"MAC {port.mac} is already used by port {other!r} on network {net.name!r}"
                )
            for ip in port.fixed_ips:
                other = self._one(
                    "SELECT port_id FROM port_ips WHERE network_id = ? AND ip = ?", (net.id, ip)
                )
                if other is not None:
                    raise Conflict(
                        f"IP {ip} is already used by port {other!r} on network {net.name!r}"
                    )
            stored = replace(port, revision=w.next, tunnel_ip=None)
            self._db.execute(
                "INSERT INTO ports (id, network_id, host, mac, data) VALUES (?,?,?,?,?)",
                (stored.id, net.id, stored.host, stored.mac, encode_object(stored)),
            )
            self._db.executemany(
                "INSERT INTO port_ips (network_id, ip, port_id) VALUES (?,?,?)",
                [(net.id, ip, stored.id) for ip in stored.fixed_ips],
            )
            self._db.executemany(
                "INSERT INTO port_groups (group_id, port_id) VALUES (?,?)",
                [(g, stored.id) for g in stored.security_groups],
            )
            w.record("port", "put", stored, None)
        return stored

    def delete_port(self, port_id: str) -> Port:
        with self._write() as w:
            port = self._port(port_id)
            self._db.execute("DELETE FROM port_groups WHERE port_id = ?", (port_id,))
            self._db.execute("DELETE FROM port_ips WHERE port_id = ?", (port_id,))
            self._db.execute("DELETE FROM ports WHERE id = ?", (port_id,))
            w.record("port", "delete", port, port)
        return port

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
        with self._write() as w:
            port = self._port(port_id)
            new = sgcheck.updated_port(port, changes)
            if new == port:
                return port
            sgcheck.check_port_groups(new, self._groups(new.security_groups))
            self._db.execute("DELETE FROM port_groups WHERE port_id = ?", (port_id,))
            self._db.executemany(
                "INSERT INTO port_groups (group_id, port_id) VALUES (?,?)",
                [(g, port_id) for g in new.security_groups],
            )
            return self._put_port(w, port, replace(new, revision=w.next))

    def _update_port(self, port_id: str, unchanged: Callable[[Port], bool], **changes: Any) -> Port:
        """Change some fields of a port in one revision; no write if `unchanged(port)`."""
        with self._write() as w:
            port = self._port(port_id)
            if unchanged(port):
                return port
            return self._put_port(w, port, replace(port, **changes, revision=w.next))

    def _put_port(self, w: Writer, old: Port, new: Port) -> Port:
        self._db.execute(
            "UPDATE ports SET host = ?, data = ? WHERE id = ?",
            (new.host, encode_object(new), new.id),
        )
        w.record("port", "put", new, old)
        return new

    # --- security groups ----------------------------------------------------
    def _group(self, group_id: str) -> SecurityGroup:
        data = self._one("SELECT data FROM security_groups WHERE id = ?", (group_id,))
        if data is None:
            raise NotFound(f"security group {group_id!r} not found")
        return SecurityGroup.from_dict(parse_json(data))

    def _groups(self, ids: Iterable[str]) -> dict[str, SecurityGroup | None]:
        out: dict[str, SecurityGroup | None] = {}
        for gid in ids:
            data = self._one("SELECT data FROM security_groups WHERE id = ?", (gid,))
            out[gid] = None if data is None else SecurityGroup.from_dict(parse_json(data))
        return out

    def list_security_groups(
        self, project_id: str | None = None
    ) -> tuple[list[SecurityGroup], int]:
        with self._read():
            if project_id is None:
                rows = self._all(GROUPS)
            else:
                rows = self._all(
                    "SELECT data FROM security_groups WHERE project_id = ? ORDER BY id",
                    (project_id,),
                )
            return [SecurityGroup.from_dict(parse_json(d)) for d in rows], self._meta("revision")

    def get_security_group(self, group_id: str) -> SecurityGroup:
        with self._read():
            return self._group(group_id)

    def create_security_group(self, group: SecurityGroup) -> SecurityGroup:
        with self._write() as w:
            if self._one("SELECT id FROM security_groups WHERE id = ?", (group.id,)):
                raise Conflict(f"security group id {group.id!r} already exists")
            if group.name == sgcheck.DEFAULT_GROUP:
                other = self._one(
                    "SELECT id FROM security_groups WHERE project_id = ? AND name = ?",
                    (group.project_id, group.name),
                )
                if other is not None:
                    raise Conflict(
                        f"project {group.project_id!r} already has its default group {other!r}"
                    )
            sgcheck.check_remotes(group, self._groups(sgcheck.other_remotes(group)))
            stored = replace(group, revision=w.next)
            self._db.execute(
                "INSERT INTO security_groups (id, project_id, name, data) VALUES (?,?,?,?)",
                (stored.id, stored.project_id, stored.name, encode_object(stored)),
            )
            self._set_refs(stored)
            w.record("security_group", "put", stored, None)
        return stored

    def _set_refs(self, group: SecurityGroup) -> None:
        self._db.execute("DELETE FROM group_refs WHERE group_id = ?", (group.id,))
        self._db.executemany(
            "INSERT INTO group_refs (remote_id, group_id) VALUES (?,?)",
            [(r, group.id) for r in sorted(sgcheck.other_remotes(group))],
        )

    def delete_security_group(self, group_id: str) -> SecurityGroup:
        with self._write() as w:
            group = self._group(group_id)
            ports = self._all(
                "SELECT port_id FROM port_groups WHERE group_id = ? ORDER BY port_id LIMIT 1000",
                (group_id,),
            )
            refs = self._all("SELECT group_id FROM group_refs WHERE remote_id = ?", (group_id,))
            sgcheck.in_use(group, ports, refs)
            self._db.execute("DELETE FROM group_refs WHERE group_id = ?", (group_id,))
            self._db.execute("DELETE FROM security_groups WHERE id = ?", (group_id,))
            w.record("security_group", "delete", group, group)
        return group

    def add_security_group_rule(self, group_id: str, rule: SecurityGroupRule) -> SecurityGroup:
        with self._write() as w:
            group = self._group(group_id)
            new = sgcheck.with_rule(group, rule)
            sgcheck.check_remotes(new, self._groups(sgcheck.other_remotes(new)))
            return self._put_group(w, group, replace(new, revision=w.next))

    def delete_security_group_rule(self, group_id: str, rule_id: str) -> SecurityGroup:
        with self._write() as w:
            group = self._group(group_id)
            new = sgcheck.without_rule(group, rule_id)
            return self._put_group(w, group, replace(new, revision=w.next))

    def _put_group(self, w: Writer, old: SecurityGroup, new: SecurityGroup) -> SecurityGroup:
        self._db.execute(
            "UPDATE security_groups SET data = ? WHERE id = ?", (encode_object(new), new.id)
        )
        self._set_refs(new)
        w.record("security_group", "put", new, old)
        return new

    def put_host(self, host: Host) -> Host:
        """Registration and heartbeat. A heartbeat that is no state change (see
        liveness.must_sync) commits without an fsync."""
        ttl = self.liveness_ttl_s
        with self._lock:
            with self._read():
                sync = live.must_sync(self._host(host.name), host, ttl)
            try:
                return self._put_host(host, sync)
            except _NeedsSync:  # another writer changed the host in between
                return self._put_host(host, True)

    def _put_host(self, host: Host, sync: bool) -> Host:
        ttl = self.liveness_ttl_s
        with self._write(sync) as w:
            old = self._host(host.name)
            if not sync and live.must_sync(old, host, ttl):
                raise _NeedsSync
            since = live.run_start(old, self._alive_since(host.name), host, ttl)
            self._db.execute(
                "INSERT INTO hosts (name, data) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET data = excluded.data",
                (host.name, encode_object(host)),
            )
            self._db.execute(
                "INSERT INTO host_liveness (name, alive_since) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET alive_since = excluded.alive_since",
                (host.name, since),
            )
            if old is None or not old.same_spec(host):
                w.record("host", "put", host, old)
        return host

    def _alive_since(self, name: str) -> float | None:
        row = self._db.execute(
            "SELECT alive_since FROM host_liveness WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else float(row[0])

    def delete_host(self, name: str) -> Host:
        with self._write() as w:
            host = self._host(name)
            if host is None:
                raise NotFound(f"host {name!r} not found")
            row = self._db.execute("SELECT COUNT(*) FROM ports WHERE host = ?", (name,))
            bound = int(row.fetchone()[0])
            if bound:
                raise Conflict(
                    f"host {name!r} still has {bound} bound port(s); delete or move them first"
                )
            self._db.execute("DELETE FROM hosts WHERE name = ?", (name,))
            self._db.execute("DELETE FROM host_liveness WHERE name = ?", (name,))
            w.record("host", "delete", host, host)
        return host

    def host_liveness(self) -> dict[str, HostLiveness]:
        """Alive while the last heartbeat is within liveness_ttl_s; see store/liveness.py."""
        with self._read():
            rows = self._db.execute(
                "SELECT h.data, l.alive_since FROM hosts h "
                "LEFT JOIN host_liveness l ON l.name = h.name ORDER BY h.name"
            ).fetchall()
        now, ttl = self._clock(), self.liveness_ttl_s
        out: dict[str, HostLiveness] = {}
        for data, since in rows:
            host = Host.from_dict(parse_json(str(data)))
            out[host.name] = live.liveness(
                host.last_seen, None if since is None else float(since), now, ttl
            )
        return out

    # --- API tokens (no revision, no event) ---------------------------------
    def add_token(self, token: TokenRecord) -> TokenRecord:
        with self._write():
            if self._one("SELECT id FROM tokens WHERE id = ?", (token.id,)):
                raise Conflict(f"token id {token.id!r} already exists")
            data = encode_token(token)
            self._db.execute("INSERT INTO tokens (id, data) VALUES (?, ?)", (token.id, data))
        return token

    def delete_token(self, token_id: str) -> TokenRecord:
        with self._write():
            data = self._one("SELECT data FROM tokens WHERE id = ?", (token_id,))
            if data is None:
                raise NotFound(f"token {token_id!r} not found")
            self._db.execute("DELETE FROM tokens WHERE id = ?", (token_id,))
        return TokenRecord.from_dict(parse_json(data))

    def list_tokens(self) -> list[TokenRecord]:
        with self._read():
            rows = self._all("SELECT data FROM tokens ORDER BY id")
        return [TokenRecord.from_dict(parse_json(d)) for d in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def list(self, kind: Kind) -> tuple[Objects, int]:
        sql = {"network": NETS, "port": PORTS, "host": HOSTS, "security_group": GROUPS}[kind]
        with self._read():
            objs = [decode_object(kind, d) for d in self._all(sql)]
            return objs, self._meta("revision")
