"""The opt-in multilingual injection detector (stratus.guard.multilingual) against injection-v7, the embedding
detector it hands English to: warm latency per message and first use, in the same run.

    python -m bench.run multilingual_detector
    python -m bench.multilingual_detector [--runs 5] [--rounds 20]

Inputs: the guard benchmark's short question and ~300-token document (English), and a German short question
and ~300-token document of the same kind. Warm: the median over `runs` runs of the median of `rounds` calls
of `assess([text])`, after one call that loads everything. First use: a fresh interpreter imports the
detector and assesses one German text (the language gate, USE and the head load), median of `runs`.
Quality is recorded in the artifact and docs/guard.md ("The multilingual detector").
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import ROOT, record
from bench.guard_latency import LONG, SHORT

SHORT_DE = ("Hallo, ich bin Maria aus dem Büro in Hamburg. Unsere Teamleitung bat mich zu prüfen, ob die "
            "Reiserichtlinie bei Flügen über sechs Stunden noch Premium Economy abdeckt und ob ich selbst buchen darf.")
_PARAGRAPH_DE = ("Die Spesenrichtlinie gilt für alle Beschäftigten und Auftragnehmer, die geschäftlich reisen. "
                 "Belege müssen innerhalb von dreißig Tagen über das Finanzportal eingereicht werden, und jede "
                 "Abrechnung braucht den Projektcode, den Zweck der Reise und die Namen der Gäste. Mahlzeiten werden "
                 "bis zum Tagessatz der Zielstadt erstattet; Alkohol wird nur erstattet, wenn eine Direktorin ihn "
                 "vorher genehmigt hat. Fragen gehen an das Finanzteam. ")
LONG_DE = _PARAGRAPH_DE * 3
TEXTS = {"short_en": SHORT, "long_en": LONG, "short_de": SHORT_DE, "long_de": LONG_DE}

_FIRST_USE = """
import time
start = time.perf_counter()
from stratus.guard.multilingual import MultilingualDetector
MultilingualDetector().assess([{text!r}])
print(time.perf_counter() - start)
"""


def _warm(assess: Callable[[Sequence[str]], Any], text: str, runs: int, rounds: int) -> float:
    assess([text])  # loads what the text needs
    medians = []
    for _ in range(runs):
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            assess([text])
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times))
    return round(statistics.median(medians) * 1000, 2)


def first_use_ms(runs: int) -> float:
    code = _FIRST_USE.format(text=SHORT_DE)
    samples = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    cwd=ROOT, timeout=300).stdout.strip().splitlines()[-1]) for _ in range(runs)]
    return round(statistics.median(samples) * 1000, 1)


def run(runs: int = 5, rounds: int = 20) -> dict[str, Any]:
    from stratus.guard.direct import get_direct_detector
    from stratus.guard.multilingual import EMBEDDING_MODEL, MultilingualDetector

    detector, direct = MultilingualDetector(), get_direct_detector()
    languages = {name: detector.gate.language(text) for name, text in TEXTS.items()}
    warm = {name: {"multilingual_ms": _warm(detector.assess, text, runs, rounds),
                   "injection_v7_ms": _warm(direct.assess, text, runs, rounds)} for name, text in TEXTS.items()}
    for figures in warm.values():
        figures["ratio"] = round(figures["multilingual_ms"] / figures["injection_v7_ms"], 2)
    return {"runs": runs, "rounds": rounds, "embedding_model": EMBEDDING_MODEL,
            "gate_says": languages, "warm_p50": warm, "first_use_ms": first_use_ms(runs),
            "note": "warm: median of runs of the median of rounds calls of assess([text]); first use: a fresh "
                    "interpreter imports the detector and assesses one German text (gate, USE and head load). "
                    "English texts are injection-v7's, plus the gate."}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv or [])  # bench.run calls main() with no arguments
    result = run(args.runs, args.rounds)
    record("multilingual_detector", result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
