"""Helpers shared by the command modules: output in text or JSON, progress lines."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(data: Any, as_json: bool, text: str) -> None:
    """Print `data` as JSON for scripts, or the human-readable `text`."""
    print(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise ValueError(f"must not be negative: {value}")
    return value
