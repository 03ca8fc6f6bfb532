"""`flowkeeper security-group ...` and the port create security options against a real
server (in this process's thread, and one run of the command against a server process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowkeeper.cli.main import build_parser
from tests.controlplane.conftest import LiveServer
from tests.controlplane.test_cli_cp import Capture, env, run
from tests.controlplane.test_server_process import Proc

__all__ = ["env"]  # the fixture, used by name


def test_group_commands(env: LiveServer, capsys: Capture) -> None:
    code, out, _ = run(capsys, "security-group", "create", "web", "--project", "tenant-a")
    assert code == 0 and out.startswith("created security group web (")
    assert out.strip().endswith("in project tenant-a, 2 rule(s)")
    code, out, _ = run(capsys, "security-group", "list", "--project", "tenant-a", "--json")
    groups = json.loads(out)
    assert sorted(g["name"] for g in groups) == ["default", "web"]  # default made on demand
    web = next(g for g in groups if g["name"] == "web")
    code, out, _ = run(
        capsys,
        *("security-group", "rule", "create", "web", "--project", "tenant-a"),
        *("--protocol", "tcp", "--dst-port", "8000:8080", "--remote-ip", "198.19.0.0/16"),
        "--json",
    )
    rule = json.loads(out)
    assert code == 0 and (rule["port_range_min"], rule["port_range_max"]) == (8000, 8080)
    assert rule["direction"] == "ingress" and rule["security_group_id"] == web["id"]
    code, out, _ = run(
        capsys,
        *("security-group", "rule", "create", web["id"], "--egress", "--protocol", "icmp"),
        *("--icmp-type", "8", "--remote-group", "default", "--project", "tenant-a"),
    )
    assert code == 0 and " egress IPv4 icmp 8 to group " in out
    code, out, _ = run(capsys, "security-group", "rule", "list", web["id"])
    assert code == 0 and out.splitlines()[0].split() == [
        "ID",
        "DIRECTION",
        "ETHERTYPE",
        "PROTOCOL",
        "PORTS",
        "REMOTE",
    ]
    assert "8000:8080" in out and "type 8" in out and len(out.splitlines()) == 5
    code, out, _ = run(capsys, "security-group", "show", web["id"])
    assert code == 0 and "project:     tenant-a" in out
    code, out, _ = run(capsys, "security-group", "rule", "delete", web["id"], rule["id"])
    assert code == 0 and out.startswith(f"deleted rule {rule['id']} of web")
    code, out, _ = run(capsys, "security-group", "delete", web["id"], "--json")
    assert code == 0 and json.loads(out)["deleted"] == web["id"]
    code, out, _ = run(capsys, "security-group", "list")
    assert code == 0 and "default" in out and "web" not in out


def test_port_create_security_options(env: LiveServer, capsys: Capture) -> None:
    run(capsys, "network", "create", "net1", "--cidr", "198.19.1.0/24", "--project", "t1")
    run(capsys, "security-group", "create", "web", "--project", "t1")
    base = ("port", "create", "--network", "net1", "--host", "h1", "--json")
    code, out, err = run(
        capsys,
        *base,
        *("--mac", "fa:16:3e:00:00:01", "--security-group", "web"),
        *("--allowed-address-pair", "198.19.1.50", "--allowed-address-pair"),
        "198.19.9.0/24,fa:16:3e:00:00:99",
    )
    assert code == 0, err
    port = json.loads(out)
    assert port["project_id"] == "t1" and port["port_security_enabled"] is True
    assert len(port["security_groups"]) == 1
    assert port["allowed_address_pairs"] == [
        {"ip_address": "198.19.1.50", "mac_address": "fa:16:3e:00:00:01"},
        {"ip_address": "198.19.9.0/24", "mac_address": "fa:16:3e:00:00:99"},
    ]
    code, out, _ = run(capsys, *base, "--mac", "fa:16:3e:00:00:02", "--no-security-group")
    assert json.loads(out)["security_groups"] == []
    code, out, _ = run(capsys, *base, "--mac", "fa:16:3e:00:00:03", "--no-port-security")
    assert json.loads(out)["port_security_enabled"] is False
    code, out, _ = run(capsys, *base, "--mac", "fa:16:3e:00:00:04")
    (default_id,) = json.loads(out)["security_groups"]
    code, out, _ = run(capsys, "security-group", "show", default_id, "--json")
    assert json.loads(out)["name"] == "default"


def test_port_set(env: LiveServer, capsys: Capture) -> None:
    run(capsys, "network", "create", "net1", "--project", "t1")
    run(capsys, "security-group", "create", "web", "--project", "t1")
    code, out, _ = run(
        capsys,
        *("port", "create", "--network", "net1", "--host", "h1", "--mac", "fa:16:3e:00:00:01"),
        "--json",
    )
    pid = json.loads(out)["id"]
    code, out, err = run(capsys, "port", "set", pid, "--security-group", "web", "--json")
    assert code == 0, err
    port = json.loads(out)
    assert len(port["security_groups"]) == 1
    code, out, err = run(capsys, "port", "set", pid, "--allowed-address-pair", "198.19.1.7")
    assert code == 0 and out.startswith(f"port {pid}: port security on, ")
    code, out, err = run(capsys, "port", "set", pid, "--no-port-security", "--json")
    port = json.loads(out)
    assert code == 0 and port["port_security_enabled"] is False
    assert port["security_groups"] == [] and port["allowed_address_pairs"] == []
    code, out, err = run(capsys, "port", "set", pid, "--security-group", "web")
    assert code == 1 and "would have security groups without port security" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["security-group", "rule", "create", "web", "--dst-port", "22"],
            "--dst-port needs --protocol tcp or udp",
        ),
        (
            ["security-group", "rule", "create", "web", "--protocol", "tcp", "--dst-port", "x"],
            "bad --dst-port 'x': use a port or a range, e.g. 22 or 8000:8080",
        ),
        (
            ["security-group", "rule", "create", "web", "--protocol", "tcp", "--dst-port", "9:1"],
            "bad tcp port range 9-1: port_range_min > port_range_max",
        ),
        (["security-group", "show", "nope"], "security group 'nope' not found (HTTP 404)"),
        (
            ["security-group", "create", "web"],
            None,
        ),
    ],
)
def test_bad_input_is_one_line(
    env: LiveServer, capsys: Capture, argv: list[str], message: str | None
) -> None:
    run(capsys, "security-group", "create", "web")
    code, out, err = run(capsys, *argv)
    if message is None:  # a second group of one name is fine (as in Neutron)
        assert code == 0, err
        code, out, err = run(capsys, "security-group", "show", "web")
        assert code == 1 and err.startswith("flowkeeper: error: 2 security groups are named 'web'")
        return
    assert code != 0 and out == ""
    assert err.strip() == f"flowkeeper: error: {message}" and len(err.splitlines()) == 1


def test_every_option_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("security-group", "port"):
        _check_help(sub.choices[name])  # type: ignore[index]


def _check_help(parser: object) -> None:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _check_help(child)
            continue
        if action.dest == "help":
            continue
        assert action.help, f"{parser.prog}: {action.option_strings or action.dest} has no help"


def test_the_commands_against_a_server_process(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("sg-cli-token-0123456789\n")
    token.chmod(0o600)
    proc = Proc(tmp_path / "fk.db", "--token-file", str(token))
    try:
        environ = {**os.environ, "FLOWKEEPER_SERVER": proc.url, "FLOWKEEPER_TOKEN": str(token)}
        environ.pop("FLOWKEEPER_TOKEN")

        def cli(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "flowkeeper", *argv, "--token-file", str(token)],
                capture_output=True,
                text=True,
                env=environ,
                timeout=60,
                check=False,
            )

        made = cli("security-group", "create", "db", "--json")
        assert made.returncode == 0, made.stderr
        group = json.loads(made.stdout)
        rule = cli(
            *("security-group", "rule", "create", "db", "--protocol", "tcp"),
            *("--dst-port", "5432", "--remote-group", "db", "--json"),
        )
        assert rule.returncode == 0, rule.stderr
        assert json.loads(rule.stdout)["remote_group_id"] == group["id"]
        gone = cli("security-group", "delete", "db")
        assert gone.returncode == 0 and gone.stdout.startswith("deleted security group db")
    finally:
        proc.stop()
