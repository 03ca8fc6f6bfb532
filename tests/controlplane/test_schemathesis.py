"""schemathesis against a real server process: the API keeps every promise its document makes.

A `flowkeeper server` on 127.0.0.1 with a temporary SQLite store; schemathesis (all
phases, the watch included, bounded by --max-examples and --max-time) loads
/v1/openapi.json and sends an admin bearer token on every request. The test fails on
any failed check; the per-check counts go to TMP/schemathesis-counts.txt and the output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.controlplane.test_server_process import Proc

HERE = Path(__file__).parent / "schemathesis"
TOKEN = "schemathesis-admin-token-0123456789"
CHECKS = [
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "positive_data_acceptance",
    "negative_data_rejection",
    "use_after_free",
    "ensure_resource_availability",
]
MAX_EXAMPLES = 60
MAX_TIME_S = 180


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Proc]:
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    proc = Proc(tmp_path / "state" / "fk.db", "--heartbeat", "0.1", "--token-file", str(token_file))
    yield proc
    if proc.p.poll() is None:
        proc.stop()


def schemathesis_argv(url: str, report_dir: Path) -> list[str]:
    exe = Path(sys.executable).with_name("schemathesis")
    return [
        str(exe),
        "--no-color",
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{url}/v1/openapi.json",
        "--phases=examples,coverage,fuzzing,stateful",
        "--checks",
        ",".join(CHECKS),
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_TIME_S),
        "--request-timeout",
        "10",
        "--seed",
        "1",
        "--workers",
        "1",
        "--report",
        "ndjson",
        "--report-dir",
        str(report_dir),
    ]


def per_check_counts(report_dir: Path) -> tuple[dict[str, Counter[str]], Counter[str]]:
    """From schemathesis's NDJSON event report: per check, its results by status (success,
    failure, skip); and the responses by status class (2xx, 4xx, 5xx)."""
    checks: dict[str, Counter[str]] = {name: Counter() for name in CHECKS}
    responses: Counter[str] = Counter()
    for path in report_dir.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            event = json.loads(line).get("ScenarioFinished")
            if not event:
                continue
            recorder = event.get("recorder", {})
            for results in recorder.get("checks", {}).values():
                for result in results:
                    checks.setdefault(result["name"], Counter())[result["status"]] += 1
            for interaction in recorder.get("interactions", {}).values():
                status = (interaction.get("response") or {}).get("status_code")
                responses[f"{status // 100}xx" if status else "no response"] += 1
    return checks, responses


def test_schemathesis_finds_nothing(
    server: Proc,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    report_line: Callable[[str], None],
) -> None:
    argv = schemathesis_argv(server.url, tmp_path / "report")
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.controlplane.schemathesis.hooks"}
    env["PYTHONPATH"] = str(HERE.parent.parent.parent)
    run = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=MAX_TIME_S * 3,
        check=False,
    )
    output = run.stdout + run.stderr
    (tmp_path / "schemathesis-output.txt").write_text(output)
    checks, responses = per_check_counts(tmp_path / "report")
    command = " ".join(argv).replace(TOKEN, "TOKEN")
    lines = [f"command: SCHEMATHESIS_HOOKS=tests.controlplane.schemathesis.hooks {command}"]
    for name in CHECKS:
        got = checks[name]
        lines.append(
            f"{name}: {got['success']} passed, {got['failure']} failed, {got['skip']} skipped"
        )
    lines.append("responses: " + ", ".join(f"{k} {v}" for k, v in sorted(responses.items())))
    report = "\n".join(lines) + "\n"
    (tmp_path / "schemathesis-counts.txt").write_text(report)
    with capsys.disabled():  # in the output of `make test` too, not only with -s
        print(f"\nschemathesis per-check counts ({tmp_path / 'schemathesis-counts.txt'}):")
        print(report, end="")
    print(output[-3000:])
    summary = ", ".join(
        f"{name} {checks[name]['success']}/{checks[name]['failure']}" for name in CHECKS
    )
    report_line(f"schemathesis checks passed/failed: {summary}; responses {dict(responses)}")
    assert run.returncode == 0, output[-6000:]
    assert all(checks[name]["failure"] == 0 for name in CHECKS), report
    assert responses["5xx"] == 0 and responses["2xx"] > 0, report
    assert server.p.poll() is None, "the server died"
