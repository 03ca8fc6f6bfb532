"""Errors of the OVS access layer; each message is one line for operators."""

from __future__ import annotations

from flowkeeper.errors import FlowkeeperError


class OvsdbError(FlowkeeperError):
    """ovsdb-server is unreachable or refused a transaction."""


class OpenFlowError(FlowkeeperError):
    """The switch refused a request, or could not be reached."""

    def __init__(self, message: str, err_type: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.err_type = err_type
        self.code = code
