"""The API token: where the server gets it, and the constant-time check on every write."""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from flowkeeper.cperrors import Unauthorized
from flowkeeper.errors import UsageError
from flowkeeper.fsutil import atomic_write
from flowkeeper.store import sqlite_path

TOKEN_ENV = "FLOWKEEPER_TOKEN"  # noqa: S105 - a variable name, not a secret
TOKEN_FILE_NAME = "token"  # noqa: S105 - a file name


def check_token_text(token: str, where: str) -> str:
    token = token.strip()
    if not token or any(c.isspace() for c in token) or not token.isprintable():
        raise UsageError(f"bad token in {where}: must be one word of printable characters")
    return token


def read_token_file(path: Path) -> str:
    try:
        return check_token_text(path.read_text(), str(path))
    except FileNotFoundError:
        raise UsageError(f"token file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read token file {path}: {exc}") from None


def load_token(token_file: Path | None, env: Mapping[str, str], store_url: str) -> tuple[str, str]:
    """(token, where it came from): --token-file, else $FLOWKEEPER_TOKEN, else the file
    `token` next to the SQLite database, generated (mode 0600) on first start."""
    if token_file is not None:
        return read_token_file(token_file), str(token_file)
    if env.get(TOKEN_ENV):
        return check_token_text(env[TOKEN_ENV], f"${TOKEN_ENV}"), f"${TOKEN_ENV}"
    db = sqlite_path(store_url)
    if db is None:
        raise UsageError(f"give the server a token: --token-file PATH or ${TOKEN_ENV}")
    path = db.parent / TOKEN_FILE_NAME
    if path.exists():
        os.chmod(path, 0o600)
        return read_token_file(path), str(path)
    token = secrets.token_urlsafe(32)
    atomic_write(path, (token + "\n").encode(), mode=0o600)
    return token, f"{path} (generated)"


def check_bearer(header: str | None, token: str) -> None:
    """Raise Unauthorized unless `header` is 'Bearer <token>' (compared in constant time)."""
    if not header:
        raise Unauthorized("missing token: writes need 'Authorization: Bearer TOKEN'")
    scheme, _, given = header.strip().partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("bad Authorization header: expected 'Bearer TOKEN'")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("wrong token")
