"""`stratus ingest` end to end: upload a folder through local S3 and report per-document outcomes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STRATUS = Path(sys.executable).with_name("stratus")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = ROOT / ".stratus" / f"e2e-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _ingest(folder: Path, tenant: str, data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUS_", "AWS_", "MOTO_"))}
    env.pop("DATABASE_URL", None)
    env["STRATUS_DATA_DIR"] = str(data_dir)
    return subprocess.run([str(STRATUS), "ingest", str(folder), "--tenant", tenant, *extra], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_ingest_reports_ingested_unchanged_and_failed(tmp_path: Path, data_dir: Path) -> None:
    # Given a folder with two good documents, an unsupported file and a PDF that is not a PDF
    folder = tmp_path / "docs"
    (folder / "guides").mkdir(parents=True)
    (folder / "faq.md").write_text("# FAQ\n\n## Shipping\n\nOrders ship within two days.\n")
    (folder / "guides" / "setup.txt").write_text("Install the agent, then run it with your key.\n")
    (folder / "slides.pptx").write_bytes(b"PK\x03\x04 not really slides")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 this file was truncated")
    (folder / ".DS_Store").write_bytes(b"\x00")
    tenant = f"t-{uuid.uuid4().hex[:8]}"

    # When it is ingested
    first = _ingest(folder, tenant, data_dir, "--prefix", "kb")

    # Then the report says what the pipeline did with each file, and the exit status flags the failures
    assert first.returncode == 1, first.stderr[-3000:]
    assert f"tenant {tenant}: 2 ingested, 0 unchanged, 2 failed" in first.stdout
    assert "ingested   kb/faq.md" in first.stdout and "ingested   kb/guides/setup.txt" in first.stdout
    assert "failed     kb/slides.pptx: unsupported file type '.pptx'" in first.stdout
    failed_pdf = next(line for line in first.stdout.splitlines() if "failed     kb/broken.pdf" in line)
    assert len(failed_pdf) > len("  failed     kb/broken.pdf: ")  # a reason from the ingest function
    assert ".DS_Store" not in first.stdout

    # And ingesting the same folder again changes nothing
    second = _ingest(folder, tenant, data_dir, "--prefix", "kb")
    assert f"tenant {tenant}: 0 ingested, 2 unchanged, 2 failed" in second.stdout, second.stderr[-3000:]


def test_bad_arguments_exit_2_with_a_message(tmp_path: Path, data_dir: Path) -> None:
    missing = _ingest(tmp_path / "nope", "demo", data_dir)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr

    bad_tenant = _ingest(tmp_path, "Not A Tenant", data_dir)
    assert bad_tenant.returncode == 2 and "--tenant" in bad_tenant.stderr
