"""The etcd store's key layout, URL and value encoding; pure.

Every key lives under `PREFIX/`:

    obj/net/ID, obj/port/ID, obj/host/NAME   objects (encode_object JSON; the revision field
                                              is filled from the key's mod_revision on read)
    idx/name/NAME                -> network id      unique network name
    idx/seg/TYPE/SEGMENT(10 digits) -> network name  unique segment per type (ordered)
    idx/mac/NET/MAC              -> port id         unique MAC per network
    idx/ip/NET/IP                -> port id         unique IP per network
    idx/netport/NET/PORT         -> ""              a network's ports (delete_network)
    idx/hostport/HOST/PORT       -> ""              a host's bound ports (delete_host)
    obj/sg/ID                                        security groups (rules inside)
    idx/sgdefault/PROJECT        -> group id        one "default" group per project
    idx/sgport/GROUP/PORT        -> ""              a group's ports (delete refused)
    idx/sgref/REMOTE/GROUP       -> ""              groups whose rules name REMOTE
    head                         -> ""              touched by every event: revision()
    meta/cluster_id, meta/compacted
    token/ID                     tokens (no event)
    live/NAME                    host liveness, attached to the host's lease
    gone/NAME                    when the host's liveness key disappeared (create-only)

Only obj/ keys make events; one object write is one etcd transaction, one revision.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from flowkeeper.errors import UsageError
from flowkeeper.model import Host
from flowkeeper.store.base import Kind, StoreError, StoreObject, decode_object, encode_object
from flowkeeper.validation import ValidationError

DEFAULT_PREFIX = "flowkeeper"
SEGMENT_DIGITS = 10  # gre goes up to 4294967295
KIND_DIRS: dict[Kind, str] = {
    "network": "net",
    "port": "port",
    "host": "host",
    "security_group": "sg",
}
DIR_KINDS: dict[str, Kind] = {d: k for k, d in KIND_DIRS.items()}

_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}){0,7}$")


@dataclass(frozen=True)
class EtcdUrl:
    endpoints: tuple[tuple[str, int], ...]
    prefix: str

    def names(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.endpoints)


def parse_url(url: str) -> EtcdUrl:
    """etcd://H:P[,H:P...][/PREFIX]; a one-line UsageError for anything else."""
    usage = "use etcd://HOST:PORT[,HOST:PORT...][/PREFIX]"
    if not url.startswith("etcd://"):
        raise UsageError(f"bad --store {url!r}: {usage}")
    rest = url.removeprefix("etcd://")
    hosts, _, prefix = rest.partition("/")
    prefix = prefix.rstrip("/") or DEFAULT_PREFIX
    if not _PREFIX_RE.match(prefix):
        raise UsageError(f"bad --store {url!r}: bad key prefix {prefix!r}")
    endpoints: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, sep, port = item.rpartition(":")
        if not sep or not _HOST_RE.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"bad --store {url!r}: bad endpoint {item!r}; {usage}")
        if (host, int(port)) in endpoints:
            raise UsageError(f"bad --store {url!r}: endpoint {item!r} given twice")
        endpoints.append((host, int(port)))
    return EtcdUrl(tuple(endpoints), prefix)


def range_end(prefix: bytes) -> bytes:
    """The end of the key range of everything starting with `prefix`."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.root = prefix.encode() + b"/"
        self.objects = self.root + b"obj/"
        self.head = self.root + b"head"
        self.cluster_id = self.root + b"meta/cluster_id"
        self.compacted = self.root + b"meta/compacted"
        self.tokens = self.root + b"token/"
        self.live = self.root + b"live/"
        self.gone = self.root + b"gone/"

    def obj_dir(self, kind: Kind) -> bytes:
        return self.objects + KIND_DIRS[kind].encode() + b"/"

    def obj(self, kind: Kind, key: str) -> bytes:
        return self.obj_dir(kind) + key.encode()

    def net_name(self, name: str) -> bytes:
        return self.root + b"idx/name/" + name.encode()

    def seg_dir(self, type_: str) -> bytes:
        return self.root + b"idx/seg/" + type_.encode() + b"/"

    def seg(self, type_: str, segment: int) -> bytes:
        return self.seg_dir(type_) + f"{segment:0{SEGMENT_DIGITS}d}".encode()

    def mac(self, net: str, mac: str) -> bytes:
        return self.root + b"idx/mac/" + net.encode() + b"/" + mac.encode()

    def ip(self, net: str, ip: str) -> bytes:
        return self.root + b"idx/ip/" + net.encode() + b"/" + ip.encode()

    def net_ports(self, net: str) -> bytes:
        return self.root + b"idx/netport/" + net.encode() + b"/"

    def host_ports(self, host: str) -> bytes:
        return self.root + b"idx/hostport/" + host.encode() + b"/"

    def sg_default(self, project: str) -> bytes:
        return self.root + b"idx/sgdefault/" + project.encode()

    def sg_ports(self, group: str) -> bytes:
        return self.root + b"idx/sgport/" + group.encode() + b"/"

    def sg_refs(self, remote: str) -> bytes:
        return self.root + b"idx/sgref/" + remote.encode() + b"/"

    def token(self, token_id: str) -> bytes:
        return self.tokens + token_id.encode()

    def live_key(self, host: str) -> bytes:
        return self.live + host.encode()

    def gone_key(self, host: str) -> bytes:
        return self.gone + host.encode()

    def object_kind(self, key: bytes) -> tuple[Kind, str] | None:
        """(kind, id) of an object key, None for any other key."""
        if not key.startswith(self.objects):
            return None
        sub, _, name = key[len(self.objects) :].decode().partition("/")
        kind = DIR_KINDS.get(sub)
        return None if kind is None or not name else (kind, name)

    def last_part(self, key: bytes) -> str:
        return key.rsplit(b"/", 1)[-1].decode()


def segment_of(key: bytes) -> int:
    return int(key.rsplit(b"/", 1)[-1])


def lowest_free(used: list[int], low: int, high: int) -> int | None:
    """The lowest segment in [low, high] not in `used` (sorted ascending); None if full."""
    candidate = low
    for seg in used:
        if seg > candidate:
            break
        candidate = max(candidate, seg + 1)
    return candidate if candidate <= high else None


def encode_value(obj: StoreObject) -> bytes:
    """The stored JSON: revision 0 (the key's mod_revision is the revision)."""
    stored = obj if isinstance(obj, Host) else replace(obj, revision=0)
    return encode_object(stored).encode()


def decode_value(kind: Kind, value: bytes, mod_revision: int) -> StoreObject:
    """An object from a key's value; all but hosts get revision = mod_revision."""
    try:
        obj = decode_object(kind, value.decode())
    except (ValueError, ValidationError, UnicodeDecodeError) as exc:
        raise StoreError(f"damaged {kind} record in etcd: {exc}") from None
    return obj if isinstance(obj, Host) else replace(obj, revision=mod_revision)


def dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def loads(value: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise StoreError(f"damaged {what} record in etcd: {exc}") from None
    if not isinstance(data, dict):
        raise StoreError(f"damaged {what} record in etcd: not an object")
    return data
