"""The prompt folder: loading every file, canonical YAML, diffs from files, and where the folder is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stratus.config import PROJECT_ROOT, load_settings
from stratus.prompts.files import canonical_yaml, load_directory, prompts_dir
from stratus.prompts.models import PromptFileError, build_prompt
from stratus.prompts.registry import diff

V1 = "description: Says hi.\nmodel: fast\nvariables: [who]\nmessages:\n  - {role: user, content: 'Hi {{ who }}'}\n"
V2 = V1.replace("Hi {{ who }}", "Hello {{ who }}").replace("model: fast", "model: smart")


def folder(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_loads_every_version_in_order_and_skips_loose_files(tmp_path: Path) -> None:
    root = folder(tmp_path, {"greet/2.yaml": V2, "greet/1.yaml": V1, "README.md": "# docs", "chat/10.yaml": V1})

    assert [p.ref for p in load_directory(root)] == ["chat v10", "greet v1", "greet v2"]
    assert [p.ref for p in load_directory(root, names={"greet"})] == ["greet v1", "greet v2"]


def test_one_error_lists_every_bad_file(tmp_path: Path) -> None:
    root = folder(tmp_path, {"greet/1.yaml": V1, "greet/2.yaml": "model: fast\n", "Bad_Name/1.yaml": V1,
                             "other/notes.txt": "x"})

    with pytest.raises(PromptFileError) as caught:
        load_directory(root)

    message = caught.value.message
    assert str(root / "greet" / "2.yaml") in message and "description" in message
    assert str(root / "Bad_Name") in message
    assert str(root / "other" / "notes.txt") in message
    assert str(root / "greet" / "1.yaml") not in message


def test_canonical_yaml_round_trips_to_the_same_hash(tmp_path: Path) -> None:
    for prompt in load_directory(PROJECT_ROOT / "prompts"):
        reparsed = build_prompt(prompt.name, prompt.version, yaml.safe_load(canonical_yaml(prompt)), source="x")
        assert reparsed.content_hash == prompt.content_hash


def test_diff_from_files_shows_what_changed(tmp_path: Path) -> None:
    root = folder(tmp_path, {"greet/1.yaml": V1, "greet/2.yaml": V2, "greet/3.yaml": "# same as 1\n" + V1})

    text = diff(root, "greet", 1, 2)

    assert text.startswith("--- greet/1.yaml (sha256 ")
    assert "-model: fast\n+model: smart\n" in text
    assert "-  content: Hi {{ who }}\n+  content: Hello {{ who }}\n" in text
    assert diff(root, "greet", 1, 3) == ""


def test_folder_setting_wins_then_the_bundled_copy_then_the_repository(tmp_path: Path) -> None:
    assert prompts_dir(load_settings(prompts_dir=tmp_path)) == tmp_path
    assert prompts_dir(load_settings()) == PROJECT_ROOT / "prompts"


def test_the_layer_carries_the_prompts_and_the_registry_reads_them(tmp_path: Path) -> None:
    # Given the layer's code built into a scratch folder
    subprocess.run(["bash", str(PROJECT_ROOT / "layers" / "common" / "build.sh"), "--code-only"], check=True,
                   capture_output=True, env={**os.environ, "LAYER_BUILD_DIR": str(tmp_path)})
    site = tmp_path / "python"
    bundled = site / "stratus" / "prompts" / "bundled"

    # Then every prompt file is there, and nothing else from prompts/
    shipped = sorted(str(p.relative_to(bundled)) for p in bundled.rglob("*") if p.is_file())
    repo = sorted(str(p.relative_to(PROJECT_ROOT / "prompts")) for p in (PROJECT_ROOT / "prompts").glob("*/*.yaml"))
    assert shipped == repo

    # And the registry, imported from the layer, reads the bundled copy
    third_party = [p for p in sys.path if p.endswith("site-packages")]
    env = {k: v for k, v in os.environ.items() if k != "STRATUS_PROMPTS_DIR"}
    found = subprocess.run(
        [sys.executable, "-S", "-c", "from stratus.prompts.files import prompts_dir; print(prompts_dir())"],
        check=True, capture_output=True, text=True,
        env={**env, "PYTHONPATH": os.pathsep.join([str(site), *third_party])},
    ).stdout.strip()
    assert Path(found) == bundled
