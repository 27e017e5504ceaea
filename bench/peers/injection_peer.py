"""Score texts with one offline injection detector from the registry, inside that detector's own venv.

    <peer-venv>/bin/python bench/peers/injection_peer.py PEER < texts.jsonl > scores.jsonl

Reads {"text": ...} lines, writes {"score": float, "flagged": bool} lines in the same order: the peer's
own score and its own default decision. Standalone on purpose (no stratus import): it runs with only the
peer installed. PEER: jailguard | svguardian | last-layer | injectionguard | safepaste.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable


def _jailguard() -> Callable[[str], tuple[float, bool]]:
    import jailguard

    def score(text: str) -> tuple[float, bool]:
        r = jailguard.detect(text)
        return float(r.score), bool(r.is_injection)
    return score


def _svguardian() -> Callable[[str], tuple[float, bool]]:
    from svguardian import resolve_runtime
    from svguardian.model.pure_infer import PureGuardian
    from svguardian.window import predict_windowed

    model = PureGuardian.load(str(resolve_runtime()))

    def score(text: str) -> tuple[float, bool]:
        r = predict_windowed(model, text)  # long texts in windows, as its own CLI does
        return float(r["malicious_score"]), r["verdict"] == "malicious"
    return score


def _last_layer() -> Callable[[str], tuple[float, bool]]:
    from last_layer import scan_prompt

    def score(text: str) -> tuple[float, bool]:
        r = scan_prompt(text)
        # Its decision combines several markers; the learned one (ExploitClassifier) gives a graded score.
        return float(r.markers.get("ExploitClassifier", 0.0)), not r.passed
    return score


def _injectionguard() -> Callable[[str], tuple[float, bool]]:
    from injectionguard import detect
    from injectionguard.types import LEVEL_ORDER

    def score(text: str) -> tuple[float, bool]:
        r = detect(text)  # pattern rules; its threat level (none .. critical) is the only graded output
        return LEVEL_ORDER.index(r.threat_level) / (len(LEVEL_ORDER) - 1), not r.is_safe
    return score


def _safepaste() -> Callable[[str], tuple[float, bool]]:
    from safepaste import scan_prompt

    def score(text: str) -> tuple[float, bool]:
        r = scan_prompt(text)  # weighted patterns, a 0-100 risk score and its own flag threshold
        return r.score / 100.0, bool(r.flagged)
    return score


PEERS = {"jailguard": _jailguard, "svguardian": _svguardian, "last-layer": _last_layer,
         "injectionguard": _injectionguard, "safepaste": _safepaste}


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in PEERS:
        print(f"usage: injection_peer.py {{{'|'.join(PEERS)}}} < texts.jsonl", file=sys.stderr)
        return 2
    score = PEERS[sys.argv[1]]()
    for line in sys.stdin:
        if line.strip():
            s, flagged = score(json.loads(line)["text"])
            print(json.dumps({"score": s, "flagged": flagged}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
