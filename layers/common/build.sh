#!/usr/bin/env bash
# Builds CommonLayer's content (template.yaml: ContentUri layers/common/build/) for python3.12 on arm64:
#   build/python/<pinned runtime dependencies>   wheels for Lambda's platform, never compiled here
#   build/python/stratus/                        the library from shared/stratus
#   build/python/stratus/db/migrations/*.sql     the SQL migrations (migrate.py looks there first)
#   build/python/stratus/prompts/bundled/        the prompt files (prompts/<name>/<version>.yaml)
#
# Usage: layers/common/build.sh [--code-only | --print-config]
#   --code-only     refresh the stratus package and migrations only (offline; dependencies untouched)
#   --print-config  print the build settings (the infra tests check them against template.yaml)
# LAYER_BUILD_DIR overrides the output folder (default: layers/common/build).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD_DIR="${LAYER_BUILD_DIR:-$HERE/build}"
SITE="$BUILD_DIR/python"  # Lambda puts a layer's python/ on sys.path
PYTHON_VERSION="3.12"
ARCHITECTURE="arm64"
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34): any of these wheel tags loads there.
PLATFORMS=(manylinux2014_aarch64 manylinux_2_28_aarch64 manylinux_2_34_aarch64)
# Lambda's limit for a function and all its layers, unzipped; leave room for the function code.
MAX_LAYER_MB=240
PIP="${PIP:-python3 -m pip}"

mode="${1:-full}"
case "$mode" in
  full|--code-only) ;;
  --print-config)
    echo "BUILD_DIR=$BUILD_DIR"
    echo "PYTHON_VERSION=$PYTHON_VERSION"
    echo "ARCHITECTURE=$ARCHITECTURE"
    echo "PLATFORMS=${PLATFORMS[*]}"
    exit 0
    ;;
  *) echo "usage: $0 [--code-only | --print-config]" >&2; exit 2 ;;
esac

if [[ "$mode" == full ]]; then
  rm -rf "$BUILD_DIR"
  mkdir -p "$SITE"
  platform_args=()
  for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
  # --no-deps: requirements.txt is the complete, pinned closure (see its header for what is left out).
  $PIP install --quiet --disable-pip-version-check --no-compile --no-deps \
    --only-binary=:all: --implementation cp --python-version "$PYTHON_VERSION" --abi "cp${PYTHON_VERSION/./}" \
    "${platform_args[@]}" --target "$SITE" -r "$HERE/requirements.txt"
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
find "$SITE" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$SITE" -name '*.pyc' -delete

size_mb=$(du -sm "$BUILD_DIR" | cut -f1)
echo "layer content: $BUILD_DIR (${size_mb} MB unzipped)"
if [[ "$mode" == full && "$size_mb" -gt "$MAX_LAYER_MB" ]]; then
  echo "layer is ${size_mb} MB; Lambda allows 250 MB unzipped for a function and its layers" >&2
  exit 1
fi
