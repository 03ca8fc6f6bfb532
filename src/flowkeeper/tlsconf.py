"""TLS for the API: the server's context from a cert and key, a client's from a CA file."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path

from flowkeeper.errors import UsageError

CA_ENV = "FLOWKEEPER_CA"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return " ".join(str(exc.reason or exc).split())
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split())


def server_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """None without TLS; both files or neither."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UsageError("--tls-cert and --tls-key go together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(
            f"cannot load TLS certificate {cert} and key {key}: {_reason(exc)}"
        ) from None
    return ctx


def resolve_ca(ca: str | Path | None, env: Mapping[str, str] | None = None) -> Path | None:
    """--ca, else $FLOWKEEPER_CA, else None (the system's trusted CAs)."""
    env = os.environ if env is None else env
    text = str(ca) if ca else env.get(CA_ENV, "")
    return Path(text) if text else None


def client_context(ca: Path | None) -> ssl.SSLContext:
    """Verifies the server's certificate and name against `ca` (else the system's CAs)."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load CA file {ca}: {_reason(exc)}") from None
    return ctx


def describe_tls_error(exc: BaseException, url: str) -> str | None:
    """A one-line message for a certificate failure, None for other errors."""
    cause: BaseException | None = exc
    for _ in range(5):  # urllib and aiohttp wrap the ssl error once or twice
        if cause is None:
            return None
        why = getattr(cause, "verify_message", None)  # aiohttp's wrapper has none
        if isinstance(cause, ssl.SSLCertVerificationError) and why is not None:
            return (
                f"TLS certificate of {url} not trusted ({why}): "
                f"give its CA with --ca FILE or ${CA_ENV}"
            )
        if isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.CertificateError):
            return f"TLS handshake with {url} failed: {_reason(cause)}"
        cause = _inner(cause)
    return None


def _inner(exc: BaseException) -> BaseException | None:
    for name in ("certificate_error", "reason", "os_error", "__cause__", "__context__"):
        inner = getattr(exc, name, None)
        if isinstance(inner, BaseException) and inner is not exc:
            return inner
    return None
