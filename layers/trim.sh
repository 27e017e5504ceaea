#!/usr/bin/env bash
# Trims an installed layer (its python/ folder) of what the runtime never loads, for every layer build:
#   - tests folders and bytecode (a wheel's bytecode, if any, is for whatever interpreter made it; the build
#     then compiles what the functions' inits import for the target's interpreter: lib.sh, compile_cold_path);
#   - C/Cython sources and headers (.c .cpp .h .pyx .pxd .pxi) and type stubs (.pyi): build and editor
#     inputs only;
#   - debug sections of the shared libraries: `strip --strip-debug` keeps every symbol the dynamic loader
#     and Python's extension loading need (not --strip-all/--strip-unneeded); llvm-strip reads aarch64
#     ELF files on any host. Not the libraries auditwheel vendored into <dist>.libs/ folders: patchelf
#     rewrote their headers, and strip can leave them unloadable ("ELF load command address/offset not
#     page-aligned": numpy.libs' OpenBLAS did); they ship stripped already.
# Layer-specific trimming (GuardLayer's spaCy languages ...) stays in that layer's build.sh.
#
# Usage: layers/trim.sh [--native] SITE
#   --native  the files are for this machine: its own strip will do
# STRIP overrides the strip program.
set -euo pipefail

native=0
if [[ "${1:-}" == --native ]]; then native=1; shift; fi
site="${1:?usage: $0 [--native] SITE}"
[[ -d "$site" ]] || { echo "trim: $site is not a folder" >&2; exit 2; }

# A strip that understands the target's ELF files.
pick_strip() {
  if [[ -n "${STRIP:-}" ]]; then echo "$STRIP"; return; fi
  if [[ "$native" == 1 || "$(uname -m)" == aarch64 ]] && command -v strip >/dev/null; then echo strip; return; fi
  local s
  for s in llvm-strip aarch64-linux-gnu-strip; do
    if command -v "$s" >/dev/null; then echo "$s"; return; fi
  done
}

find "$site" -type d \( -name tests -o -name __pycache__ \) -prune -exec rm -rf {} +
find "$site" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.c' -o -name '*.cpp' \
  -o -name '*.h' -o -name '*.pyi' -o -name '*.pyc' \) -delete

stripper="$(pick_strip)"
if [[ -n "$stripper" ]]; then
  find "$site" -type d -name '*.libs' -prune -o -type f \( -name '*.so' -o -name '*.so.*' \) \
    -exec "$stripper" --strip-debug {} +
else
  echo "warning: no strip for arm64 found (llvm-strip or aarch64-linux-gnu-strip); debug info kept" >&2
fi
