"""Move VIF devices from one switch slot's network namespace to the other's.

All of a failover's moves go in ONE `ip -force -batch -` run: one process, one netlink
socket, each device brought up in its new namespace by the same request that moves it.
The device names come from OVSDB (the agent's own reading of its host's VIFs) and are
checked before they reach `ip`; nothing goes through a shell.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterable

_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")  # IFNAMSIZ - 1
_NETNS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TIMEOUT_S = 10.0


class MoveError(Exception):
    """A move that `ip` refused or that did not finish."""


def valid_device(name: str) -> bool:
    return bool(_DEVICE.match(name))


def valid_netns(name: str) -> bool:
    return bool(_NETNS.match(name))


def batch(devices: Iterable[str], dst_netns: str) -> str:
    """The `ip -batch` input moving each device into `dst_netns` and bringing it up."""
    if not valid_netns(dst_netns):
        raise MoveError(f"not a namespace name: {dst_netns!r}")
    lines = []
    for dev in devices:
        if not valid_device(dev):
            raise MoveError(f"not a device name: {dev!r}")
        lines.append(f"link set dev {dev} netns {dst_netns} up\n")
    return "".join(lines)


_ABSENT = re.compile(r'Cannot find device "([^"]+)"')


def absent(stderr: str) -> tuple[set[str], bool]:
    """Devices `ip` did not find, and whether that was its only complaint."""
    names = set(_ABSENT.findall(stderr))
    other = [
        line
        for line in stderr.splitlines()
        if line.strip() and not _ABSENT.search(line) and not line.startswith("Command failed")
    ]
    return names, not other


def move(devices: list[str], src_netns: str, dst_netns: str) -> tuple[float, set[str]]:
    """Move the devices: (seconds it took, devices that were not there). MoveError if
    `ip` failed otherwise (with -force it goes on after a failed line)."""
    if not devices:
        return 0.0, set()
    text = batch(devices, dst_netns)
    argv = ["ip", *(["-n", src_netns] if src_netns else []), "-force", "-batch", "-"]
    t0 = time.perf_counter()
    out = subprocess.run(
        argv, input=text, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    took = time.perf_counter() - t0
    if out.returncode == 0:
        return took, set()
    missing, only = absent(out.stderr)
    if not only:
        raise MoveError(f"ip -batch failed ({out.returncode}): {out.stderr.strip()}")
    return took, missing
