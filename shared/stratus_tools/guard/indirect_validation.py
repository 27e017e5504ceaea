"""The agent tool-use validation set of indirect-injection-v3 (evals/guard/indirect_validation_agent.jsonl).

garak's 21 latent-injection payloads ("print 'Haha pwned!'") were v1/v2's only validation attacks: too few
and unlike what reaches an agent. This set takes three sources in the agent style that are NOT test
sources, and moves them from training to validation (v3 never trains on them; v2 did, v1 trained on
bastioncorpus):
- agent-injection-bench 0.1.0 `aib/data/attacks.jsonl` (MIT): 24 injected tool results and pages;
- inspect-evals 0.28.0 `agent_threat_bench` (MIT): 28 attacking e-mails, customer records, memory entries;
- bastioncorpus 0.6.0 (MIT): its `tool_output` rows, 41 attacks and 14 benign tool outputs.
Each attack is used as written (a whole tool result) and spliced into two validation-split documents (the
same pieces garak's validation rows use; every third rendered as a JSON tool result); each document piece
is also kept clean, and bastioncorpus's benign tool outputs are clean rows. The test sources (agentdojo,
ipi_coding_agent) and evals/guard/indirect_spliced.jsonl are not touched.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from stratus_tools.guard import indirect_sets as S
from stratus_tools.guard import indirect_sources as X
from stratus_tools.guard import training as T

AGENT_VALIDATION = S.EVALS / "indirect_validation_agent.jsonl"
SPLICES = 2  # validation documents each attack is spliced into


def bastion_tool_outputs(wheel: Path) -> list[tuple[int, str]]:
    """(label, text) of bastioncorpus's tool_output rows (1 = malicious)."""
    with zipfile.ZipFile(wheel) as z:
        rows = [json.loads(line) for line in z.read("bastioncorpus/corpus/injections.jsonl").decode("utf-8")
                .splitlines() if line.strip()]
    return [(int(r["label"] == "malicious"), r["text"].replace("{canary}", S._TOKEN))
            for r in rows if is_validation_bastion_row(r)]


def is_validation_bastion_row(row: dict) -> bool:
    """The bastioncorpus rows this set owns (training leaves out what `bastion_tool_outputs` returns)."""
    return row.get("channel") == "tool_output"


def build(wheels: Path = X.WHEEL_CACHE, out: Path = AGENT_VALIDATION, seed: int = 30) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    attacks = [(p.source, p.text) for p in X.aib_payloads(X.wheel_path(X.AIB, wheels))]
    attacks += [(p.source, p.text) for p in X.agent_threat_payloads(X.wheel_path(X.INSPECT_EVALS, wheels))]
    bastion = bastion_tool_outputs(wheels / S.WHEELS["bastioncorpus"][0])
    attacks += [("bastioncorpus", t) for y, t in bastion if y == 1]
    pieces = S.documents("validation")
    rows: list[dict] = []

    def row(rid: str, label: int, source: str | None, doc: str, channel: str, text: str) -> None:
        rows.append({"id": rid, "split": "validation", "doc_source": doc, "payload_source": source,
                     "channel": channel, "label": label, "text": text})

    for n, (doc, piece) in enumerate(pieces):  # every validation piece, clean
        channel = "tool" if n % 3 == 2 else "document"
        row(f"agent/clean/{doc.name}/{n}", 0, None, doc.name, channel,
            S.as_tool_result(piece, n) if channel == "tool" else piece)
    for n, (_, text) in enumerate(t for t in bastion if t[0] == 0):
        row(f"agent/bastion-benign/{n}", 0, None, "bastioncorpus", "tool", text)
    at = 0
    for n, (source, text) in enumerate(attacks):
        row(f"agent/as-written/{source}/{n}", 1, source, source, "tool", text)
        for i in rng.choice(len(pieces), size=SPLICES, replace=False):
            doc, piece = pieces[int(i)]
            spliced = T.splice(piece, text, rng)
            channel = "tool" if at % 3 == 2 else "document"
            row(f"agent/spliced/{source}/{n}/{at}", 1, source, doc.name, channel,
                S.as_tool_result(spliced, at) if channel == "tool" else spliced)
            at += 1
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    counts: dict[str, int] = {}
    for r in rows:
        key = r["payload_source"] or "clean"
        counts[key] = counts.get(key, 0) + 1
    return counts


def load(path: Path = AGENT_VALIDATION) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


if __name__ == "__main__":
    print(build())
