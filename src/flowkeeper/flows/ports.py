"""Which OVS ports a canonical flow line names (in its match or its actions)."""

from __future__ import annotations

import re

_PORT_REFS = re.compile(r'(?:in_port=|output:)"?([A-Za-z][^,"()\[\]\s]*)"?')
_RESERVED = frozenset({"IN_PORT", "NORMAL", "LOCAL", "FLOOD", "ALL", "CONTROLLER"})


def ports_named(text: str) -> set[str]:
    """Port names in one flow line, or in many lines joined by newlines."""
    return {
        m
        for m in _PORT_REFS.findall(text)
        if m not in _RESERVED and not m.startswith(("NXM_", "OXM_"))
    }
