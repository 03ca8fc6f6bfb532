"""Where a reconcile's time goes, for its log line."""

from __future__ import annotations

import time


class Phases:
    """Wall-clock time per named phase, measured from one mark to the next."""

    def __init__(self) -> None:
        self.started = self._last = time.monotonic()
        self.spent: dict[str, float] = {}

    def mark(self, name: str) -> None:
        """The time since the previous mark was spent on `name`."""
        now = time.monotonic()
        self.spent[name] = self.spent.get(name, 0.0) + now - self._last
        self._last = now

    def total_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000

    def summary(self) -> str:
        return ", ".join(f"{name} {sec * 1000:.0f}" for name, sec in self.spent.items())
