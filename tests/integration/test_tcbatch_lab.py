"""The kept-running `tc -batch` (agent/tcbatch.py) against a real namespace: it carries a
run out, reports its errors, and starts again when its process died."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from flowkeeper.agent import vifsteer
from flowkeeper.agent.steerwatch import SteerWatch
from flowkeeper.agent.tcbatch import TcBatch
from flowkeeper.lab.run import run
from tests.conftest import require_lab

pytestmark = pytest.mark.lab


@pytest.fixture
def ns() -> Iterator[str]:
    require_lab()
    name = f"fktb{uuid.uuid4().hex[:6]}"
    run(["ip", "netns", "add", name])
    try:
        for dev, peer in (("v11", "a11"), ("b11", "x11")):
            run(["ip", "-n", name, "link", "add", dev, "type", "veth", "peer", "name", peer])
        for dev in ("v11", "a11", "b11", "x11"):
            run(["ip", "-n", name, "link", "set", dev, "up"])
            run(["tc", "-n", name, "qdisc", "add", "dev", dev, "clsact"])
        yield name
    finally:
        run(["ip", "netns", "del", name])


def redirect_of(ns: str, dev: str) -> str | None:
    out = run(["tc", "-n", ns, "-j", "filter", "show", "dev", dev, "ingress"]).stdout
    return next(iter(vifsteer.parse_active(out).values()), None) if out.strip() else None


def test_a_kept_tc_steers_reports_errors_and_restarts(ns: str) -> None:
    batch = TcBatch(ns)
    batch.start()
    try:
        took = vifsteer.steer(ns, ["11"], "a", batch)
        assert took > 0 and redirect_of(ns, "v11") == "a"
        first = batch.proc
        assert first is not None and first.poll() is None  # still running, ready for more
        vifsteer.steer(ns, ["11"], "b", batch)
        assert redirect_of(ns, "v11") == "b" and batch.proc is first
        with pytest.raises(vifsteer.SteerError) as err:
            vifsteer.steer(ns, ["11", "99"], "a", batch)  # no v99: reported, v11 steered
        assert err.value.only_missing and "v99" in err.value.missing
        assert redirect_of(ns, "v11") == "a"
        first.kill()
        first.wait()
        vifsteer.steer(ns, ["11"], "b", batch)  # a new tc, started for this run
        assert redirect_of(ns, "v11") == "b" and batch.proc is not first
    finally:
        batch.close()
    assert batch.proc is None


def _until(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_steer_watch_follows_every_steer_and_its_monitor_restarting(ns: str) -> None:
    vifsteer.steer(ns, ["11"], "a")  # before the watch: read once
    watch = SteerWatch(ns)
    watch.start()
    try:
        assert watch.unknown(["11"]) == ["11"] and watch.snapshot() == {}
        watch.learn(["11"])
        assert watch.snapshot() == {"11": "a"}
        for slot in ("b", "a", "b"):
            vifsteer.steer(ns, ["11"], slot)
            assert _until(lambda s=slot: watch.snapshot().get("11") == s), slot  # type: ignore[misc]
        first = watch.proc
        assert first is not None
        first.kill()  # its monitor died: nothing is known until it runs again
        assert _until(lambda: watch.proc is not first and watch.running)
        assert watch.unknown(["11"]) == ["11"]
        watch.learn(["11"])
        assert watch.snapshot() == {"11": "b"}
    finally:
        watch.close()
    assert watch.proc is not None and watch.proc.poll() is not None
    assert watch.snapshot() == {}
