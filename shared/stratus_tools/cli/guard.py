"""`stratus guard scan` and `stratus eval guard`. Imported when the CLI builds its parser, so this module
imports nothing heavy at the top; the rails load their models on first use.

Exit codes as cli/usage.py says: 0 ok; 1 some input lines were bad (scan) or a rail regressed past its recorded
threshold (eval); 2 bad usage naming the argument.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

EXIT_OK, EXIT_FAILED = 0, 1
THRESHOLDS = Path(__file__).resolve().parents[3] / "evals" / "guard" / "thresholds.json"


def add_guard_parser(sub: Any) -> None:
    guard = sub.add_parser("guard", help="run the guard rails over your own texts",
                           description="Guardrails: prompt injection, PII (see docs/guard.md).")
    cmds = guard.add_subparsers(dest="guard_command", required=True, metavar="ACTION")
    scan = cmds.add_parser("scan", help="scan a JSONL file of {\"id\", \"text\"} lines with the rails",
                           description="Writes one JSON line per input: {\"id\", \"rails\": {rail: {\"verdict\","
                           " \"score\", ...}}} under the default policy (injection: over the detector's block"
                           " tier -> block, over its threshold -> flag; PII found -> redact). Bad lines go to"
                           " stderr as {\"id\", \"line\", \"error\"}; the rest still run, and the exit code is 1.")
    scan.add_argument("--input", type=Path, required=True, metavar="FILE", help="JSONL input ('-' for stdin)")
    scan.add_argument("--rails", default="",
                      help="comma-separated rails (default: all but the opt-in injection_multilingual; known: "
                           "injection, injection_block, pii, toxicity, indirect, injection_multilingual)")
    scan.add_argument("--output", type=Path, metavar="FILE", help="write results here instead of stdout")
    scan.set_defaults(func=_cmd_scan)


def add_eval_guard_parser(eval_sub: Any) -> None:
    ev = eval_sub.add_parser("guard", help="guard rails' quality and latency on held-out labelled data",
                             description="Per rail and dataset: precision, recall, F1, false-positive rate and"
                             " p50/p95 latency per input (injection: the S-Labs test split and our hard set;"
                             " pii: evals/guard/pii_cases.jsonl). Exits 1 naming each metric past its recorded"
                             " threshold.")
    ev.add_argument("--rail", action="append",
                    help="only this rail (repeatable; default: all but the opt-in injection_multilingual)")
    ev.add_argument("--dataset", action="append", help="only this dataset of the rails (repeatable; default: all)")
    ev.add_argument("--json", action="store_true", help="one JSON object per rail and dataset")
    ev.add_argument("--thresholds", type=Path, default=THRESHOLDS, help="recorded floors/ceilings (JSON)")
    ev.set_defaults(func=_cmd_eval_guard)


def _usage(message: str) -> Exception:
    from stratus_tools.cli.usage import UsageError

    return UsageError(message)


def _rails(names: str | list[str] | None, argument: str) -> list[Any]:
    from stratus.errors import InvalidInput
    from stratus_tools.guard.scan import select_rails

    try:
        return select_rails(names)
    except InvalidInput as err:
        raise _usage(f"{argument}: {err.message}") from None


def _cmd_scan(args: argparse.Namespace) -> int:
    from stratus_tools.guard.scan import LineError, scan_lines

    rails = _rails(args.rails, "--rails")
    if str(args.input) != "-" and not args.input.is_file():
        raise _usage(f"--input: {args.input} is not a file")
    source = sys.stdin if str(args.input) == "-" else args.input.open(encoding="utf-8")
    try:
        out: TextIO = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    except OSError as err:
        raise _usage(f"--output: {err.strerror}: {args.output}") from None
    bad = 0
    try:
        for item in scan_lines(source, rails):
            if isinstance(item, LineError):
                bad += 1
                print(json.dumps(item.to_json()), file=sys.stderr, flush=True)
            else:
                print(json.dumps(item.to_json()), file=out, flush=True)
    finally:
        if source is not sys.stdin:
            source.close()
        if out is not sys.stdout:
            out.close()
    return EXIT_FAILED if bad else EXIT_OK


def _cmd_eval_guard(args: argparse.Namespace) -> int:
    from stratus_tools.guard.scan import check_thresholds

    rails = _rails(args.rail, "--rail")
    try:
        thresholds = json.loads(args.thresholds.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise _usage(f"--thresholds: cannot read {args.thresholds}: {err}") from None
    datasets = frozenset(args.dataset) if args.dataset else None
    measurements = [m for rail in rails for m in rail.evaluate(datasets)]
    if datasets is not None and (unknown := datasets - {m.dataset for m in measurements}):
        raise _usage(f"--dataset: no dataset {sorted(unknown)} in the rails {[r.name for r in rails]}")
    problems = check_thresholds(measurements, thresholds)
    if args.json:
        for m in measurements:
            print(json.dumps({"rail": m.rail, "dataset": m.dataset, "n": m.n,
                              **{k: round(v, 4) for k, v in m.metrics().items()}}))
    else:
        print(f"{'rail':<10} {'dataset':<23} {'n':>5} {'prec':>6} {'recall':>6} {'f1':>6} {'fpr':>6}"
              f" {'p50 ms':>7} {'p95 ms':>7}")
        for m in measurements:
            print(f"{m.rail:<10} {m.dataset:<23} {m.n:5d} {m.precision:6.3f} {m.recall:6.3f} {m.f1:6.3f}"
                  f" {m.fpr:6.3f} {m.p50_ms:7.2f} {m.p95_ms:7.2f}")
    for problem in problems:
        print(f"stratus eval guard: regression: {problem}", file=sys.stderr)
    return EXIT_FAILED if problems else EXIT_OK
