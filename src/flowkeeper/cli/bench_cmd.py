"""`flowkeeper bench ...`: benchmarks that print and save their numbers."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    sub.add_parser("bench", help="benchmarks (JSON results)")
