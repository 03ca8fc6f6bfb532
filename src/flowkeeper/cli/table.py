"""Plain-text tables and times for the client commands' human-readable output."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart, with an upper-case header line."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [[h.upper() for h in headers], *cells]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(line.rstrip() for line in out)


def ago(when: float, now: float) -> str:
    """'3s ago', '5m ago', '2h ago', 'never'."""
    if when <= 0:
        return "never"
    secs = max(0, int(now - when))
    if secs < 120:
        return f"{secs}s ago"
    if secs < 7200:
        return f"{secs // 60}m ago"
    return f"{secs // 3600}h ago"


def fields(pairs: Iterable[tuple[str, object]]) -> str:
    """'key: value' lines, keys aligned."""
    items = [(k, "-" if v in (None, "") else str(v)) for k, v in pairs]
    width = max((len(k) for k, _ in items), default=0)
    return "\n".join(f"{k + ':':{width + 1}} {v}" for k, v in items)
