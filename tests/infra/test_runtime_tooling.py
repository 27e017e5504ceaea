"""Runtime vs tooling: CommonLayer ships the runtime package `stratus` (shared/stratus) and nothing else of
ours; the CLI, local stack and offline tooling are `stratus_tools` (shared/stratus_tools), which imports the
runtime and never the other way, and test support (the provider wire servers) is tests/support.

Statically here, over the built layer: no tooling module is in it, no runtime module imports tooling or
tests, and every module each handler imports (transitively, at any depth, including imports inside
functions and the modules loaded by name) is in the layer, which ships nothing else. The Lambda contract
tier (tests/lambda_contract) proves the same for real: it runs every handler with only the layers on
sys.path, so a handler that reached into the tooling would fail there.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT

BUILD_SH = ROOT / "layers" / "common" / "build.sh"
FUNCTIONS = ROOT / "functions"
RUNTIME = "stratus"
NOT_RUNTIME = ("stratus_tools", "tests", "bench")  # what no shipped module may import
# Module names that are tooling wherever they appear (the CLI and its subcommands, the local stack).
TOOLING_NAMES = {"cli", "commands", "local", "upstreams"}
# A module named in a string ("stratus.llm.providers.offline:OfflineProvider") or an f-string prefix
# (f"stratus.gateway.routes.{name}"): loaded by name with import_module.
_NAMED_MODULE = re.compile(rf"^{RUNTIME}(\.\w+)+")


@pytest.fixture(scope="module")
def layer_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CommonLayer's library as the build packages it (--code-only: offline, dependencies untouched)."""
    build = tmp_path_factory.mktemp("common-layer")
    subprocess.run(["bash", str(BUILD_SH), "--code-only"], check=True, capture_output=True,
                   env={**os.environ, "LAYER_BUILD_DIR": str(build)})
    return build / "python"


def _modules(site: Path, package: str) -> dict[str, Path]:
    """Every module of `package` under `site`, by dotted name."""
    found = {}
    for path in (site / package).rglob("*.py"):
        name = ".".join(path.relative_to(site).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    """Every module `path` may import: import statements anywhere in it (relative ones resolved, `from a
    import b` counted as a and a.b), and the modules it names in strings to import them by name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package
                for _ in range(node.level - 1):
                    parent = parent.rpartition(".")[0]
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if match := _NAMED_MODULE.match(node.value.partition(":")[0]):
                found.add(match.group(0))
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            prefix = str(node.values[0].value)
            if prefix.endswith(".") and _NAMED_MODULE.match(prefix[:-1]):
                found.add(prefix + "*")  # every module of that package
    return found


def _handler_closure(shipped: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(the layer's modules the six handlers import transitively, the stratus* modules they name that the
    layer does not have)."""
    reached: set[str] = set()
    missing: set[str] = set()
    pending = [(name, "") for app in FUNCTIONS.glob("*/app.py") for name in _imports(app, "app")]
    while pending:
        name, _ = pending.pop()
        if name.split(".")[0] not in (RUNTIME, *NOT_RUNTIME):
            continue
        if name.endswith(".*"):
            package = name[:-2]
            pending.extend((m, name) for m in shipped if m.startswith(package + "."))
            continue
        parts = name.split(".")
        resolved = False
        for i in range(1, len(parts) + 1):  # a package's __init__ runs before its modules
            prefix = ".".join(parts[:i])
            if prefix in shipped:
                resolved = True
                if prefix not in reached:
                    reached.add(prefix)
                    pending.extend((m, prefix) for m in _imports(shipped[prefix], prefix))
        # `from stratus.x import name` names an attribute, not always a module: missing only if its
        # module part is not shipped either
        if not resolved or (name not in shipped and name.rpartition(".")[0] not in shipped):
            missing.add(name)
    return reached, missing


def test_layer_ships_the_runtime_package_only(layer_site: Path) -> None:
    shipped = _modules(layer_site, RUNTIME)
    # Exactly shared/stratus: the tooling package, tests and bench stay out
    assert set(shipped) == set(_modules(ROOT / "shared", RUNTIME))
    ours = {p.name for p in layer_site.iterdir()} & {*NOT_RUNTIME, "functions", "scripts"}
    assert not ours, f"the layer ships {ours}"
    # And no module in it is tooling by name (the CLI, `commands` modules, the local stack)
    tooling = sorted(m for m in shipped if TOOLING_NAMES & set(m.split(".")[1:]))
    assert tooling == [], f"tooling modules in the layer: {tooling}"


def test_no_runtime_module_imports_tooling_or_tests(layer_site: Path) -> None:
    offenders = {
        module: sorted(name for name in _imports(path, module) if name.split(".")[0] in NOT_RUNTIME)
        for module, path in _modules(layer_site, RUNTIME).items()
    }
    assert {m: names for m, names in offenders.items() if names} == {}


def test_each_handler_imports_only_what_the_layer_ships(layer_site: Path) -> None:
    shipped = _modules(layer_site, RUNTIME)
    reached, missing = _handler_closure(shipped)
    # Every module the handlers import resolves in the layer (the contract tier runs them so, for real)
    assert missing == set(), f"handlers import modules the layer does not ship: {sorted(missing)}"
    assert {m.split(".")[0] for m in reached} == {RUNTIME}
    # And the layer ships nothing the handlers never import: the rest is tooling, tests or dead code
    unused = sorted(set(shipped) - reached)
    assert unused == [], f"the layer ships modules no handler imports (move them to stratus_tools?): {unused}"


def test_the_console_script_is_the_tooling_cli() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["stratus"] == "stratus_tools.cli:main"
