"""Running the `stratus` CLI as a user would: the venv's console script, in an environment without this
test process's settings, against a data folder of its own (so each command starts its own local stack)."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STRATUS = Path(sys.executable).with_name("stratus")


def scratch_data_dir(name: str) -> Iterator[Path]:
    """For a fixture to `yield from`: a fresh folder under .stratus/ (inside the project, as the embedded
    PostgreSQL needs), removed afterwards."""
    path = ROOT / ".stratus" / f"e2e-{name}-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def cli_env(data_dir: Path) -> dict[str, str]:
    """os.environ without STRATUS_*, AWS_*, MOTO_* and DATABASE_URL (the tests' own stack), plus the data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUS_", "AWS_", "MOTO_"))}
    env.pop("DATABASE_URL", None)
    env["STRATUS_DATA_DIR"] = str(data_dir)
    return env
