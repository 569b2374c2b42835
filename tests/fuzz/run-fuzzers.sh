#!/bin/sh
# make fuzz: runs each libFuzzer program of tests/fuzz for a while and prints
# one line per target. Usage: run-fuzzers.sh SRCDIR BUILDDIR SECONDS TARGET...
#
# Each fuzzer starts from its seed corpus and regressions (read only) and
# keeps what it finds in BUILDDIR/fuzz-corpus/TARGET, so repeated campaigns
# go on from where the last stopped; a crash, hang or memory blow-up is
# saved in BUILDDIR/fuzz-crashes/ (add it to tests/fuzz/regressions/TARGET
# once fixed). Every line is also appended to BUILDDIR/fuzz-campaigns.tsv:
# date, target, seconds, executions, exec/s, coverage (edges), features,
# corpus size, result — the figures docs/reliability.md records.
# FUZZ_RUNS=N in the environment also stops each fuzzer after N executions.
set -u
src=$1 build=$2 seconds=$3
shift 3
if [ ! -x "$build/tests/fuzz/fuzz-${1:-x}" ]; then
    echo "make fuzz: no fuzzers in this build: configure it with --enable-fuzzing (clang), e.g." >&2
    echo "  mkdir _fuzz && cd _fuzz && ../configure --enable-fuzzing && make fuzz FUZZ_SECONDS=60" >&2
    exit 2
fi
# The harnesses read the shipped vocabulary and the plugins of this build.
CLIPKD_DATA_DIR=${CLIPKD_DATA_DIR:-$src/models/clip}
CLIPKD_PLUGIN_PATH=${CLIPKD_PLUGIN_PATH:-$build/models/.libs:$build/losses/.libs}
CLIPKD_THREADS=1
export CLIPKD_DATA_DIR CLIPKD_PLUGIN_PATH CLIPKD_THREADS
mkdir -p "$build/fuzz-crashes" "$build/fuzz-corpus"
stats=$build/fuzz-campaigns.tsv
[ -f "$stats" ] || printf 'date\ttarget\tseconds\texecs\texec_per_s\tcov\tft\tcorpus\tresult\n' >"$stats"
failed=0
for t in "$@"; do
    corpus=$build/fuzz-corpus/$t
    mkdir -p "$corpus"
    seeds=
    for d in "$src/tests/fuzz/corpus/$t" "$src/tests/fuzz/regressions/$t"; do
        [ -d "$d" ] && seeds="$seeds $d"
    done
    log=$build/fuzz-crashes/$t.log
    # Input size: what the parser needs to show all its paths, no more
    # (libFuzzer would otherwise go up to the largest seed or regression:
    # the tokenizer's 160 KB regression would slow every input down).
    case $t in
    brace) max_len=128 ;;
    tokenizer | checkpoint | csv | retrieval | recipe | table | model_config) max_len=4096 ;;
    *) max_len=65536 ;;
    esac
    # -rss_limit_mb / -malloc_limit_mb: the 256 MB budget of one input, with
    # room for the sanitizers' own memory; -timeout: a hang.
    # shellcheck disable=SC2086
    "$build/tests/fuzz/fuzz-$t" -max_total_time="$seconds" -max_len="$max_len" -runs="${FUZZ_RUNS:--1}" -timeout=25 -rss_limit_mb=1024 -malloc_limit_mb=512 \
        -print_final_stats=1 -artifact_prefix="$build/fuzz-crashes/$t-" "$corpus" $seeds >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(printf '%s\n' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(printf '%s\n' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(printf '%s\n' "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        result="FAILED (exit $rc; see $log)"
        failed=1
    fi
    printf 'fuzz: %s: %s execs, %s exec/s, cov %s, ft %s, corpus %s: %s\n' "$t" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$t" "$seconds" "${execs:-}" \
        "${rate:-}" "${cov:-}" "${ft:-}" "${corp:-}" "$result" >>"$stats"
done
exit "$failed"
