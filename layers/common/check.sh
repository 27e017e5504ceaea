#!/usr/bin/env bash
# Proves CommonLayer's and IngestLayer's dependency lists complete and their trimming safe (layers/trim.sh):
# builds both layers (same lists, same trimming, native wheels) for THIS machine, puts what the Lambda
# runtime provides (boto3 and its dependencies, pinned from requirements.lock) in a third folder, then,
# with only those folders and the standard library on sys.path:
#   - CommonLayer alone (what the retrieve, generate, guard and gateway functions have): the embedder
#     embeds without onnxruntime's C API library and model tooling (dropped by the build), psycopg loads
#     its binary implementation, pydantic validates, the provider SDKs, FastAPI and Mangum import,
#     uvicorn (as the Lambda Web Adapter will run it: no extras, so asyncio and h11) serves a FastAPI app
#     with a streamed response over HTTP, and the document parsers are NOT there;
#   - CommonLayer + IngestLayer (the ingest function): HTML and PDF documents extract exactly as in the venv.
# The arm64 build itself cannot run here; this is the same closure and the same trim, on x86_64.
#
# Usage: layers/common/check.sh   (PYTHON overrides the interpreter, default .venv/bin/python)
# Needs the package index (pip); takes about a minute.
set -euo pipefail

# ROOT, PYTHON, WORK (removed on exit), build_for_check and run_in_layers (layers/check_lib.sh).
source "$(dirname "${BASH_SOURCE[0]}")/../check_lib.sh"

build_for_check common ingest
COMMON="$WORK/common/python" INGEST="$WORK/ingest/python" RUNTIME="$WORK/runtime"

run_in_layers "CommonLayer alone" "$COMMON" "$RUNTIME" <<'PY'
common = layers[0]

import glob  # noqa: E402
import os  # noqa: E402

from stratus.embeddings import get_embedder  # noqa: E402

vectors = get_embedder("all-MiniLM-L6-v2-int8").embed(["hello"])
assert vectors.shape == (1, 384) and abs(float((vectors**2).sum()) - 1) < 1e-4, vectors.shape
# It ran without what the build drops from onnxruntime (the C API library, the model tooling).
ort = os.path.join(common, "onnxruntime")
assert sys.modules["onnxruntime"].__file__.startswith(ort)
assert not glob.glob(os.path.join(ort, "capi", "libonnxruntime.so*")), "the C API library is still there"
for name in ("transformers", "quantization", "tools"):
    assert importlib.util.find_spec(f"onnxruntime.{name}") is None, name
print(f"embedder: {vectors.shape[1]}-d, L2-normalised (onnxruntime without its C API library)")

import psycopg  # noqa: E402
from pgvector.psycopg import register_vector  # noqa: E402, F401

assert psycopg.pq.__impl__ == "binary", psycopg.pq.__impl__
print(f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}, libpq {psycopg.pq.version()})")

import pydantic  # noqa: E402
from stratus.config import Settings  # noqa: E402

try:
    Settings(log_level="LOUD")
except pydantic.ValidationError as exc:
    assert "log_level" in str(exc)
else:
    raise AssertionError("Settings accepted log_level='LOUD'")
print(f"pydantic {pydantic.VERSION} validates")

import anthropic  # noqa: E402
import openai  # noqa: E402
from aws_lambda_powertools import Logger  # noqa: E402, F401
from fastapi import FastAPI  # noqa: E402, F401

openai.OpenAI(api_key="sk-check", base_url="http://127.0.0.1:9")
anthropic.Anthropic(api_key="sk-check", base_url="http://127.0.0.1:9")
print(f"openai {openai.__version__}, anthropic {anthropic.__version__}, fastapi, powertools import")

# uvicorn, as the gateway will run behind the Lambda Web Adapter: default settings pick what is installed.
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import uvicorn  # noqa: E402
from fastapi.responses import StreamingResponse  # noqa: E402
from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: E402

app = FastAPI()


@app.get("/stream")
def stream() -> StreamingResponse:
    return StreamingResponse((f"part {i}\n" for i in range(3)), media_type="text/plain")


config = uvicorn.Config(app, log_level="warning")
server = uvicorn.Server(config)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
thread.start()
deadline = time.monotonic() + 20
while not server.started:
    assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
    time.sleep(0.05)
url = f"http://127.0.0.1:{listener.getsockname()[1]}/stream"
with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=10) as response:
    body = response.read().decode()
    chunked = response.headers.get("Transfer-Encoding")
server.should_exit = True
thread.join(10)
assert body == "part 0\npart 1\npart 2\n" and chunked == "chunked", (body, chunked)
assert config.http_protocol_class is H11Protocol, config.http_protocol_class
for extra in ("uvloop", "httptools", "watchfiles", "websockets"):
    assert importlib.util.find_spec(extra) is None, extra
print(f"uvicorn {uvicorn.__version__} (asyncio, h11) streams a FastAPI response")

import stratus  # noqa: E402

assert stratus.__file__.startswith(common)
# The parsers are IngestLayer's now: the other functions must not find them.
for name in ("lxml", "bs4", "pypdf", "soupsieve"):
    assert importlib.util.find_spec(name) is None, name
# What was trimmed is really gone (so the calls above ran without it).
assert importlib.util.find_spec("numpy._core.tests") is None
PY

# The ingest function's documents, extracted in the venv and from the layers: the same blocks.
PYTHONPATH="$ROOT" "$PYTHON" -c '
import sys
from tests.unit.test_extract import make_pdf
open(sys.argv[1], "wb").write(make_pdf([["Guide", "First page text."], ["Second page text."]], title="Guide"))
' "$WORK/sample.pdf"
EXTRACT='
import sys
from stratus.ingest.extract import extract
for path in sys.argv[1:]:
    doc = extract(open(path, "rb").read(), path)
    print(path.rsplit("/", 1)[-1], doc.kind, doc.page_count, len(doc.blocks), repr(doc.canonical_text()))
'
samples=("$WORK/sample.pdf" "$ROOT"/examples/corpus/*.html)
"$PYTHON" -c "$EXTRACT" "${samples[@]}" >"$WORK/venv.txt"
HOME="$WORK/home" PYTHONPATH="$COMMON:$INGEST:$RUNTIME" "$PYTHON" -S -c "
import sys
$EXTRACT
import bs4, lxml, pypdf
assert all(m.__file__.startswith('$INGEST') for m in (bs4, lxml, pypdf))
" "${samples[@]}" >"$WORK/layer.txt"
if ! diff -q "$WORK/venv.txt" "$WORK/layer.txt" >/dev/null; then
  echo "the layers' extraction differs from the venv's:" >&2
  diff "$WORK/venv.txt" "$WORK/layer.txt" >&2 || true
  exit 1
fi
echo "CommonLayer + IngestLayer: $(wc -l <"$WORK/venv.txt") documents (PDF, HTML) extract as in the venv: ok"
