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
import functools
import json
import re
import sysconfig
from collections.abc import Callable
from pathlib import Path

from stratus_tools.guard.training import (
    DOC_SOURCES,
    DocSource,
    doc_pieces,
    package_documents,
    seeded_subset,
    split_of,
    stdlib_documents,
    stdlib_modules,
    unique_texts,
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
            lines, found = _LINE.findall(source), 0
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and ast.get_docstring(node):
                    text = _segment(lines, node)
                    if CODE_WORDS[0] <= len(text.split()) <= CODE_WORDS[1]:
                        texts.append(text)
                        found += 1
                        if found == CODE_PER_MODULE:
                            break
        kept = seeded_subset(texts, cap, seed=11)
        return kept, [0] * len(kept)
    return load


# A file's lines with their endings, split as ast.get_source_segment splits them (\r\n, \r, \n only).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _segment(lines: list[str], node: ast.stmt) -> str:
    """ast.get_source_segment(source, node) on the file's lines split once: that function splits the whole
    file on every call, which made reading the stdlib's big modules take seconds."""
    first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
    start, end = node.col_offset, node.end_col_offset
    if first == last:
        return lines[first].encode()[start:end].decode()
    head, tail = lines[first].encode()[start:].decode(), lines[last].encode()[:end].decode()
    return "".join([head, *lines[first + 1 : last], tail])


def doc_texts(split: str, cap: int) -> Loader:
    """README and module-docstring pieces (50 to 400 words) of the documentation sources in `split`."""
    def load() -> tuple[list[str], list[int]]:
        kept = seeded_subset([p for d in _documents() if split_of(d.name) == split for p in doc_pieces(d.text)],
                             cap, seed=11)
        return kept, [0] * len(kept)
    return load


@functools.cache
def _documents() -> tuple[DocSource, ...]:
    """The READMEs and stdlib docstrings, read once per process (both splits and the tests read them)."""
    return (*package_documents(DOC_SOURCES)[0], *stdlib_documents())


def _inspect_json(path: str) -> object:
    from stratus_tools.guard.injection_sources import INSPECT_EVALS, wheel_file  # it registers these loaders

    return json.loads(wheel_file(INSPECT_EVALS, "inspect_evals/" + path))


def support_tickets() -> tuple[list[str], list[int]]:
    """200 customer support emails (gdm_stealth's ticket queue): subject and body."""
    rows = _inspect_json("gdm_stealth/solver/strategic_rule_breaking/tickets.json")
    assert isinstance(rows, list)
    texts = unique_texts(f"{r['subject'].strip()}\n\n{r['description'].strip()}" for r in rows)
    return texts, [0] * len(texts)


def shell_tasks() -> tuple[list[str], list[int]]:
    """AgentBench's operating-system tasks: what a user asks an agent to do in a shell."""
    rows = _inspect_json("agent_bench/data/agent_bench_os_test.json")
    assert isinstance(rows, list)
    texts = unique_texts(r["description"] for r in rows)
    return texts, [0] * len(texts)


TAU2_TASKS = ("airline/tasks.json", "retail/tasks.json", "telecom/tasks.json.gz")


def service_scenarios() -> tuple[list[str], list[int]]:
    """tau2-bench customer scenarios: why a customer calls and how they behave, addressed to the customer
    ("You received your order ... you'd go for no backlight"): second-person instructions that are benign."""
    texts: list[str] = []
    for path in TAU2_TASKS:
        rows = _inspect_json(f"tau2/data/domains/{path}")
        assert isinstance(rows, list)
        for r in rows:
            ins = (r.get("user_scenario") or {}).get("instructions") or {}
            if isinstance(ins, dict):
                parts = [ins.get(k) for k in ("reason_for_call", "known_info", "unknown_info", "task_instructions")]
                texts.append(" ".join(p.strip() for p in parts if isinstance(p, str) and p.strip()))
    texts = unique_texts(texts)
    return texts, [0] * len(texts)
