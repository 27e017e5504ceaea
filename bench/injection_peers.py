"""Direct-injection detection side by side with the offline peers from the registry, on the same sources.

    python -m bench.run injection_peers        (PEER_VENVS=/some/dir to keep the peers' venvs elsewhere)

Each peer is installed at a pinned version into its own virtualenv (never the app's) and scores every
text through bench/peers/injection_peer.py. Two figures per peer and source: at the peer's own decision,
and at a threshold chosen by our rule (each benign threshold source's FPR limit: 0.02 on chat and prompts, 0.05
on code and documentation) on the peer's scores, so a peer is not judged only by a default calibrated for other
data. Ours: the direct detector's artifact (stratus.guard.direct.DEFAULT_MODEL) at its threshold,
injection-v7 (adopted: v6's head with a neighbour bank), v6 (the one it replaced), v5 and v4 before it
(docs/guard.md), and injection-v3 (the default input-rail model) beside them.
Results: bench/results/injection_peers.json (the table in docs/guard.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, ROOT, machine

PEERS = {  # name -> (pip requirement, scorer name in bench/peers/injection_peer.py)
    "securevector-guardian-model": ("securevector-guardian-model==1.4.0", "svguardian"),
    "last-layer": ("last-layer==0.1.33", "last-layer"),
    "jailguard": ("jailguard==0.1.2", "jailguard"),
    "injectionguard": ("injectionguard==0.4.0", "injectionguard"),
    "safepaste": ("safepaste==0.3.0", "safepaste"),
}
SCORER = ROOT / "bench" / "peers" / "injection_peer.py"


def peer_python(name: str, root: Path) -> Path:
    """The peer's interpreter, its venv created and the peer installed on first use."""
    venv = root / f"peer-{name}"
    python = venv / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", PEERS[name][0]], check=True)
    return python


def peer_scores(name: str, texts: list[str], root: Path) -> tuple[np.ndarray, np.ndarray] | str:
    """(scores, own decisions), or why the peer could not score offline."""
    payload = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    proc = subprocess.run([str(peer_python(name, root)), str(SCORER), PEERS[name][1]], input=payload,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else f"exit {proc.returncode}"
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return np.array([r["score"] for r in rows]), np.array([r["flagged"] for r in rows], dtype=bool)


def run(root: Path) -> dict[str, Any]:
    from stratus.guard.direct import DEFAULT_MODEL, MODEL_DIR, DirectModel
    from stratus.guard.injection import InjectionModel
    from stratus_tools.guard.direct_eval import score_texts, source_metrics
    from stratus_tools.guard.injection_sources import by_role
    from stratus_tools.guard.train_direct import choose_threshold, fpr_limits

    sources = by_role("threshold") + by_role("report")
    data = {s.name: s.load() for s in sources}
    models = {f"stratus {stem.name}": DirectModel.load(stem) for stem in dict.fromkeys(
        (DEFAULT_MODEL, MODEL_DIR / "injection-v4", MODEL_DIR / "injection-v5", MODEL_DIR / "injection-v6"))}
    scored: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {det: {} for det in models}
    decided: dict[str, dict[str, np.ndarray]] = {det: {} for det in models}
    notes: dict[str, str] = {}
    v3 = InjectionModel.load()  # the default input-rail model (and the context rail's), for comparison
    scored["stratus injection-v3"], decided["stratus injection-v3"] = {}, {}
    for name, (texts, labels) in data.items():
        for det, model in models.items():
            s = score_texts(model, texts)
            scored[det][name] = (s, np.asarray(labels, dtype=np.int8))
            decided[det][name] = s >= model.threshold
        s3 = v3.score(texts)
        scored["stratus injection-v3"][name] = (s3, np.asarray(labels, dtype=np.int8))
        decided["stratus injection-v3"][name] = s3 >= v3.threshold
    seconds: dict[str, float] = {}
    for peer in PEERS:
        started = time.perf_counter()
        texts = [t for ts, _ in data.values() for t in ts]
        got = peer_scores(peer, texts, root)
        if isinstance(got, str):
            notes[peer] = got
            continue
        seconds[peer] = round(time.perf_counter() - started, 1)
        scores, flags = got
        scored[peer], decided[peer] = {}, {}
        at = 0
        for name, (ts, labels) in data.items():
            scored[peer][name] = (scores[at : at + len(ts)], np.asarray(labels, dtype=np.int8))
            decided[peer][name] = flags[at : at + len(ts)]
            at += len(ts)
    result: dict[str, Any] = {"machine": machine(), "notes": notes, "peer_seconds": seconds, "detectors": {}}
    report = [s.name for s in by_role("report")]
    for det, per_source in scored.items():
        thr_sources = {n: v for n, v in per_source.items() if n not in report}
        thr = choose_threshold(thr_sources, fpr_limits(by_role("threshold")))
        own = {n: source_metrics(decided[det][n].astype(float), y, 0.5) for n, (_, y) in per_source.items()}
        ours = {n: source_metrics(s, y, thr) for n, (s, y) in per_source.items()}
        pooled = [per_source[n] for n in report]
        ys = np.concatenate([y for _, y in pooled])
        own["all-report-sources"] = source_metrics(
            np.concatenate([decided[det][n] for n in report]).astype(float), ys, 0.5)
        ours["all-report-sources"] = source_metrics(np.concatenate([s for s, _ in pooled]), ys, thr)
        result["detectors"][det] = {"own_decision": own, "our_threshold_rule": {"threshold": thr, **ours}}
    return result


def main() -> dict[str, Any]:
    root = Path(os.environ.get("PEER_VENVS", ROOT / ".stratus" / "peers"))
    result = run(root)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "injection_peers.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
