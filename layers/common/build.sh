#!/usr/bin/env bash
# Builds CommonLayer's content (template.yaml: ContentUri layers/common/build/) for python3.12 on arm64:
#   build/python/<pinned runtime dependencies>   wheels for Lambda's platform, never compiled here
#   build/python/stratus/                        the runtime library from shared/stratus (only: the tooling in
#                                                shared/stratus_tools never ships; tests/infra/test_runtime_tooling.py)
#   build/python/stratus/db/migrations/*.sql     the SQL migrations (migrate.py looks there first)
#   build/python/stratus/prompts/bundled/        the prompt files (prompts/<name>/<version>.yaml)
# The dependencies are trimmed as every layer's are (layers/trim.sh), after dropping what the embedder never
# loads from onnxruntime (ONNXRUNTIME_DROPPED below):
#   - capi/libonnxruntime.so.*, the runtime's C API library (26 MiB) for programs that link it: the Python
#     binding (onnxruntime_pybind11_state) has the runtime built in and needs only system libraries; the
#     build fails if a shipped library still names it (a dynamic dependency is a string in the binary);
#   - the model tooling packages transformers/, quantization/ and tools/ (3.6 MiB; conversion and
#     optimisation scripts that need the `onnx` package, which no layer ships; `import onnxruntime` does
#     not import them).
# The document parsers the ingest function alone needs are in IngestLayer (layers/ingest), the guard's
# detectors in GuardLayer.
# layers/common/check.sh builds the same layer for this machine and runs it with only the layers on sys.path.
#
# Usage: layers/common/build.sh [--native | --code-only | --print-config]
#   --native        build for the interpreter $PIP runs, on this platform, instead of Lambda's (check scripts)
#   --code-only     refresh the stratus package and migrations only (offline; dependencies untouched)
#   --print-config  print the build settings (the infra tests check them against template.yaml)
# LAYER_BUILD_DIR overrides the output folder (default: layers/common/build); GUARD_BUILD_DIR and
# INGEST_BUILD_DIR the other layers' builds the per-function size check counts (default: layers/<name>/build).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LAYER=common
# BUILD_DIR and SITE; the target (Python, architecture, wheel platforms), install, sizes and the
# per-function limit (layers/lib.sh).
source "$HERE/../lib.sh"
# onnxruntime's files and folders dropped (paths under onnxruntime/, globs allowed).
ONNXRUNTIME_DROPPED=('capi/libonnxruntime.so*' transformers quantization tools)

mode="${1:-full}"
case "$mode" in
  full|--native|--code-only) ;;
  --print-config)
    print_target_config
    echo "ONNXRUNTIME_DROPPED=${ONNXRUNTIME_DROPPED[*]}"
    exit 0
    ;;
  *) echo "usage: $0 [--native | --code-only | --print-config]" >&2; exit 2 ;;
esac

# What the embedder never loads from onnxruntime (see the header), before the trimming every layer gets.
trim_onnxruntime() {
  local site="$1" dropped path users
  for dropped in "${ONNXRUNTIME_DROPPED[@]}"; do
    for path in "$site"/onnxruntime/$dropped; do rm -rf "$path"; done
  done
  # No library left may load the C API library (a NEEDED entry or a dlopen name is a string in the file).
  users="$(find "$site" -type f \( -name '*.so' -o -name '*.so.*' \) -exec grep -l -a -F libonnxruntime.so {} + || true)"
  if [[ -n "$users" ]]; then
    echo "these libraries name libonnxruntime.so, which the build drops:" $users >&2
    exit 1
  fi
}

if [[ "$mode" != --code-only ]]; then
  rm -rf "$BUILD_DIR"
  mkdir -p "$SITE"
  install_requirements "$SITE" "$HERE/requirements.txt"
  installed_mb=$(size_mb "$BUILD_DIR")
  trim_onnxruntime "$SITE"
  trim_layer "$SITE"
else
  mkdir -p "$SITE"
fi

# The library itself, without bytecode or local-only caches.
rm -rf "$SITE/stratus"
cp -R "$ROOT/shared/stratus" "$SITE/stratus"
mkdir -p "$SITE/stratus/db/migrations"
cp "$ROOT"/infra/db/migrations/*.sql "$SITE/stratus/db/migrations/"
# The prompt files (the registry reads this bundled copy first): <name>/<version>.yaml only.
rm -rf "$SITE/stratus/prompts/bundled"
for f in "$ROOT"/prompts/*/*.yaml; do
  [[ -e "$f" ]] || continue
  dest="$SITE/stratus/prompts/bundled/$(basename "$(dirname "$f")")"
  mkdir -p "$dest"
  cp "$f" "$dest/"
done
find "$SITE/stratus" -name __pycache__ -type d -prune -exec rm -rf {} +  # the checkout's, for its interpreter
compile_cold_path "$SITE"

layer_mb=$(size_mb "$BUILD_DIR")
echo "layer content: $BUILD_DIR (${layer_mb} MiB unzipped${installed_mb:+; ${installed_mb} MiB before trimming})"
[[ "$mode" == full ]] || exit 0
check_function_limits
