"""An etcd cluster of local members (Debian's etcd-server), for the lab and the tests.

Each member listens on 127.0.0.1 (client and peer ports), keeps its data under the
cluster's directory and is tracked by PID; stop() and stop_all() end only those PIDs.
The cluster's layout (names, ports, token) is saved in DIR/cluster.json so that a
member can be stopped and started again by a later command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from flowkeeper.errors import FlowkeeperError
from flowkeeper.fsutil import atomic_write
from flowkeeper.lab import procs

ETCD = "etcd"
START_TIMEOUT_S = 30.0


class EtcdError(FlowkeeperError):
    """An etcd member could not be started or stopped."""


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1."""
    import socket

    socks, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
            ports.append(int(sock.getsockname()[1]))
    finally:
        for sock in socks:
            sock.close()
    return ports


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    pid: int = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"


class EtcdCluster:
    """`EtcdCluster.create(dir, 3).start_all()`; later `EtcdCluster.load(dir).stop(1)`."""

    def __init__(self, directory: Path, members: list[Member], token: str) -> None:
        self.dir = directory
        self.members = members
        self.token = token

    # --- layout -------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path, size: int = 3) -> EtcdCluster:
        if not 1 <= size <= 7:
            raise EtcdError(f"an etcd cluster has 1 to 7 members, not {size}")
        if shutil.which(ETCD) is None:
            raise EtcdError("etcd is not installed (apt-get install etcd-server)")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        ports = free_ports(2 * size)
        members = [Member(f"m{i + 1}", ports[2 * i], ports[2 * i + 1]) for i in range(size)]
        cluster = cls(directory, members, f"flowkeeper-{os.getpid()}-{time.time_ns()}")
        cluster.save()
        return cluster

    @classmethod
    def load(cls, directory: Path) -> EtcdCluster:
        try:
            data = json.loads((directory / "cluster.json").read_text())
            members = [Member(**m) for m in data["members"]]
            return cls(directory, members, str(data["token"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EtcdError(f"no etcd cluster in {directory}: {exc}") from None

    def save(self) -> None:
        data = {"token": self.token, "members": [asdict(m) for m in self.members]}
        atomic_write(self.dir / "cluster.json", json.dumps(data, indent=2).encode())

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        """The store URL for `flowkeeper server --store`."""
        return "etcd://" + ",".join(self.endpoints)

    def member(self, index: int) -> Member:
        """Member by 1-based index, as the lab's commands number them."""
        if not 1 <= index <= len(self.members):
            raise EtcdError(f"no etcd member {index}: the cluster has 1..{len(self.members)}")
        return self.members[index - 1]

    def data_dir(self, member: Member) -> Path:
        return self.dir / member.name / "data"

    # --- processes ----------------------------------------------------------
    def argv(self, member: Member, *, new: bool) -> list[str]:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        return [
            ETCD,
            "--name",
            member.name,
            "--data-dir",
            str(self.data_dir(member)),
            "--listen-client-urls",
            member.client_url,
            "--advertise-client-urls",
            member.client_url,
            "--listen-peer-urls",
            member.peer_url,
            "--initial-advertise-peer-urls",
            member.peer_url,
            "--initial-cluster",
            initial,
            "--initial-cluster-token",
            self.token,
            "--initial-cluster-state",
            "new" if new else "existing",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]

    def start(self, index: int, *, wait: bool = True) -> Member:
        member = self.member(index)
        if member.pid and procs.is_ours(member.pid, str(self.dir)):
            return member
        data = self.data_dir(member)
        new = not (data / "member").exists()
        data.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = self.dir / member.name / "etcd.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                self.argv(member, new=new),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        member.pid = proc.pid
        self.save()
        if wait and not new:
            self.wait_serving(index)
        return member

    def start_all(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start every member (a new cluster needs a quorum up before any is healthy)."""
        for i in range(1, len(self.members) + 1):
            self.start(i, wait=False)
        for i in range(1, len(self.members) + 1):
            self.wait_serving(i, timeout)

    def wait_serving(self, index: int, timeout: float = START_TIMEOUT_S) -> None:
        """Until the member answers /health with true (it has a leader)."""
        member = self.member(index)
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if not procs.alive(member.pid):
                raise EtcdError(
                    f"etcd member {member.name} exited while starting; see "
                    f"{self.dir / member.name / 'etcd.log'}"
                )
            try:
                with urllib.request.urlopen(f"{member.client_url}/health", timeout=2) as resp:  # noqa: S310
                    body = json.loads(resp.read())
                if str(body.get("health")) == "true":
                    return
                last = str(body)
            except (OSError, ValueError, urllib.error.URLError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise EtcdError(f"etcd member {member.name} not healthy after {timeout:.0f}s: {last}")

    def stop(self, index: int, *, hard: bool = False) -> bool:
        """SIGTERM (or SIGKILL with hard) the member's own PID. False if it was not running."""
        member = self.member(index)
        if not member.pid:
            return False
        stopped = procs.stop(member.pid, str(self.dir), hard=hard)
        member.pid = 0
        self.save()
        return stopped

    def stop_all(self, *, hard: bool = False) -> None:
        for i in range(1, len(self.members) + 1):
            self.stop(i, hard=hard)

    def running(self) -> list[int]:
        """1-based indexes of the members whose process is up."""
        return [
            i + 1
            for i, m in enumerate(self.members)
            if m.pid and procs.is_ours(m.pid, str(self.dir))
        ]

    def status(self, index: int) -> dict[str, str]:
        """Member `index`'s own status: its member id and the leader it knows ("" if it
        does not answer)."""
        member = self.member(index)
        req = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 of our member
            f"{member.client_url}/v3/maintenance/status", data=b"{}", method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310
                body = json.loads(resp.read())
            return {"id": str(body["header"]["member_id"]), "leader": str(body["leader"])}
        except (OSError, ValueError, KeyError, urllib.error.URLError):
            return {"id": "", "leader": ""}

    def leader(self) -> int | None:
        """The 1-based index of the leader, as the running members see it (None: no one
        answers, or they name no member they know)."""
        statuses = {i: self.status(i) for i in self.running()}
        ids = {st["id"]: i for i, st in statuses.items() if st["id"]}
        for st in statuses.values():
            if st["leader"] in ids:
                return ids[st["leader"]]
        return None

    def remove(self) -> None:
        """Stop every member and delete the cluster's directory."""
        self.stop_all(hard=True)
        shutil.rmtree(self.dir, ignore_errors=True)
