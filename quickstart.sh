#!/bin/sh
# clipkd quick start on Debian 12.
#   ./quickstart.sh           install what is missing, build, run the quickstart
#   ./quickstart.sh --check   install what is missing, build, run the whole test suite
#   ./quickstart.sh --table [NAME [ARGS...]]
#                             install, build, rerun a shipped paper table (default
#                             clip-kd-ablation, its mini profile); ARGS go to clipkd table
# Builds out of tree in _build/. Installing packages needs root; otherwise the
# apt-get line to run is printed.
set -eu
cd "$(dirname "$0")"

mode=quickstart
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  --table) mode=table; shift; table=${1:-clip-kd-ablation}; [ $# -gt 0 ] && shift ;;
  -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "quickstart.sh: unknown argument '$1' (use --check, --table or nothing)" >&2; exit 2 ;;
esac

# Everything clipkd needs to build and test, as Debian 12 packages.
PACKAGES="build-essential autoconf automake libtool pkg-config libblis-dev libjansson-dev
libcurl4-openssl-dev libcriterion-dev zlib1g-dev libpng-dev libjpeg-dev libssl-dev
libarchive-dev dataset-fashion-mnist mpi-default-dev mpi-default-bin"

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "== installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $missing >/dev/null
  else
    echo "clipkd needs these Debian packages; install them and run this again:" >&2
    echo "  sudo apt-get install -y$missing" >&2
    exit 1
  fi
fi

jobs=$(nproc 2>/dev/null || echo 2)
[ -x configure ] || { echo "== autoreconf"; autoreconf --install --force >/dev/null 2>&1; }
mkdir -p _build
cd _build
[ -f Makefile ] || { echo "== configure"; ../configure -q; }
echo "== make"
make -s -j"$jobs" >/dev/null

if [ "$mode" = check ]; then
  echo "== make check"
  status=0
  make -s -j"$jobs" check >/dev/null 2>&1 || status=$?
  # Criterion closes each test program's log with its totals; add them up. A
  # program that died before printing them counts as one failure; a test
  # script (no Criterion) counts as one test.
  p=0; f=0
  for log in tests/*.log; do
    [ -f "$log" ] || continue
    line=$(grep -h 'Synthesis: Tested:' "$log" | tail -n 1)
    if [ -n "$line" ]; then
      t=$(echo "$line" | sed 's/.*Tested: \([0-9]*\).*/\1/')
      ok=$(echo "$line" | sed 's/.*Passing: \([0-9]*\).*/\1/')
      p=$((p + ok)); f=$((f + t - ok))
    elif grep -q ':test-result: \(FAIL\|ERROR\)' "${log%.log}.trs" 2>/dev/null; then
      f=$((f + 1))
    elif grep -q ':test-result: PASS' "${log%.log}.trs" 2>/dev/null; then
      p=$((p + 1))   # a script test: one test
    fi
  done
  echo "$p passed, $f failed" > test-totals.txt
  grep -h '^\(FAIL\|ERROR\|XPASS\):' test-suite.log 2>/dev/null || true
  [ "$status" -eq 0 ] || grep -h -B2 -A12 'FAIL\]\|CRASH\|Assertion' tests/*.log 2>/dev/null | head -80 || true
  cat test-totals.txt
  exit "$status"
fi

# Plugins, vocabulary, shipped data and recipes from the source tree; runs
# (the teacher's cached between calls) in _build/runs/.
export CLIPKD_PLUGIN_PATH="$PWD/models/.libs:$PWD/losses/.libs" CLIPKD_DATA_DIR="$PWD/../models/clip"
if [ "$mode" = table ]; then
  # OpenMP threads that sleep when idle: on a 2-core machine the data
  # loader's thread shares the cores, and spinning threads then cost the
  # small ResNet runs half their time (results do not depend on it).
  export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
  echo "== clipkd table $table $*"
  exec ./clipkd table "$table" --runs runs "$@"
fi

echo "== clipkd info"
./clipkd info
echo "== clipkd quickstart"
./clipkd quickstart ../recipes/quickstart --runs runs
