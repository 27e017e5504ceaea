"""`stratus demo` end to end: a subprocess that starts the stack and its gateway, ingests the corpus, asks
through HTTP with the openai SDK, updates a document and asks again."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STRATUS = Path(sys.executable).with_name("stratus")
CORPUS = ROOT / "examples" / "corpus"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Inside the project: the embedded server opens up the parents of its data folder when run as root.
    path = ROOT / ".stratus" / f"e2e-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUS_", "AWS_", "MOTO_"))}
    env.pop("DATABASE_URL", None)  # the command starts its own embedded PostgreSQL
    return {**env, "STRATUS_DATA_DIR": str(data_dir)}


def test_demo_ingests_the_corpus_and_prints_cited_answers(data_dir: Path) -> None:
    run = subprocess.run([str(STRATUS), "demo"], env=_env(data_dir), capture_output=True, text=True,
                         timeout=300, cwd=ROOT)

    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    documents = sorted(p.name for p in CORPUS.iterdir() if p.is_file())
    assert f"tenant demo: {len(documents)} ingested, 0 unchanged, 0 failed" in out
    # Every question went through the gateway (one streamed), with citations, usage, cost and timings.
    assert "API key for tenant demo: sk-stratus-" in out
    blocks = out.split("\nQ: ")[1:]
    assert len(blocks) == 5
    for block in blocks:
        assert ("\nA: " in block or "\nA (streamed): " in block) and "offline extractive provider" in block
        assert "| cache " in block and "tokens in " in block and "cost $" in block and "| gateway " in block
    assert sum("\nA (streamed): " in b for b in blocks) == 1 and "| first chunk " in out
    pricing = [b for b in blocks if b.startswith("How much does the Team plan cost")]
    assert len(pricing) == 2
    assert "149 euros" in pricing[0] and "] pricing.html (v1" in pricing[0]
    # The document changed through the documents API; the same question now cites the new version.
    assert "Updated pricing.html through the documents API: now version 2" in out
    assert "169 euros" in pricing[1] and "] pricing.html (v2" in pricing[1] and "cache miss" in pricing[1]
    retention = next(b for b in blocks if b.startswith("How long are tracking events kept"))
    assert "18 months" in retention and "] security-policy.md (v1" in retention
    assert out.count("\n  guard: ") == 5  # every answer shows its verdicts
    assert "Refused: 400 guard_injection: the injection guard rail blocked the request" in out
    # It stopped what it started: no embedded server is left running on the data folder.
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    assert not (data_dir / "stack.json").exists()


def test_sigterm_stops_everything_the_demo_started(data_dir: Path) -> None:
    proc = subprocess.Popen([str(STRATUS), "demo"], env=_env(data_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        # Wait until the stack is up (the first line), then ask it to stop.
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("Local stack up"), line + (proc.stderr.read() if proc.stderr else "")
        assert (data_dir / "pg" / "postmaster.pid").exists()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 130
    deadline = time.monotonic() + 10
    while (data_dir / "pg" / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (data_dir / "pg" / "postmaster.pid").exists(), "embedded PostgreSQL left running"
    assert not (data_dir / "stack.json").exists()
