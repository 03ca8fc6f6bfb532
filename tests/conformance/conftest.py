"""One suite, two backends: every test here gets a `store` that is SQLite or etcd.

The etcd backend runs on a real single-member etcd (Debian's etcd-server) started for
the session; each test gets a key prefix of its own, so tests do not see each other's
objects. Tests that need a cluster of their own (compaction, member faults) start one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkeeper.lab.etcdcluster import EtcdCluster
from flowkeeper.store import open_store
from flowkeeper.store.base import Store

BACKENDS = ("sqlite", "etcd")


def require_etcd() -> None:
    if shutil.which("etcd") is not None:
        return
    if os.environ.get("CI"):
        pytest.fail("CI must run the etcd tests: etcd is not installed (scripts/install-deps.sh)")
    pytest.skip("etcd is not installed (scripts/install-deps.sh installs etcd-server)")


def one_member_cluster(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[EtcdCluster]:
    """A running 1-member etcd for a fixture to yield; removed afterwards."""
    require_etcd()
    cluster = EtcdCluster.create(tmp_path_factory.mktemp(name), 1)
    cluster.start_all()
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    yield from one_member_cluster(tmp_path_factory, "etcd")


def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:{tmp_path / 'store.db'}"
    cluster: EtcdCluster = request.getfixturevalue("etcd_cluster")
    return f"{cluster.url}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty store's URL on this test's backend."""
    return store_url(backend, tmp_path, request)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    """A fresh, empty store on this test's backend."""
    opened = open_store(url)
    try:
        yield opened
    finally:
        opened.close()


@contextlib.contextmanager
def dedicated_url(backend: str, tmp_path: Path, members: int = 1) -> Iterator[str]:
    """A store URL on a backend of its own: a new SQLite file, or a new etcd cluster (for
    tests that compact it or stop its members)."""
    if backend == "sqlite":
        yield f"sqlite:{tmp_path / 'own.db'}"
        return
    require_etcd()
    cluster = EtcdCluster.create(tmp_path / "etcd-own", members)
    try:
        cluster.start_all()
        yield cluster.url
    finally:
        cluster.remove()
