#!/usr/bin/env bash
# Builds IngestLayer's content (ContentUri layers/ingest/build/) for python3.12 on arm64: the document
# parsers only the ingest function loads (beautifulsoup4 on lxml for HTML, pypdf) as build/python/<pinned
# wheels>, trimmed as every layer is (layers/trim.sh). The stratus library and the shared dependencies
# come from CommonLayer; IngestFunction lists both layers (one sys.path). layers/common/check.sh builds
# it for this machine and extracts HTML and PDF documents with only the two layers on sys.path.
#
# Usage: layers/ingest/build.sh [--native | --print-config]
#   --native        build for the interpreter $PIP runs, on this platform, instead of Lambda's (check scripts)
#   --print-config  print the build settings (the infra tests check them against template.yaml)
# LAYER_BUILD_DIR overrides the output folder (default: layers/ingest/build); COMMON_BUILD_DIR names the
# CommonLayer build whose size counts towards the function's limit (default: layers/common/build).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAYER=ingest
# BUILD_DIR and SITE; the target (Python, architecture, wheel platforms), install, sizes, the
# per-function limit and the build itself (layers/lib.sh).
source "$HERE/../lib.sh"

build_requirements_layer "${1:-full}"
