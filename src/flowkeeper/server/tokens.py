"""API tokens in the server: new secrets, their hashes, and bearer-header authentication.

A secret is `fk_<id>_<random>`: the id finds the record, then the sha256 of the whole
secret is compared in constant time with the stored hash. Only hashes are kept in the
store and in memory; the bootstrap token (from a file or the environment) is an admin
token with the id `bootstrap`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from flowkeeper.cperrors import Unauthorized
from flowkeeper.server.policy import Principal
from flowkeeper.store.tokens import TokenRecord, check_role
from flowkeeper.validation import ValidationError, check_name

BOOTSTRAP_ID = "bootstrap"
PREFIX = "fk_"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(role: str, host: str, now: float, note: str = "") -> tuple[TokenRecord, str]:
    """A new record and its secret (shown once to whoever asked for it, never stored)."""
    role = check_role(role)
    if role == "host":
        if not host:
            raise ValidationError("a host token needs the host it may act as")
        check_name(host, "host")
    elif host:
        raise ValidationError(f"a {role} token names no host")
    token_id = "tk" + secrets.token_hex(6)
    secret = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    return TokenRecord(token_id, role, digest(secret), host, now, note), secret


def token_id_of(secret: str) -> str:
    """The id part of a secret made by new_token, else ''."""
    if not secret.startswith(PREFIX):
        return ""
    token_id, sep, _rest = secret.removeprefix(PREFIX).partition("_")
    return token_id if sep else ""


def bearer(header: str | None) -> str:
    """The token of an 'Authorization: Bearer TOKEN' header; Unauthorized otherwise."""
    if not header:
        raise Unauthorized("missing token: send 'Authorization: Bearer TOKEN'")
    scheme, _, given = header.strip().partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("bad Authorization header: expected 'Bearer TOKEN'")
    return given


class TokenTable:
    """The tokens the server accepts: the store's records, mirrored in memory, plus the
    bootstrap admin token. Other servers on the same store create and revoke tokens too:
    `replace` takes the store's current list (see server/tokensync.py)."""

    def __init__(self, bootstrap: str, records: Iterable[TokenRecord] = ()) -> None:
        self._bootstrap = digest(bootstrap)
        self._records = {r.id: r for r in records}

    def add(self, record: TokenRecord) -> None:
        self._records[record.id] = record

    def remove(self, token_id: str) -> None:
        self._records.pop(token_id, None)

    def replace(self, records: Iterable[TokenRecord]) -> list[str]:
        """Mirror the store's current list; returns the ids that are gone (revoked)."""
        new = {r.id: r for r in records}
        gone = sorted(set(self._records) - set(new))
        self._records = new
        return gone

    def unknown_id(self, header: str | None) -> bool:
        """Whether the header holds a token of our form whose id this table lacks (one
        made through another server, maybe): worth re-reading the store for."""
        try:
            token_id = token_id_of(bearer(header))
        except Unauthorized:
            return False
        return bool(token_id) and token_id not in self._records

    def records(self) -> list[TokenRecord]:
        return sorted(self._records.values(), key=lambda r: r.id)

    def authenticate(self, header: str | None) -> Principal:
        given = digest(bearer(header))
        if hmac.compare_digest(given, self._bootstrap):
            return Principal(BOOTSTRAP_ID, "admin")
        record = self._records.get(token_id_of(bearer(header)))
        if record is not None and hmac.compare_digest(given, record.digest):
            return Principal(record.id, record.role, record.host)
        raise Unauthorized("unknown or revoked token")
