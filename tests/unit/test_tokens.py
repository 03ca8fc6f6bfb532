"""Token secrets, hashes and bearer authentication; the SQLite token table."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from flowkeeper.cperrors import Conflict, NotFound, Unauthorized
from flowkeeper.server.policy import Principal
from flowkeeper.server.tokens import TokenTable, new_token, token_id_of
from flowkeeper.store.sqlite import SqliteStore
from flowkeeper.store.tokens import TokenRecord
from flowkeeper.validation import ValidationError


def test_new_token_keeps_only_a_hash() -> None:
    record, secret = new_token("host", "h1", 1.5, "rack 3")
    assert secret.startswith(f"fk_{record.id}_") and len(secret) > 50
    assert record.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(record) and secret not in str(record.to_dict())
    assert record.public() == {
        "id": record.id, "role": "host", "host": "h1", "created": 1.5, "note": "rack 3"
    }  # fmt: skip
    assert TokenRecord.from_dict(record.to_dict()) == record
    assert token_id_of(secret) == record.id
    assert token_id_of("plain-text") == ""
    a, b = new_token("admin", "", 0)[1], new_token("admin", "", 0)[1]
    assert a != b


@pytest.mark.parametrize(
    ("role", "host", "message"),
    [
        ("host", "", "a host token needs the host"),
        ("admin", "h1", "a admin token names no host"),
        ("read-only", "h1", "a read-only token names no host"),
        ("root", "", "bad token role 'root'"),
        ("host", "bad name!", "bad host name"),
    ],
)
def test_new_token_refuses_bad_input(role: str, host: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        new_token(role, host, 0)


def test_authenticate_bootstrap_and_stored_tokens() -> None:
    record, secret = new_token("host", "h1", 0)
    table = TokenTable("boot-secret", [record])
    assert table.authenticate("Bearer boot-secret") == Principal("bootstrap", "admin")
    assert table.authenticate(f"bearer {secret}") == Principal(record.id, "host", "h1")
    for header, message in [
        (None, "missing token"),
        ("", "missing token"),
        ("Basic abc", "bad Authorization header"),
        ("Bearer", "bad Authorization header"),
        ("Bearer boot-secretx", "unknown or revoked token"),
        (f"Bearer {secret}x", "unknown or revoked token"),
        (f"Bearer fk_{record.id}_guess", "unknown or revoked token"),
    ]:
        with pytest.raises(Unauthorized, match=message):
            table.authenticate(header)
    table.remove(record.id)
    with pytest.raises(Unauthorized, match="unknown or revoked token"):
        table.authenticate(f"Bearer {secret}")


def test_sqlite_token_table(tmp_path: Path) -> None:
    path = tmp_path / "fk.db"
    store = SqliteStore(path)
    record, secret = new_token("read-only", "", 2.0)
    assert store.add_token(record) == record
    with pytest.raises(Conflict):
        store.add_token(record)
    assert store.revision() == 0  # tokens are not revisioned objects
    store.close()
    store = SqliteStore(path)
    assert store.list_tokens() == [record]
    files = [p for p in tmp_path.iterdir() if p.name.startswith("fk.db")]
    assert record.digest.encode() in b"".join(p.read_bytes() for p in files)
    assert all(secret.encode() not in p.read_bytes() for p in files)
    assert store.delete_token(record.id) == record
    assert store.list_tokens() == []
    with pytest.raises(NotFound, match="not found"):
        store.delete_token(record.id)
    store.close()


def test_only_an_unknown_token_of_our_form_is_worth_re_reading_the_store() -> None:
    from flowkeeper.server.tokens import TokenTable, new_token

    record, secret = new_token("host", "h1", 1.0)
    other, other_secret = new_token("admin", "", 1.0)
    table = TokenTable("the-bootstrap-token", [record])
    assert not table.unknown_id("Bearer the-bootstrap-token")  # no store read for it
    assert not table.unknown_id(f"Bearer {secret}")  # held already
    assert not table.unknown_id("Bearer not-one-of-ours")  # no id to look for
    assert not table.unknown_id(None) and not table.unknown_id("Basic abc")
    assert table.unknown_id(f"Bearer {other_secret}")  # made elsewhere, maybe
    assert table.replace([record, other]) == [] and not table.unknown_id(f"Bearer {other_secret}")
    assert table.replace([other]) == [record.id]  # revoked elsewhere
