"""Control-plane errors shared by the store, server and clients, each with its HTTP status."""

from __future__ import annotations

from flowkeeper.errors import FlowkeeperError, UsageError
from flowkeeper.validation import ValidationError

__all__ = [
    "Compacted",
    "Conflict",
    "Forbidden",
    "MissingReference",
    "NotFound",
    "StoreError",
    "StoreUnavailable",
    "Unauthorized",
    "ValidationError",
    "http_status",
]


class StoreError(FlowkeeperError):
    """The store failed (I/O, corruption): not the caller's fault."""

    status = 500


class StoreUnavailable(StoreError):
    """The store cannot be reached or has no quorum (etcd): try again later."""

    status = 503


class NotFound(FlowkeeperError):
    """The named network, port or host does not exist."""

    status = 404


class MissingReference(NotFound):
    """An object the request's body names (a port's security group, a rule's remote group)
    does not exist. 404 on a create; an operation on an existing object answers 409 (the
    object at its path is there: see the API docs)."""


class Conflict(FlowkeeperError):
    """The write clashes with what is stored (duplicate name, MAC, IP, segment; ports left)."""

    status = 409


class Compacted(FlowkeeperError):
    """The revision asked for is no longer in the event log (or is ahead of it): re-list."""

    status = 410


class Unauthorized(FlowkeeperError):
    """A request without a valid bearer token (missing, unknown or revoked)."""

    status = 401


class Forbidden(FlowkeeperError):
    """A valid token that may not do this (a host token acting for another host, ...)."""

    status = 403


def http_status(exc: FlowkeeperError) -> int:
    """The HTTP status an error maps to: 400 for bad input, its own status, else 500."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status
    return 400 if isinstance(exc, UsageError) else 500
