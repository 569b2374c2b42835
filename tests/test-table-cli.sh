#!/bin/sh
# clipkd table end to end on tiny recipes: the plan (--dry-run) of the tiny
# table and of the shipped tables at paper scale, a run to completion with
# the four outputs, a rerun that reuses every run, a table killed mid-row
# that resumes without retraining what finished, a failing row reported in
# the table while the others run, and bad input. Run by `make check`;
# writes only to a mktemp directory.
set -u
srcdir=${CKD_TEST_SRCDIR:?run this through make check}
builddir=${CKD_TEST_BUILDDIR:?run this through make check}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ckd-table-XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
. "$srcdir/tests/sh-check.sh"

export CLIPKD_PLUGIN_PATH="$builddir/losses/.libs:$builddir/models/.libs"
export CLIPKD_CACHE="$tmp/cache"
export CLIPKD_DATA_DIR="$srcdir/models/clip"
unset CLIPKD_DATASETS
clipkd() { "$builddir/clipkd" "$@"; }
tables="$srcdir/tests/fixtures/tables"
tiny="$tables/tiny.json"

check "table --help" "^Usage: clipkd table" clipkd table --help

# -- plans
check "dry run of the tiny table" "^cost: 6 runs to train (0 already done), 384 training images" \
    clipkd table "$tiny" --dry-run --runs "$tmp/runs"
check "dry run names the teacher" "to train first" clipkd table "$tiny" --dry-run --runs "$tmp/runs"
check "dry run of some rows and seeds" "^cost: 1 run to train" \
    clipkd table "$tiny" --dry-run --rows crd --seeds 1 --runs "$tmp/runs"
[ -e "$tmp/runs" ] && echo "FAIL: a dry run created $tmp/runs" && failed=$((failed + 1))
for p in mini paper paper-wds; do
    check "clip-kd-ablation --profile $p --dry-run" "^cost: " \
        clipkd table "$srcdir/recipes/tables/clip-kd-ablation.json" --profile "$p" --dry-run --runs "$tmp/runs"
done
check "a shipped table by its name" "^table: .*recipes/tables/clip-kd-ablation.json" \
    clipkd table clip-kd-ablation --profile paper --dry-run --runs "$tmp/runs"
check "clip-kd-laion --dry-run: the RN50 rows (clip with a ModifiedResNet tower) can run" "^vit-b16-to-rn50 .* ok: " \
    clipkd table "$srcdir/recipes/tables/clip-kd-laion.json" --profile paper --dry-run --runs "$tmp/runs"
check "... and which teachers are published unpinned" "^vit-l14-to-vit-t16 .*not pinned yet: clipkd fetch --pin" \
    clipkd table "$srcdir/recipes/tables/clip-kd-laion.json" --profile paper --dry-run --runs "$tmp/runs"
check "cifd --dry-run: every row plans" "^rdm5-noibm .* ok: " \
    clipkd table "$srcdir/recipes/tables/cifd.json" --dry-run --runs "$tmp/runs"
for t in cifd-classifier knowledge-base embed-kd; do
    check "$t --dry-run: every row plans" "^cost: [0-9]* runs to train" \
        clipkd table "$srcdir/recipes/tables/$t.json" --dry-run --runs "$tmp/runs"
done

# -- a run, and a rerun that trains nothing
check "the tiny table runs" "^| +CRD |" clipkd table "$tiny" --runs "$tmp/runs" --out "$tmp/tout"
for f in table.md table.csv table.json table.svg; do
    check "it wrote $f" "" test -s "$tmp/tout/$f"
done
check "the CSV has a line per row and metric" "^tiny,mini,fd,+FD,done,zs_top1,2," cat "$tmp/tout/table.csv"
check "the rerun reuses every run" "finished in .*: 0 runs trained" \
    clipkd table "$tiny" --runs "$tmp/runs" --out "$tmp/tout"
check "--format csv prints CSV" "^table,profile,row,label,status" \
    clipkd table "$tiny" --runs "$tmp/runs" --out "$tmp/tout" --format csv

# -- killed mid-row: finished runs are kept, the interrupted one resumes
long="--set train.steps=300 --set train.checkpoint_every=10"
# kill_mid_row ROOT: starts the tiny table under ROOT and kills it (SIGKILL)
# once a run has finished and another holds a checkpoint; sets $killed,
# $done_runs and $ckpt (the interrupted run's directory). The program runs
# itself in the background (not the shell function), so that the kill
# reaches it; the libtool wrapper execs the real binary.
kill_mid_row() {
    "$builddir/clipkd" table "$tiny" --runs "$1" --out "$tmp/kout" $long > "$tmp/kill.log" 2>&1 &
    pid=$!
    killed=0 done_runs=0 ckpt=
    for i in $(seq 1 1200); do
        done_runs=$(ls "$1"/tiny-*/results.json 2>/dev/null | wc -l)
        ckpt=$(for d in "$1"/tiny-*; do [ -f "$d/checkpoint.safetensors" ] && [ ! -f "$d/results.json" ] && echo "$d"; done | head -n 1)
        if [ "$done_runs" -ge 1 ] && [ -n "$ckpt" ]; then
            kill -9 "$pid" && killed=1
            break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    wait "$pid" 2>/dev/null
    echo "killed: $killed (finished runs: $done_runs, interrupted: $ckpt)"
}
kill_mid_row "$tmp/kill"
if [ "$killed" -eq 1 ]; then
    ls -l --time-style=full-iso "$tmp"/kill/tiny-*/results.json > "$tmp/before.txt"
    check "the killed table resumes the interrupted run" "(resuming from its checkpoint)" \
        clipkd table "$tiny" --runs "$tmp/kill" --out "$tmp/kout" $long
    ls -l --time-style=full-iso "$tmp"/kill/tiny-*/results.json > "$tmp/after.txt"
    after=$(grep -c -F -x -f "$tmp/before.txt" "$tmp/after.txt")
    check "finished runs were not retrained" "" test "$after" -eq "$done_runs"
    check "the resumed table is complete" "^| +FD | .* | 2 |" cat "$tmp/kout/table.md"
else
    echo "FAIL: could not stop the table mid-row"
    failed=$((failed + 1))
fi
# A table's run is an ordinary run: clipkd run --resume continues it too
# (run.json records the table row it belongs to).
kill_mid_row "$tmp/kill2"
if [ "$killed" -eq 1 ]; then
    check "clipkd run --resume continues a table's run" "^run dir:" clipkd run --resume "$ckpt"
    check "the resumed run finished" "" test -f "$ckpt/results.json"
    check "run.json names the table row" '"row":' cat "$ckpt/run.json"
else
    echo "FAIL: could not stop the table mid-row"
    failed=$((failed + 1))
fi

# -- a failing row is reported; the others still run
check_status "a diverging row fails the table (exit 1)" 1 "row \"diverges\" failed" \
    clipkd table "$tables/fails.json" --runs "$tmp/runs" --out "$tmp/fout"
check "the failed row is in the table with its reason" "^Diverges failed: seed 0" cat "$tmp/fout/table.md"
check "a missing model plugin blocks its row" "^MobileNet blocked: needs model plugin mobilenet" cat "$tmp/fout/table.md"
check "the other rows ran" "^| Baseline | [0-9]" cat "$tmp/fout/table.md"
check_status "--no-keep-going stops at the failure" 1 "" \
    clipkd table "$tables/fails.json" --runs "$tmp/runs2" --out "$tmp/fout2" --no-keep-going --rows diverges,baseline

# -- bad input
check_status "unknown profile" 2 "unknown profile \"paepr\" (did you mean \"paper\"?)" \
    clipkd table "$srcdir/recipes/tables/clip-kd-ablation.json" --profile paepr --dry-run
check_status "unknown row" 2 "unknown row \"cdr\" (did you mean \"crd\"?)" clipkd table "$tiny" --rows cdr --dry-run
check_status "paper value for a metric the table lacks" 2 "paper-unknown-metric.json:5:72:.*rows\[1\].paper.zs_tpo1" \
    clipkd table "$tables/bad/paper-unknown-metric.json" --dry-run
check_status "a row whose recipe is invalid" 2 "bad-row-recipe.json: row \"bad-lr\" (profile mini): .*bad-row-recipe.json:8:" \
    clipkd table "$tables/bad/bad-row-recipe.json" --dry-run --runs "$tmp/runs"
check_status "a metric no evaluation provides" 2 "not provided by row \"a\"" \
    clipkd table "$tables/bad/no-retrieval.json" --dry-run --runs "$tmp/runs"
check_status "missing table" 2 "no-such-table.json" clipkd table "$tmp/no-such-table.json"
check_status "bad --format" 2 "expected md, csv or json" clipkd table "$tiny" --format xml
check_status "bad --seeds" 2 "expected 1 to 32" clipkd table "$tiny" --seeds 0

finish
