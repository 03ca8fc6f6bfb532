"""The client commands (network, port, host) against a real server, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowkeeper.cli.main import main
from tests.controlplane.conftest import TOKEN, LiveServer

Capture = pytest.CaptureFixture[str]


@pytest.fixture
def env(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> LiveServer:
    monkeypatch.setenv("FLOWKEEPER_SERVER", server.url)
    monkeypatch.setenv("FLOWKEEPER_TOKEN", TOKEN)
    return server


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_network_and_port_commands(env: LiveServer, capsys: Capture) -> None:
    code, out, _ = run(
        capsys,
        "network",
        "create",
        "net1",
        "--type",
        "vxlan",
        "--segmentation-id",
        "1001",
        "--cidr",
        "198.19.1.0/24",
    )
    assert code == 0 and out.startswith("created network net1")
    code, out, _ = run(
        capsys,
        "port",
        "create",
        "--network",
        "net1",
        "--host",
        "h1",
        "--mac",
        "fa:16:3e:00:00:01",
        "--ip",
        "198.19.1.10",
        "--name",
        "x",
        "--json",
    )
    port = json.loads(out)
    assert code == 0 and port["fixed_ips"] == ["198.19.1.10"] and port["name"] == "x"
    code, out, _ = run(capsys, "network", "list")
    assert code == 0 and out.splitlines()[0].split() == [
        "NAME",
        "ID",
        "TYPE",
        "SEGMENT",
        "CIDR",
        "REVISION",
    ]
    assert "net1" in out and "1001" in out and "198.19.1.0/24" in out
    code, out, _ = run(capsys, "port", "list", "--network", "net1", "--json")
    assert [p["id"] for p in json.loads(out)] == [port["id"]]
    code, out, _ = run(capsys, "network", "show", "net1")
    assert "ports:" in out and "1001" in out
    env.client().register_host("h1", "198.18.0.1", state="in-sync", revision=2)
    code, out, _ = run(capsys, "host", "list")
    assert code == 0 and "198.18.0.1" in out and "in-sync" in out and "s ago" in out
    assert run(capsys, "port", "delete", port["id"])[0] == 0
    assert run(capsys, "network", "delete", "net1")[0] == 0
    assert "no networks" in run(capsys, "network", "list")[1]


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (
            ["port", "create", "--network", "net1", "--host", "h1", "--mac", "zz:00:00:00:00:01"],
            2,
            "bad MAC address 'zz:00:00:00:00:01'",
        ),
        (
            [
                "port",
                "create",
                "--network",
                "net1",
                "--host",
                "h1",
                "--mac",
                "fa:16:3e:00:00:09",
                "--ip",
                "198.19.1.999",
            ],
            2,
            "bad IP address '198.19.1.999'",
        ),
        (
            ["port", "create", "--network", "nope", "--host", "h1", "--mac", "fa:16:3e:00:00:09"],
            1,
            "network 'nope' not found",
        ),
        (
            [
                "port",
                "create",
                "--network",
                "net1",
                "--host",
                "h1",
                "--mac",
                "fa:16:3e:00:00:09",
                "--ip",
                "10.0.0.1",
            ],
            1,
            "IP 10.0.0.1 is outside network 'net1'",
        ),
        (
            ["network", "create", "net2", "--segmentation-id", "20000000"],
            2,
            "segmentation_id 20000000 out of range 1..16777215 for vxlan",
        ),
        (["network", "create", "net1"], 1, "network name 'net1' already exists (HTTP 409)"),
        (["network", "create", "net2", "--segmentation-id", "x"], 2, "invalid int value"),
        (["network", "delete", "net1"], 1, "still has 1 port(s)"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(
    env: LiveServer, capsys: Capture, argv: list[str], code: int, fragment: str
) -> None:
    c = env.client()
    net = c.create_network("net1", "vxlan", segmentation_id=1001, cidr="198.19.1.0/24")
    c.create_port(net.id, "h1", "fa:16:3e:00:00:01", ["198.19.1.10"])
    before = env.snapshot()
    got, out, err = run(capsys, *argv)
    assert got == code and out == ""
    assert err.count("\n") == 1 and err.startswith("flowkeeper: error: ") and fragment in err
    assert env.snapshot() == before


def test_writes_without_a_token_fail_cleanly(
    server: LiveServer, capsys: Capture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FLOWKEEPER_TOKEN", raising=False)
    monkeypatch.setenv("FLOWKEEPER_SERVER", server.url)
    code, _, err = run(capsys, "network", "create", "net1")
    assert code == 1 and "missing token" in err and "(HTTP 401)" in err
    wrong = tmp_path / "tok"
    wrong.write_text("nope\n")
    code, _, err = run(capsys, "network", "create", "net1", "--token-file", str(wrong))
    assert code == 1 and "unknown or revoked token" in err
    code, _, err = run(capsys, "network", "list", "--token-file", str(tmp_path / "missing"))
    assert code == 2 and "cannot read token file" in err


def test_unreachable_server_and_bad_listen(capsys: Capture) -> None:
    code, _, err = run(capsys, "network", "list", "--server", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach the server at http://127.0.0.1:9" in err
    code, _, err = run(capsys, "server", "--listen", "0.0.0.0:9696", "--store", "sqlite:/x/y")
    assert code == 2 and "without TLS only 127.0.0.0/8" in err
    code, _, err = run(capsys, "network", "list", "--server", "ftp://x")
    assert code == 2 and "bad server URL" in err
