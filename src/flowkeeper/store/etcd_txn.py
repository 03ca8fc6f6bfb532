"""Building etcd requests (compares, puts, deletes, ranges) and reading their answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aetcd import rpc

from flowkeeper.store.etcd_keys import range_end

PAGE = 2000  # keys per range read


@dataclass(frozen=True, slots=True)
class KV:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int = 0


def kv_of(raw: Any) -> KV:
    return KV(raw.key, raw.value, raw.create_revision, raw.mod_revision, raw.lease)


def absent(key: bytes) -> Any:
    return rpc.Compare(
        key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0
    )


def none_under(prefix: bytes) -> Any:
    """True when no key starts with `prefix` (a range compare)."""
    return rpc.Compare(
        key=prefix,
        range_end=range_end(prefix),
        target=rpc.Compare.CREATE,
        result=rpc.Compare.EQUAL,
        create_revision=0,
    )


def created_at(key: bytes, create_revision: int) -> Any:
    """True while the key is the one read (not deleted, nor deleted and made again)."""
    return rpc.Compare(
        key=key,
        target=rpc.Compare.CREATE,
        result=rpc.Compare.EQUAL,
        create_revision=create_revision,
    )


def unchanged(key: bytes, mod_revision: int) -> Any:
    """True while the key is as read (mod_revision 0: still absent)."""
    if mod_revision == 0:
        return absent(key)
    return rpc.Compare(
        key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=mod_revision
    )


def put(key: bytes, value: bytes = b"", lease: int = 0) -> Any:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))


def delete(key: bytes) -> Any:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))


def get_op(key: bytes, prefix: bool = False) -> Any:
    req = rpc.RangeRequest(key=key, range_end=range_end(key) if prefix else b"")
    return rpc.RequestOp(request_range=req)


async def txn(
    kv: Any, compare: list[Any], success: list[Any], failure: list[Any] | None = None
) -> Any:
    request = rpc.TxnRequest(compare=compare, success=success, failure=failure or [])
    return await kv.Txn(request)


async def get(kv: Any, key: bytes) -> KV | None:
    resp = await kv.Range(rpc.RangeRequest(key=key))
    return kv_of(resp.kvs[0]) if resp.kvs else None


async def count(kv: Any, prefix: bytes) -> int:
    resp = await kv.Range(
        rpc.RangeRequest(key=prefix, range_end=range_end(prefix), count_only=True)
    )
    return int(resp.count)


async def scan(
    kv: Any, prefix: bytes, revision: int = 0, keys_only: bool = False
) -> tuple[list[KV], int]:
    """Every key under `prefix`, in key order, consistent at one revision (paged)."""
    out: list[KV] = []
    start, end = prefix, range_end(prefix)
    while True:
        resp = await kv.Range(
            rpc.RangeRequest(
                key=start, range_end=end, limit=PAGE, revision=revision, keys_only=keys_only
            )
        )
        revision = revision or int(resp.header.revision)
        out += [kv_of(k) for k in resp.kvs]
        if not resp.more or not resp.kvs:
            return out, revision
        start = resp.kvs[-1].key + b"\0"


def header_revision(resp: Any) -> int:
    return int(resp.header.revision)


def range_kvs(op_response: Any) -> list[KV]:
    """The kvs of a range op inside a transaction's responses."""
    return [kv_of(k) for k in op_response.response_range.kvs]
