"""scripts/cold_path_modules.py's pieces that need no function running: reading Python's import-time profile
out of a process log, finding a module's file in a layer, and the list's file format. The recording itself
runs in the Lambda-contract tier (tests/lambda_contract/test_bytecode.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.scripts import load_script


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script("cold_path_modules")


def test_the_profile_lines_are_read_among_other_output(script: ModuleType) -> None:
    log = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       495 |        495 |   pydantic.version",
        "import time:      2335 |     401822 | stratus.observability",
        '{"level": "INFO", "message": "import time: 3 | 4 | not.a.profile line"}',
        "START RequestId: 1 Version: $LATEST",
        "import time:        12 |         12 |         _weakrefset",
    ])
    assert script.imported_modules(log) == {"pydantic.version", "stratus.observability", "_weakrefset"}


def test_a_module_is_found_as_a_file_or_a_package_only_in_its_layer(script: ModuleType, tmp_path: Path) -> None:
    site, other = tmp_path / "common" / "python", tmp_path / "guard" / "python"
    (site / "pkg" / "sub").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("")
    (site / "pkg" / "mod.py").write_text("")
    (site / "pkg" / "sub" / "__init__.py").write_text("")
    (site / "single.py").write_text("")
    other.mkdir(parents=True)

    assert script.module_file("pkg", site) == site / "pkg" / "__init__.py"
    assert script.module_file("pkg.mod", site) == site / "pkg" / "mod.py"
    assert script.module_file("pkg.sub", site) == site / "pkg" / "sub" / "__init__.py"
    assert script.module_file("single", site) == site / "single.py"
    assert script.module_file("pkg.missing", site) is None
    assert script.module_file("pkg.mod", other) is None
    # The standard library and the runtime's packages are not a layer's: left out
    assert script.in_layers({"pkg.mod", "single", "json", "boto3"}, [other, site]) == {"pkg.mod", "single"}


def test_the_list_is_written_sorted_under_its_header_and_read_back(script: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "bytecode.txt"
    script.write({"pydantic.main", "annotated_types", "pydantic"}, path)

    lines = path.read_text().splitlines()
    assert lines[0].startswith("#") and lines[-3:] == ["annotated_types", "pydantic", "pydantic.main"]
    assert script.listed(path) == {"pydantic.main", "annotated_types", "pydantic"}
    assert script.listed(tmp_path / "missing.txt") == set()


def test_the_shipped_list_names_the_modules_every_init_needs(script: ModuleType) -> None:
    # The handlers' common imports are on it (their completeness is the contract tier's check)
    names = script.listed()
    assert {"stratus", "stratus.config", "pydantic", "aws_lambda_powertools", "fastapi"} <= names
    assert all(name.split(".")[0] not in {"json", "boto3", "botocore", "awslambdaric"} for name in names)


def test_the_listed_modules_a_layer_holds_are_compiled_checked_against_their_source(script: ModuleType,
                                                                                    tmp_path: Path) -> None:
    site = tmp_path / "python"
    (site / "pkg").mkdir(parents=True)
    for name, text in {"pkg/__init__.py": "", "pkg/mod.py": "X = 1\n", "pkg/other.py": "Y = 2\n"}.items():
        (site / name).write_text(text)

    count, size = script.compile_layer(site, {"pkg", "pkg.mod", "elsewhere.module"})

    assert count == 2 and size > 0  # a module of another layer is not this one's to compile
    source = site / "pkg" / "mod.py"
    data = Path(importlib.util.cache_from_source(str(source))).read_bytes()
    assert data[:4] == importlib.util.MAGIC_NUMBER and int.from_bytes(data[4:8], "little") == 0b11
    assert data[8:16] == importlib.util.source_hash(source.read_bytes())
    assert not Path(importlib.util.cache_from_source(str(site / "pkg" / "other.py"))).exists()
