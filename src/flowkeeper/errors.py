"""Errors that reach operators as one clear line."""


class FlowkeeperError(Exception):
    """An operator-facing failure: the message is shown as one line, without a trace."""


class UsageError(FlowkeeperError):
    """Bad input on the command line or in a request."""
