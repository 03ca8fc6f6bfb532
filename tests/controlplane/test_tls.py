"""`flowkeeper server --tls-cert --tls-key` as a real process: clients with --ca work, without
it they fail with a one-line certificate error; non-loopback listening needs TLS."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkeeper.client import AsyncClient, Client, ServerUnavailable
from flowkeeper.lab.tls import TlsFiles, make_tls
from tests.controlplane.test_server_process import Proc

TOKEN = "tls-test-admin-token-0123456789"


def fk(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKEEPER_")}
    return subprocess.run(
        [sys.executable, "-m", "flowkeeper", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**base, **(env or {})},
    )


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls") / "tls")


class TlsServer(Proc):
    """A server process listening on 0.0.0.0 (any address: allowed with TLS); the tests
    talk to it on 127.0.0.1 only."""

    def __init__(self, tmp: Path, tls: TlsFiles) -> None:
        token_file = tmp / "admin.token"
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o600)
        self.token_file = token_file
        tls_args = ("--tls-cert", str(tls.cert), "--tls-key", str(tls.key))
        super().__init__(
            tmp / "db" / "fk.db", "--token-file", str(token_file), *tls_args, listen="0.0.0.0:0"
        )

    def log(self) -> str:
        """Stop the server (if running) and return all it wrote."""
        if self.p.poll() is None:
            super().stop()  # reads the rest of what it wrote
        elif self.p.stderr is not None:
            self.lines += self.p.stderr.readlines()
        return "".join(self.lines)


@pytest.fixture
def server(tmp_path: Path, tls: TlsFiles) -> Iterator[TlsServer]:
    proc = TlsServer(tmp_path, tls)
    yield proc
    proc.log()


def test_cli_over_tls_needs_the_ca(server: TlsServer, tls: TlsFiles) -> None:
    common = ["--server", server.url, "--token-file", str(server.token_file)]
    made = fk("network", "create", "net1", *common, "--ca", str(tls.ca))
    assert made.returncode == 0, made.stderr
    listed = fk("network", "list", *common, "--json", env={"FLOWKEEPER_CA": str(tls.ca)})
    assert listed.returncode == 0 and '"name": "net1"' in listed.stdout, listed.stderr
    # A host token made over TLS, printed once, works for that host's agent calls.
    host = fk("token", "create", "--host", "h1", *common, "--ca", str(tls.ca))
    assert host.returncode == 0, host.stderr
    secret = host.stdout.strip()
    assert secret.startswith("fk_tk") and "\n" not in secret
    # Without the CA the certificate is not trusted: one line that says what to do.
    bare = fk("network", "list", *common)
    assert bare.returncode == 1
    assert bare.stderr.count("\n") == 1, bare.stderr
    assert "TLS certificate of https://127.0.0.1:" in bare.stderr
    assert "not trusted (unable to get local issuer certificate)" in bare.stderr
    assert "--ca FILE" in bare.stderr
    # A plain-HTTP client against the TLS port gets nothing useful either.
    plain = fk("network", "list", *common[2:], "--server", server.url.replace("https", "http"))
    assert plain.returncode == 1
    log = server.log()
    assert TOKEN not in log and secret not in log  # tokens are never logged


def test_agent_client_over_tls(server: TlsServer, tls: TlsFiles) -> None:
    admin = Client(server.url, TOKEN, ca=tls.ca)
    secret = admin.create_token("host", "h1")["secret"]

    async def agent_calls() -> str:
        async with AsyncClient(server.url, secret, ca=tls.ca, timeout=10) as ac:
            await ac.register_host("h1", "198.18.0.1")
            async for event in ac.watch("h1", 0, idle_timeout=10):
                return event.kind
        return "none"

    assert asyncio.run(agent_calls()) == "heartbeat"
    assert admin.get_host("h1").tunnel_ip == "198.18.0.1"

    async def untrusted() -> None:
        async with AsyncClient(server.url, secret, timeout=10) as ac:
            await ac.register_host("h1", "198.18.0.1")

    with pytest.raises(ServerUnavailable, match=r"^TLS certificate of .* not trusted"):
        asyncio.run(untrusted())


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "198.18.0.1:9696"])
def test_non_loopback_listen_needs_tls(tmp_path: Path, tls: TlsFiles, listen: str) -> None:
    store = f"sqlite:{tmp_path / 'fk.db'}"
    refused = fk("server", "--listen", listen, "--store", store)
    assert refused.returncode == 2
    assert refused.stderr == (
        f"flowkeeper: error: --listen '{listen}': without TLS only 127.0.0.0/8; "
        "use --tls-cert and --tls-key to listen on other addresses\n"
    )
    assert not (tmp_path / "fk.db").exists()  # refused before anything was made


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--tls-cert", "CERT"], "--tls-cert and --tls-key go together"),
        (["--tls-cert", "/nonexistent.pem", "--tls-key", "KEY"], "cannot load TLS certificate"),
        (["--tls-cert", "KEY", "--tls-key", "KEY"], "cannot load TLS certificate"),
    ],
)
def test_bad_tls_files_are_one_line_errors(
    tmp_path: Path, tls: TlsFiles, extra: list[str], fragment: str
) -> None:
    argv = [a.replace("CERT", str(tls.cert)).replace("KEY", str(tls.key)) for a in extra]
    done = fk("server", "--listen", "127.0.0.1:0", "--store", f"sqlite:{tmp_path / 'x.db'}", *argv)
    assert done.returncode == 2 and fragment in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
