"""Self-checking records: magic, type, length and CRC-32 before every payload.

A reader stops at the first record that is truncated or fails its checksum and keeps the
good prefix before it, as OVSDB's log and etcd's WAL do.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

MAGIC = b"FK"
VERSION = 1
_HEADER = struct.Struct("!2sBBII")  # magic, version, type, payload length, crc32
_COVERED = struct.Struct("!2sBBI")  # the header fields the checksum covers, with the payload
HEADER_SIZE = _HEADER.size
MAX_PAYLOAD = 1 << 30

JOURNAL, PARTITION, MANIFEST = 1, 2, 3


class RecordError(ValueError):
    """A record that cannot be trusted: bad magic, version, length or checksum."""


@dataclass(frozen=True)
class Record:
    type: int
    payload: bytes
    offset: int  # where the record starts
    end: int  # where the next one starts


def encode(rtype: int, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"record of {len(payload)} bytes is too large")
    crc = _crc(rtype, payload)
    return _HEADER.pack(MAGIC, VERSION, rtype, len(payload), crc) + payload


def _crc(rtype: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(_COVERED.pack(MAGIC, VERSION, rtype, len(payload))))


def decode_at(data: bytes | memoryview, offset: int) -> Record:
    """The record at `offset`, or RecordError saying why it is not valid."""
    view = memoryview(data)
    if len(view) - offset < HEADER_SIZE:
        raise RecordError(f"truncated header at offset {offset}")
    magic, version, rtype, length, crc = _HEADER.unpack_from(view, offset)
    if magic != MAGIC:
        raise RecordError(f"bad magic at offset {offset}")
    if version != VERSION:
        raise RecordError(f"unknown record version {version} at offset {offset}")
    start = offset + HEADER_SIZE
    end = start + length
    if length > MAX_PAYLOAD or end > len(view):
        raise RecordError(f"truncated record at offset {offset} ({length} bytes announced)")
    payload = bytes(view[start:end])
    if _crc(rtype, payload) != crc:
        raise RecordError(f"checksum mismatch in record at offset {offset}")
    return Record(rtype, payload, offset, end)


def scan(data: bytes) -> tuple[list[Record], str | None]:
    """All good records from the start, and why reading stopped early (None if it didn't)."""
    records: list[Record] = []
    offset = 0
    while offset < len(data):
        try:
            rec = decode_at(data, offset)
        except RecordError as exc:
            return records, str(exc)
        records.append(rec)
        offset = rec.end
    return records, None


def iter_payloads(data: bytes, rtype: int) -> Iterator[bytes]:
    records, _ = scan(data)
    for rec in records:
        if rec.type == rtype:
            yield rec.payload


def decode_single(data: bytes, rtype: int, what: str) -> bytes:
    """A file that must hold exactly one record of `rtype`: its payload, or RecordError."""
    rec = decode_at(data, 0)
    if rec.type != rtype:
        raise RecordError(f"{what}: record type {rec.type}, expected {rtype}")
    if rec.end != len(data):
        raise RecordError(f"{what}: {len(data) - rec.end} trailing bytes")
    return rec.payload
