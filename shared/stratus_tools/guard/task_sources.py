"""Benign text that is not chat: code, documentation, support tickets and agent tasks.

Chat alone taught the direct detector that anything long, technical or imperative is an attack: it flagged
most pasted bug reports and a sixth of code prompts (docs/guard.md). These loaders give it, and its
threshold rule, benign text of those kinds, from sources other than the ones it is reported on:
- the standard library's own code (functions and classes with their docstrings, PSF licence), split by
  module with the same hash split as the documentation pieces;
- package READMEs and stdlib module docstrings (stratus_tools.guard.training, split by source);
- support tickets, shell tasks and customer-service scenarios that inspect-evals (MIT) bundles.
"""

from __future__ import annotations

import ast
import gzip
import json
import sysconfig
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stratus_tools.guard.training import (
    DOC_SOURCES,
    doc_pieces,
    package_documents,
    split_of,
    stdlib_documents,
    stdlib_modules,
)

Loader = Callable[[], tuple[list[str], list[int]]]
CODE_WORDS = (20, 300)  # a function shorter than this says little; a longer one is read in windows anyway
CODE_PER_MODULE = 20  # so a few huge modules (typing, argparse) do not make up the source


def code_chunks(split: str, cap: int) -> Loader:
    """Functions and classes of the pure-Python stdlib modules in `split` that carry a docstring, as source
    text (a seeded sample of at most `cap`, at most CODE_PER_MODULE per module)."""
    def load() -> tuple[list[str], list[int]]:
        texts: list[str] = []
        stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
        for name, path in stdlib_modules():
            # Only the interpreter's own files: a name found elsewhere (setuptools' distutils) is not PSF code
            # and changes with the installed packages.
            if split_of(f"stdlib:{name}") != split or not path.resolve().is_relative_to(stdlib):
                continue
            try:
                source = path.read_text(encoding="utf-8")
                tree = ast.parse(source)
            except (OSError, SyntaxError, UnicodeDecodeError):
                continue
            found = []
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and ast.get_docstring(node):
                    text = ast.get_source_segment(source, node) or ""
                    if CODE_WORDS[0] <= len(text.split()) <= CODE_WORDS[1]:
                        found.append(text)
            texts += found[:CODE_PER_MODULE]
        return _sample(texts, cap), [0] * min(len(texts), cap)
    return load


def doc_texts(split: str, cap: int) -> Loader:
    """README and module-docstring pieces (50 to 400 words) of the documentation sources in `split`."""
    def load() -> tuple[list[str], list[int]]:
        docs = package_documents(DOC_SOURCES)[0] + stdlib_documents()
        texts = [p for d in docs if split_of(d.name) == split for p in doc_pieces(d.text)]
        return _sample(texts, cap), [0] * min(len(texts), cap)
    return load


def _sample(texts: list[str], cap: int) -> list[str]:
    if len(texts) <= cap:
        return texts
    return [texts[i] for i in np.sort(np.random.default_rng(11).choice(len(texts), cap, replace=False))]


def _inspect_json(path: str) -> object:
    from stratus_tools.guard.injection_sources import INSPECT_EVALS, wheel_path  # it registers these loaders

    with zipfile.ZipFile(wheel_path(INSPECT_EVALS)) as z:
        raw = z.read("inspect_evals/" + path)
    return json.loads(gzip.decompress(raw) if path.endswith(".gz") else raw)


def support_tickets() -> tuple[list[str], list[int]]:
    """200 customer support emails (gdm_stealth's ticket queue): subject and body."""
    from stratus_tools.guard.injection_sources import _unique

    rows = _inspect_json("gdm_stealth/solver/strategic_rule_breaking/tickets.json")
    assert isinstance(rows, list)
    texts = _unique(f"{r['subject'].strip()}\n\n{r['description'].strip()}" for r in rows)
    return texts, [0] * len(texts)


def shell_tasks() -> tuple[list[str], list[int]]:
    """AgentBench's operating-system tasks: what a user asks an agent to do in a shell."""
    from stratus_tools.guard.injection_sources import _unique

    rows = _inspect_json("agent_bench/data/agent_bench_os_test.json")
    assert isinstance(rows, list)
    texts = _unique(r["description"] for r in rows)
    return texts, [0] * len(texts)


TAU2_TASKS = ("airline/tasks.json", "retail/tasks.json", "telecom/tasks.json.gz")


def service_scenarios() -> tuple[list[str], list[int]]:
    """tau2-bench customer scenarios: why a customer calls and how they behave, addressed to the customer
    ("You received your order ... you'd go for no backlight"): second-person instructions that are benign."""
    from stratus_tools.guard.injection_sources import _unique

    texts: list[str] = []
    for path in TAU2_TASKS:
        rows = _inspect_json(f"tau2/data/domains/{path}")
        assert isinstance(rows, list)
        for r in rows:
            ins = (r.get("user_scenario") or {}).get("instructions") or {}
            if isinstance(ins, dict):
                parts = [ins.get(k) for k in ("reason_for_call", "known_info", "unknown_info", "task_instructions")]
                texts.append(" ".join(p.strip() for p in parts if isinstance(p, str) and p.strip()))
    texts = _unique(texts)
    return texts, [0] * len(texts)
