"""One lab host's Open vSwitch: its own ovsdb-server and ovs-vswitchd, files under its dir."""

from __future__ import annotations

import re
import time
from pathlib import Path

from flowkeeper.lab import procs
from flowkeeper.lab.run import LabError, run
from flowkeeper.lab.state import HostState

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
DAEMONS = ("ovsdb-server", "ovs-vswitchd")
# The niceness `ovs-ctl start` gives both daemons by default (--ovs-vswitchd-priority,
# --ovsdb-server-priority), as Debian's units run them: under load the switch is not
# starved by the processes beside it. Starved, a userspace vswitchd's underlay packet
# socket overflows (its receive buffer holds ~200 frames) and every VM behind it loses
# packets at once.
OVS_NICE = -10


def _niced(argv: list[str]) -> list[str]:
    return ["nice", "-n", str(OVS_NICE), *argv]


def _env(host: HostState) -> dict[str, str]:
    d = host.dir
    return {
        "OVS_RUNDIR": f"{d}/run",
        "OVS_DBDIR": d,
        "OVS_LOGDIR": d,
        "OVS_SYSCONFDIR": d,
        "OVS_PKGDATADIR": "/usr/share/openvswitch",
    }


def vsctl(host: HostState, *args: str, timeout: float = 30.0) -> str:
    argv = ["ovs-vsctl", f"--db=unix:{host.db_sock}", f"--timeout={int(timeout)}", *args]
    return run(argv, timeout=timeout + 5).stdout


def start_ovsdb(host: HostState) -> int:
    """Start ovsdb-server on the host's conf.db (created on first start)."""
    d = Path(host.dir)
    (d / "run").mkdir(parents=True, exist_ok=True)
    db = d / "conf.db"
    fresh = not db.exists()
    if fresh:
        run(["ovsdb-tool", "create", str(db), str(SCHEMA)])
    (d / "run" / "db.sock").unlink(missing_ok=True)
    run(
        _niced(
            [
                "ovsdb-server",
                str(db),
                f"--remote=punix:{d}/run/db.sock",
                f"--pidfile={d}/ovsdb-server.pid",
                f"--unixctl={d}/ovsdb-server.ctl",
                f"--log-file={d}/ovsdb-server.log",
                "--detach",
                "--no-chdir",
            ]
        ),
        ns=host.ns,
        env=_env(host),
    )
    pid = _pid(host, "ovsdb-server")
    if fresh:
        vsctl(host, "--no-wait", "init")
    return pid


def start_vswitchd(host: HostState) -> int:
    """Start ovs-vswitchd inside the host namespace (userspace datapath)."""
    d = host.dir
    vsctl(
        host,
        "--no-wait",
        "set",
        "Open_vSwitch",
        ".",
        "other_config:n-handler-threads=1",
        "other_config:n-revalidator-threads=1",
        f"external_ids:hostname={host.name}",
        f"external_ids:system-id={host.name}",
    )
    run(
        _niced(
            [
                "ovs-vswitchd",
                f"unix:{d}/run/db.sock",
                f"--pidfile={d}/ovs-vswitchd.pid",
                f"--unixctl={d}/ovs-vswitchd.ctl",
                f"--log-file={d}/ovs-vswitchd.log",
                "--detach",
                "--no-chdir",
            ]
        ),
        ns=host.ns,
        env=_env(host),
        timeout=60,
    )
    return _pid(host, "ovs-vswitchd")


def _pid(host: HostState, daemon: str) -> int:
    pid = procs.read_pidfile(Path(host.dir) / f"{daemon}.pid")
    if pid is None or not procs.alive(pid):
        raise LabError(f"{daemon} of {host.name} did not start; see {host.dir}/{daemon}.log")
    return pid


def stop_daemons(host: HostState, *, hard: bool = False) -> None:
    """Stop the host's OVS daemons by PID (SIGKILL if hard: a simulated power loss)."""
    for daemon in reversed(DAEMONS):
        pids = {host.pids.get(daemon), procs.read_pidfile(Path(host.dir) / f"{daemon}.pid")}
        for pid in pids:
            if pid:
                procs.stop(pid, host.dir, hard=hard)
        host.pids.pop(daemon, None)


def wait_bridge_sockets(host: HostState, bridges: list[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(Path(host.mgmt(b)).exists() for b in bridges):
            return
        time.sleep(0.02)
    raise LabError(f"{host.name}: bridge sockets did not appear in {timeout:.0f}s")


# --- what ovs-ctl restart does around the restart (utilities/ovs-lib.in) ---------------
_STATS = re.compile(r"(idle_age|hard_age)=[^,]*,")


def save_flows(host: HostState) -> dict[str, str]:
    """ovs-save save-flows: every bridge's flows, without stats or port names."""
    saved = {}
    for bridge in vsctl(host, "--", "--real", "list-br").split():
        mgmt = f"unix:{host.mgmt(bridge)}"
        argv = ["ovs-ofctl", "-O", "OpenFlow15", "dump-flows", "--no-names", "--no-stats", mgmt]
        out = run(argv).stdout
        lines = [_STATS.sub("", x) for x in out.splitlines() if "_FLOW" not in x]
        saved[bridge] = "\n".join(line.strip() for line in lines if line.strip()) + "\n"
    return saved


def flow_restore_wait(host: HostState) -> None:
    vsctl(host, "--no-wait", "set", "Open_vSwitch", ".", "other_config:flow-restore-wait=true")


def restore_flows(host: HostState, saved: dict[str, str]) -> None:
    """The saved script: replace-flows --bundle on each bridge."""
    for bridge, text in saved.items():
        mgmt = f"unix:{host.mgmt(bridge)}"
        run(["ovs-ofctl", "-O", "OpenFlow15", "--bundle", "replace-flows", mgmt, "-"], stdin=text)


def flow_restore_complete(host: HostState) -> None:
    vsctl(
        host,
        "--no-wait",
        "--if-exists",
        "remove",
        "Open_vSwitch",
        ".",
        "other_config",
        "flow-restore-wait=true",
    )


# --- the userspace datapath's conntrack (inside ovs-vswitchd; `conntrack -L` misses it) ---
def appctl(host: HostState, *args: str, timeout: float = 10.0) -> str:
    """ovs-appctl against the host's ovs-vswitchd."""
    target = host.path("ovs-vswitchd.ctl")
    argv = ["ovs-appctl", f"--timeout={int(timeout)}", "-t", target, *args]
    return run(argv, timeout=timeout + 5).stdout


def conntrack(host: HostState, zone: int | None = None) -> list[str]:
    """The host's conntrack entries (`dpctl/dump-conntrack -m`), of one zone or all."""
    args = ["dpctl/dump-conntrack", "-m", *([f"zone={zone}"] if zone is not None else [])]
    return [line for line in appctl(host, *args).splitlines() if line.strip()]
