"""`stratus ask` end to end: documents ingested by one command, asked about by another, through the
query workflow of a local stack the command starts and stops."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import ROOT, STRATUS, cli_env, scratch_data_dir


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    yield from scratch_data_dir("ask")


def _run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(STRATUS), *args], env=cli_env(data_dir), capture_output=True, text=True, timeout=300,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def ingested(data_dir: Path) -> str:
    run = _run(data_dir, "ingest", str(ROOT / "examples" / "corpus"), "--tenant", "acme")
    assert run.returncode == 0, run.stderr[-2000:]
    return "acme"


def test_ask_prints_the_answer_with_citations_usage_cost_and_step_times(data_dir: Path, ingested: str) -> None:
    run = _run(data_dir, "ask", "How long are tracking events kept after delivery?", "--tenant", ingested)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    assert out.startswith("Q: How long are tracking events kept")
    assert "18 months" in out and "] security-policy.md (v1, chunk " in out
    assert "prompt rag-answer v1" in out and "tokens in " in out and "cost $0.000000" in out
    assert "retrieve " in out and "generate task " in out and "workflow overhead " in out


def test_ask_json_and_chat_mode(data_dir: Path, ingested: str) -> None:
    run = _run(data_dir, "ask", "Hello", "--tenant", ingested, "--chat", "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    answer = json.loads(run.stdout)
    assert answer["mode"] == "chat" and answer["citations"] == [] and answer["offline"] is True


@pytest.mark.parametrize(("args", "message"), [
    (["ask", "   ", "--tenant", "acme"], "QUESTION: must not be blank"),
    (["ask", "Why?", "--tenant", "Not A Tenant"], "tenant_id"),
    (["ask", "Why?", "--tenant", "acme", "--model", "nope"], "NotFound"),
])
def test_bad_input_exits_2_naming_what_is_wrong(data_dir: Path, ingested: str, args: list[str], message: str) -> None:
    run = _run(data_dir, *args)
    assert run.returncode == 2, run.stdout + run.stderr[-2000:]
    assert message in run.stderr
