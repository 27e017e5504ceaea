# Shared by the layer builds (sourced: layers/<name>/build.sh and the check scripts): the Lambda target
# every layer is built for, installing a layer's pinned requirements, sizes, and Lambda's size limit for
# each function's set of layers.
#
# Before sourcing, a build sets LAYER (its name: common, guard, ingest, multilingual) and, after, mode (full: for
# Lambda; --native: for the interpreter $PIP runs, on this platform, as the check scripts do). For a build,
# this sets BUILD_DIR (LAYER_BUILD_DIR, default layers/<name>/build) and SITE, its python/ folder (Lambda
# puts a layer's python/ on sys.path).
# LAYERS_ROOT, the layers/ folder; <NAME>_BUILD_DIR (COMMON_BUILD_DIR ...) overrides where another layer's
# build is looked for by the combined size check (default: layers/<name>/build).

LAYERS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -n "${LAYER:-}" ]]; then
  BUILD_DIR="${LAYER_BUILD_DIR:-$LAYERS_ROOT/$LAYER/build}"
  SITE="$BUILD_DIR/python"
fi
PYTHON_VERSION="3.12"
ARCHITECTURE="arm64"
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34): any of these wheel tags loads there.
PLATFORMS=(manylinux2014_aarch64 manylinux_2_28_aarch64 manylinux_2_34_aarch64)
# Sizes are the files' bytes in MiB, as Lambda counts them (du's block counts read ~10% higher).
# Lambda allows 250 MiB unzipped for a function and all its layers. Each function keeps HEADROOM_MB of
# that free, so a dependency bump does not break the deploy; its own code is a few KiB (the library is in
# CommonLayer), CODE_MB are left for it. What remains is the most our layers may add up to in one function:
LAMBDA_LIMIT_MB=250
HEADROOM_MB=20
CODE_MB=1
MAX_FUNCTION_MB=$((LAMBDA_LIMIT_MB - HEADROOM_MB - CODE_MB))
# The distinct sets of layers template.yaml gives its functions (tests/infra checks they are the same):
# every function has CommonLayer (Globals); GuardFunction and GatewayFunction add GuardLayer,
# IngestFunction adds IngestLayer, GuardMultilingualFunction adds MultilingualLayer.
LAYER_SETS=(common common+guard common+ingest common+multilingual)
# Layers a set's functions also load that are not built here, as SET:MiB, taken off MAX_FUNCTION_MB for
# that set: GatewayFunction runs behind the AWS Lambda Web Adapter extension layer (~5 MiB, AWS's), so
# common+guard keeps 6 MiB for it (GuardFunction, with the same set, gets the same, stricter, limit).
RESERVED_MB=(common+guard:6)
# What the python3.12 Lambda runtime already puts on sys.path; no layer ships them.
RUNTIME_PROVIDED=(boto3 botocore s3transfer jmespath python-dateutil six urllib3)
PIP="${PIP:-python3 -m pip}"

print_target_config() {
  echo "BUILD_DIR=$BUILD_DIR"
  echo "PYTHON_VERSION=$PYTHON_VERSION"
  echo "ARCHITECTURE=$ARCHITECTURE"
  echo "PLATFORMS=${PLATFORMS[*]}"
  echo "MAX_FUNCTION_MB=$MAX_FUNCTION_MB"
  echo "LAYER_SETS=${LAYER_SETS[*]}"
  echo "RESERVED_MB=${RESERVED_MB[*]}"
  echo "LAMBDA_LIMIT_MB=$LAMBDA_LIMIT_MB"
  echo "HEADROOM_MB=$HEADROOM_MB"
  echo "CODE_MB=$CODE_MB"
}

# install_requirements SITE REQUIREMENTS: the pinned wheels, for Lambda's platform unless mode is --native.
# --no-deps: each requirements.txt is its layer's complete, pinned closure (see its header).
install_requirements() {
  local site="$1" requirements="$2" target_args=() p
  if [[ "$mode" != --native ]]; then
    target_args=(--implementation cp --python-version "$PYTHON_VERSION" --abi "cp${PYTHON_VERSION/./}")
    for p in "${PLATFORMS[@]}"; do target_args+=(--platform "$p"); done
  fi
  $PIP install --quiet --disable-pip-version-check --no-compile --no-deps --only-binary=:all: \
    "${target_args[@]}" --target "$site" -r "$requirements"
}

# trim_layer SITE: the trimming every layer gets (layers/trim.sh), with this machine's strip in --native mode.
trim_layer() {
  if [[ "$mode" == --native ]]; then bash "$LAYERS_ROOT/trim.sh" --native "$1"; else bash "$LAYERS_ROOT/trim.sh" "$1"; fi
}

# compile_cold_path SITE: bytecode for the modules of this layer that a function's init or first invocation
# imports (layers/bytecode.txt; scripts/cold_path_modules.py writes the list and, run by the interpreter the
# layer is for, compiles it). Lambda's /opt is read-only, so a module shipped without bytecode is compiled again at
# every cold start: about half of each function's init (docs/deploy.md, "Bytecode for the cold start"). Only
# those modules: bytecode for every module would not fit Lambda's 250 MiB beside GuardLayer.
# The interpreter: LAYER_PYTHON when set; else in --native mode the one $PIP runs ("<python> -m pip"); else
# the target's python3.12 (a full build fails on another version, or when there is none: the size check
# would otherwise pass a layer ~8 MiB lighter than the one that ships). A --code-only refresh compiles only
# with LAYER_PYTHON (it cannot tell which interpreter its folder was built for). LAYER_BYTECODE=none ships
# no bytecode.
compile_cold_path() {
  local site="$1" py version
  if [[ "${LAYER_BYTECODE:-}" == none ]]; then echo "bytecode: none (LAYER_BYTECODE=none)"; return 0; fi
  if [[ -n "${LAYER_PYTHON:-}" ]]; then py="$LAYER_PYTHON"
  elif [[ "$mode" == --native ]]; then py="${PIP% -m pip}"
  elif [[ "$mode" == --code-only ]]; then echo "bytecode: none (a --code-only refresh compiles with LAYER_PYTHON)"; return 0
  else py="python$PYTHON_VERSION"; fi
  if ! version="$("$py" -I -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"; then
    echo "$LAYER: cannot run '$py' to compile the layer's bytecode: set LAYER_PYTHON to a python$PYTHON_VERSION" \
      "(or LAYER_BYTECODE=none to ship none: each cold start then compiles it, about twice as slow)" >&2
    return 1
  fi
  if [[ "$mode" == full && "$version" != "$PYTHON_VERSION" ]]; then
    echo "$LAYER: '$py' is Python $version; the layer is for $PYTHON_VERSION (set LAYER_PYTHON)" >&2
    return 1
  fi
  "$py" -I "$LAYERS_ROOT/../scripts/cold_path_modules.py" --compile "$site"
}

# build_requirements_layer [MODE]: the whole build of a layer that is only its pinned requirements.txt,
# trimmed (ingest, multilingual). MODE: full (for Lambda, then the size check of every set with this
# layer), --native (for this machine: the check scripts and the Lambda contract tier) or --print-config.
build_requirements_layer() {
  mode="${1:-full}"
  case "$mode" in
    full|--native) ;;
    --print-config)
      print_target_config
      return 0
      ;;
    *) echo "usage: $0 [--native | --print-config]" >&2; return 2 ;;
  esac
  local installed_mb layer_mb
  rm -rf "$BUILD_DIR"
  mkdir -p "$SITE"
  install_requirements "$SITE" "$LAYERS_ROOT/$LAYER/requirements.txt"
  installed_mb=$(size_mb "$BUILD_DIR")
  trim_layer "$SITE"
  compile_cold_path "$SITE"
  layer_mb=$(size_mb "$BUILD_DIR")
  echo "layer content: $BUILD_DIR (${layer_mb} MiB unzipped; ${installed_mb} MiB before trimming)"
  [[ "$mode" == full ]] || return 0
  check_function_limits
}

# Unzipped size in MiB, rounded up: the sum of the files' sizes (what Lambda counts), whatever du's flavour.
size_mb() {
  python3 -c 'import os, sys; print(-(-sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(sys.argv[1])
    for f in fs if not os.path.islink(os.path.join(d, f))) // 2**20))' "$1"
}

# Where layer $1's build is: this build's BUILD_DIR for its own layer, else <NAME>_BUILD_DIR or the default.
layer_build_dir() {
  local name="$1" var
  if [[ "$name" == "$LAYER" ]]; then echo "$BUILD_DIR"; return; fi
  var="$(tr '[:lower:]' '[:upper:]' <<<"$name")_BUILD_DIR"
  echo "${!var:-$LAYERS_ROOT/$name/build}"
}

# The most set $1's layers may add up to: MAX_FUNCTION_MB less what RESERVED_MB keeps for the set.
set_limit_mb() {
  local entry limit="$MAX_FUNCTION_MB"
  for entry in "${RESERVED_MB[@]}"; do
    [[ "${entry%%:*}" == "$1" ]] && limit=$((limit - ${entry#*:}))
  done
  echo "$limit"
}

# Fails when a function's layers together pass their set's limit (set_limit_mb), so every function keeps
# HEADROOM_MB of Lambda's 250 MiB. Checks every set that contains this layer; a set with a layer not built
# yet is reported and skipped (`make build` builds them all, then each checks).
check_function_limits() {
  local set name dir size total limit failed=0 sizes missing
  for set in "${LAYER_SETS[@]}"; do
    [[ "+$set+" == *"+$LAYER+"* ]] || continue
    total=0 sizes="" missing=""
    for name in ${set//+/ }; do
      dir="$(layer_build_dir "$name")"
      if [[ ! -d "$dir/python" ]]; then missing="$name ($dir)"; break; fi
      size="$(size_mb "$dir")"
      total=$((total + size)) sizes="$sizes${sizes:+ + }$name $size"
    done
    if [[ -n "$missing" ]]; then
      echo "functions with layers $set: not checked, $missing is not built"
      continue
    fi
    limit="$(set_limit_mb "$set")"
    echo "functions with layers $set: $sizes = $total MiB (at most $limit;" \
      "$((LAMBDA_LIMIT_MB - CODE_MB - (MAX_FUNCTION_MB - limit) - total)) MiB under Lambda's $LAMBDA_LIMIT_MB)"
    if [[ "$total" -gt "$limit" ]]; then
      echo "layers $set are $total MiB, over $limit MiB: a function with them would keep less than" \
        "$HEADROOM_MB MiB of Lambda's $LAMBDA_LIMIT_MB MiB free (its code: $CODE_MB MiB; layers not built" \
        "here: $((MAX_FUNCTION_MB - limit)) MiB)" >&2
      failed=1
    fi
  done
  return "$failed"
}

# install_runtime_provided DIR LOCK: what the Lambda runtime provides, pinned from requirements.lock
# (the check scripts put it on sys.path beside the layers, as Lambda does).
install_runtime_provided() {
  local dir="$1" lock="$2" name pins=()
  for name in "${RUNTIME_PROVIDED[@]}"; do
    pins+=("$(grep -i -E "^${name//-/[-_]}==" "$lock")")
  done
  $PIP install --quiet --disable-pip-version-check --no-compile --no-deps --only-binary=:all: \
    --target "$dir" "${pins[@]}"
}
