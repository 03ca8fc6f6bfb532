"""`flowkeeper token create|list|revoke` against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowkeeper.cli.main import main
from tests.controlplane.conftest import TOKEN, LiveServer

Capture = pytest.CaptureFixture[str]


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def env(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> LiveServer:
    monkeypatch.setenv("FLOWKEEPER_SERVER", server.url)
    monkeypatch.setenv("FLOWKEEPER_TOKEN", TOKEN)
    return server


def test_token_create_list_revoke(env: LiveServer, capsys: Capture, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "token", "create", "--host", "h1", "--note", "rack 1")
    assert code == 0 and out.startswith("fk_tk") and out.count("\n") == 1
    secret = out.strip()
    code, out, _ = run(capsys, "token", "create", "--read-only", "--json")
    reader = json.loads(out)
    assert code == 0 and reader["role"] == "read-only" and reader["secret"].startswith("fk_")
    code, out, _ = run(capsys, "token", "create", "--admin", "--json")
    assert code == 0 and json.loads(out)["role"] == "admin"

    code, out, _ = run(capsys, "token", "list")
    assert code == 0 and "rack 1" in out and "read-only" in out and " h1 " in out
    assert secret not in out and reader["secret"] not in out
    code, out, _ = run(capsys, "token", "list", "--json")
    listed = json.loads(out)
    assert len(listed) == 3 and all("secret" not in t and "digest" not in t for t in listed)

    # The host token works for its host only, through the CLI too.
    host_file = tmp_path / "h1.token"
    host_file.write_text(secret + "\n")
    code, _, err = run(capsys, "host", "list", "--token-file", str(host_file))
    assert code == 1 and "(HTTP 403)" in err and "may not GET /v1/hosts" in err

    h1_id = next(t["id"] for t in listed if t["host"] == "h1")
    code, out, _ = run(capsys, "token", "revoke", h1_id)
    assert code == 0 and out == f"revoked {h1_id} (0 watch stream(s) closed)\n"
    code, _, err = run(capsys, "host", "list", "--token-file", str(host_file))
    assert code == 1 and "unknown or revoked token (HTTP 401)" in err
    code, out, _ = run(capsys, "token", "revoke", h1_id, "--json")
    assert code == 1


def test_token_cli_refusals(env: LiveServer, capsys: Capture, tmp_path: Path) -> None:
    code, _, err = run(capsys, "token", "create")
    assert code == 2 and "one of the arguments --host --admin --read-only is required" in err
    code, _, err = run(capsys, "token", "create", "--host", "h1", "--admin")
    assert code == 2 and "not allowed with argument" in err
    code, _, err = run(capsys, "token", "create", "--host", "bad name!")
    assert code == 1 and "(HTTP 400)" in err
    reader = tmp_path / "ro.token"
    code, out, _ = run(capsys, "token", "create", "--read-only")
    reader.write_text(out)
    code, _, err = run(capsys, "token", "list", "--token-file", str(reader))
    assert code == 1 and "may only read" in err and "(HTTP 403)" in err
    assert env.client().list_tokens()[0]["role"] == "read-only"  # nothing else was made
    assert len(env.client().list_tokens()) == 1
