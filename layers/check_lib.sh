# Shared by the layer check scripts (sourced: layers/<name>/check.sh): ROOT, the interpreter the layers are
# built for and run by (PYTHON, default .venv/bin/python), a scratch folder removed on exit (WORK), and
# layers/lib.sh in --native mode (install_runtime_provided: the Lambda runtime's boto3 and its dependencies).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PIP="$PYTHON -m pip"
mode=--native
source "$ROOT/layers/lib.sh"

# build_for_check NAME...: each layer built for this machine into $WORK/NAME (its python/ is the layer's
# sys.path entry), then what the Lambda runtime provides into $WORK/runtime.
build_for_check() {
  local name
  for name in "$@"; do
    LAYER_BUILD_DIR="$WORK/$name" bash "$ROOT/layers/$name/build.sh" --native
  done
  install_runtime_provided "$WORK/runtime" "$ROOT/requirements.lock"
}

# run_in_layers LABEL FOLDER... <<'PY' ... PY: runs the Python script on stdin with only the FOLDERs and the
# standard library on sys.path (-S: no site-packages, so nothing from the venv can stand in for a missing
# dependency). The script finds `sys`, `importlib.util` and `layers` (the FOLDERs) defined; afterwards every
# module it loaded must have come from the FOLDERs or the standard library, and "LABEL: ok" is printed.
run_in_layers() {
  local label="$1"
  shift
  { cat <<'PY'
import importlib.util
import sys

layers = sys.argv[1:]
sys.path[1:1] = layers
PY
    cat
    cat <<PY
outside = sorted(
    name
    for name, module in list(sys.modules.items())
    if (getattr(module, "__file__", None) or "").startswith("/")  # "<stdin>" is __main__'s
    and not module.__file__.startswith((*layers, sys.base_prefix))
)
assert not outside, f"loaded from outside the layers: {outside}"
print("$label: ok")
PY
  } | HOME="$WORK/home" "$PYTHON" -S - "$@"
}
