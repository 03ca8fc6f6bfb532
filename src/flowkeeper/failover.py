"""Several servers: the list, which one to use next, how long to wait, which requests may
be sent again; pure (no I/O, no clock, no randomness of its own)."""

from __future__ import annotations

import urllib.parse
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flowkeeper.errors import UsageError

__all__ = [
    "AGENT_BACKOFF",
    "CLI_BACKOFF",
    "Backoff",
    "Budget",
    "ServerPool",
    "cli_budget",
    "parse_servers",
    "retry_safe",
    "start_index",
]

# Methods whose repetition changes nothing more than the first success did: every PUT of
# the API (host registration and heartbeat, port status, port binding) sets a state.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT"})


def check_server_url(text: str) -> str:
    """One server URL, normalised (no trailing slash); UsageError if it is not http(s)://H:P."""
    url = text.strip().rstrip("/")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError for a port that is not a number in range
    except ValueError:
        raise UsageError(f"bad server URL {url!r}: use http://HOST:PORT") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username is not None
        or (port is None and ":" in parts.netloc.rsplit("]", 1)[-1])
    ):
        raise UsageError(f"bad server URL {url!r}: use http://HOST:PORT")
    return url


def parse_servers(text: str | Sequence[str]) -> list[str]:
    """`URL1,URL2,...` (or a list of URLs) as a list of checked URLs, in order.

    Refused with one line: an empty item, a bad URL, a URL given twice, http mixed with
    https (one --ca serves all of them)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    if not items or all(not item.strip() for item in items):
        raise UsageError("no server URL given: use http://HOST:PORT[,http://HOST:PORT...]")
    urls: list[str] = []
    for item in items:
        if not item.strip():
            raise UsageError(f"empty server URL in {','.join(items)!r}")
        url = check_server_url(item)
        if url in urls:
            raise UsageError(f"server URL {url} is given twice")
        urls.append(url)
    schemes = {urllib.parse.urlsplit(u).scheme for u in urls}
    if len(schemes) > 1:
        raise UsageError("the server URLs mix http and https: use one scheme for all")
    return urls


def start_index(name: str, count: int) -> int:
    """Which of `count` servers a host starts with: stable per host, spread over the list,
    so that a thousand agents given the same list do not all load the first server."""
    return zlib.crc32(name.encode()) % count if count > 0 else 0


class ServerPool:
    """The servers and the one in use. Shared by every caller of one client (the agent's
    watch, heartbeat and status reports), so they all move together."""

    def __init__(self, urls: Sequence[str], start: int = 0) -> None:
        if not urls:
            raise UsageError("no server URL given")
        self.urls = list(urls)
        self.index = start % len(self.urls)

    @property
    def current(self) -> str:
        return self.urls[self.index]

    def __len__(self) -> int:
        return len(self.urls)

    def failed(self, url: str) -> str | None:
        """`url` failed: move to the next server if `url` is still the current one.

        Returns the server moved to (the same one when there is only one), or None when
        another caller already moved away from `url` (so two callers that see one server
        die move once, not twice)."""
        if url != self.current:
            return None
        self.index = (self.index + 1) % len(self.urls)
        return self.current


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: before the n-th consecutive retry wait a
    uniformly random time in [0, min(cap, base * 2**(n-1)))."""

    base_s: float
    cap_s: float

    def ceiling(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return min(self.cap_s, self.base_s * 2.0 ** min(failures - 1, 60))

    def delay(self, failures: int, rand: Callable[[], float]) -> float:
        """`rand` returns a float in [0, 1) (random.random)."""
        return self.ceiling(failures) * rand()


AGENT_BACKOFF = Backoff(base_s=0.2, cap_s=5.0)  # the agent: forever, at most 5 s apart
CLI_BACKOFF = Backoff(base_s=0.1, cap_s=2.0)


@dataclass(frozen=True)
class Budget:
    """How many attempts (in all, over every server) and how long a request may take."""

    attempts: int
    seconds: float

    def allows(self, attempts_done: int, elapsed_s: float) -> bool:
        """May another attempt start?"""
        return attempts_done < self.attempts and elapsed_s < self.seconds


def cli_budget(servers: int) -> Budget:
    """One server: one attempt (as without failover). Several: each server twice."""
    return Budget(attempts=1 if servers <= 1 else 2 * servers, seconds=30.0)


def retry_safe(method: str, sent: bool) -> bool:
    """May a request that failed be sent (to another server)?

    `sent`: the request may have reached a server (the connection broke after it was
    written, the answer timed out, or a server answered 503). A request that surely did
    not reach one (the connection was refused or never made) may always go again; one
    that may have been applied only if repeating it is harmless (GET, PUT)."""
    return not sent or method.upper() in IDEMPOTENT_METHODS
