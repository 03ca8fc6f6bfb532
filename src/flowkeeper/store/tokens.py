"""An API token as the store keeps it: id, role, bound host, and only the secret's hash."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from flowkeeper import validation as v
from flowkeeper.validation import ValidationError

Role = Literal["admin", "read-only", "host"]
ROLES: tuple[Role, ...] = ("admin", "read-only", "host")
TOKEN_ID_PATTERN = r"^tk[0-9a-f]{12}$"  # noqa: S105 - a pattern, not a secret
TOKEN_ID_RE = re.compile(TOKEN_ID_PATTERN)


def check_role(value: str) -> Role:
    for role in ROLES:
        if value == role:
            return role
    raise ValidationError(f"bad token role {value!r}: use one of {', '.join(ROLES)}")


def check_token_id(value: str) -> str:
    if not TOKEN_ID_RE.match(value):
        raise ValidationError(f"bad token id {value!r}: expected tk and 12 hex digits")
    return value


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """`digest` is the sha256 of the secret (hex); the secret itself is never stored.
    A host token (role "host") names the one host it may act as."""

    id: str
    role: Role
    digest: str
    host: str = ""
    created: float = 0.0
    note: str = ""

    def __post_init__(self) -> None:
        check_token_id(self.id)
        check_role(self.role)
        if not re.fullmatch(r"[0-9a-f]{64}", self.digest):
            raise ValidationError("bad token digest: expected 64 hex digits")
        if self.role == "host":
            v.check_name(self.host, "host")
        elif self.host:
            raise ValidationError(f"a {self.role} token names no host")
        if not isinstance(self.created, int | float) or not math.isfinite(self.created):
            raise ValidationError("bad token creation time")
        v.check_text(self.note, "token note")

    def public(self) -> dict[str, Any]:
        """What `token list` shows: everything but the digest."""
        return {
            "id": self.id,
            "role": self.role,
            "host": self.host,
            "created": self.created,
            "note": self.note,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.public(), "digest": self.digest}

    @classmethod
    def from_dict(cls, raw: object) -> TokenRecord:
        data = v.check_object(raw, "token")
        return cls(
            id=v.get_str(data, "id"),
            role=check_role(v.get_str(data, "role")),
            digest=v.get_str(data, "digest"),
            host=v.get_str(data, "host", ""),
            created=v.get_float(data, "created", 0.0),
            note=v.get_str(data, "note", ""),
        )


def encode_token(token: TokenRecord) -> str:
    return json.dumps(token.to_dict(), separators=(",", ":"), sort_keys=True)
