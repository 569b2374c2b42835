#!/bin/sh
# Data-parallel training over MPI (clipkd/dist.h, docs/cluster.md), under
# `mpirun -np 2 --oversubscribe` (two ranks on however many cores): the
# quickstart's tiny distilled recipe (CLIP + CRD + FD + ICL, cached
# teacher) on 2 ranks against 1 process at the same global batch and seed —
# the loss at every step within 1e-5 relative, the final weights within 1e-5
# relative L2 (tests/dist-compare.c), and the evaluation sharded over the
# ranks is one process's; a run stopped on 2 ranks resumes in
# one process; a rank killed mid-run stops the job
# with the checkpoint intact, and the job resumes to the same weights as an
# uninterrupted run; bad input stops every rank with one message. Skipped
# (exit 77) when clipkd was built without MPI or mpirun is missing. Writes
# only to a mktemp directory.
set -u
srcdir=${CKD_TEST_SRCDIR:?run this through make check}
builddir=${CKD_TEST_BUILDDIR:?run this through make check}
if ! "$builddir/clipkd" info | grep -q '^MPI: *compiled in'; then
    echo "SKIP: test-dist.sh: this clipkd was built without MPI (configure --with-mpi)"
    exit 77
fi
mpirun=${MPIEXEC:-mpirun}
if ! command -v "$mpirun" > /dev/null; then
    echo "SKIP: test-dist.sh: $mpirun not found (Debian package openmpi-bin)"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ckd-dist-XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
. "$srcdir/tests/sh-check.sh"

export CLIPKD_PLUGIN_PATH="$builddir/losses/.libs:$builddir/models/.libs"
export CLIPKD_CACHE="$tmp/cache"
export CLIPKD_DATA_DIR="$srcdir/models/clip"
# Open MPI refuses root unless told (CI runs as root); one thread per rank.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
unset CLIPKD_DATASETS
clipkd() { "$builddir/clipkd" "$@"; }
mpi() { np=$1; shift; "$mpirun" -np "$np" --oversubscribe "$builddir/clipkd" "$@"; }
students="$srcdir/tests/fixtures/quickstart/students"
runs="$tmp/runs"
compare() { "$builddir/tests/dist-compare" "$@"; }

check "info on 2 ranks" "rank 0 of 2" mpi 2 info

# -- equivalence: the teacher once, then the student on 1 process and on 2 ranks
check "the teacher, in one process" "" clipkd run "$students/../teachers/teacher.json" --runs "$runs"
same="--set train.log_every=1 --set train.steps=8 --set threads=1"
check "student, 1 process" "" clipkd run "$students/distilled.json" --runs "$runs" --out "$tmp/one" $same
# 2 ranks with a cache of their own: they compute the teacher's entry together
check "student, 2 ranks" "^run dir:  $tmp/two" env CLIPKD_CACHE="$tmp/cache2" \
    "$mpirun" -np 2 --oversubscribe "$builddir/clipkd" run "$students/distilled.json" --runs "$runs" --out "$tmp/two" $same
cp "$tmp/out" "$tmp/out.two"
check "... computing the teacher's embeddings once, together" "" \
    test "$(grep -c 'teacher embeddings: computing 64 images' "$tmp/out.two")" -eq 1
check "... prints only rank 0's lines" "" test "$(grep -c '^run dir:' "$tmp/out.two")" -eq 1
check "... and records the ranks" '"ranks": 2' cat "$tmp/two/results.json"
check "2 ranks = 1 process: loss at every step, final weights" "within tolerance" \
    compare "$tmp/one" "$tmp/two" 1e-5 1e-5
# the evaluation, sharded over the ranks, against one process's of the same weights
check "the 2-rank run's evaluation ..." "" sh -c "sed -n 's/^.*\] eval: //p' '$tmp/out.two' > '$tmp/eval.two' && test -s '$tmp/eval.two'"
check "... is one process's evaluation of its weights" "" \
    sh -c "'$builddir/clipkd' eval '$tmp/two' --data '$students/distilled.json' | tail -n 1 | cmp - '$tmp/eval.two'"
# a cache on each node's own disk (here: each rank's own directory)
check "a cache of each rank's own, computed together ..." "" "$mpirun" -np 2 --oversubscribe sh -c \
    "CLIPKD_CACHE='$tmp/node'\$OMPI_COMM_WORLD_RANK exec '$builddir/clipkd' run '$students/distilled.json' \
     --runs '$runs' --out '$tmp/pernode' $same"
check "... is written in each" "" \
    sh -c "ls '$tmp'/node0/teacher-embeddings/*.safetensors '$tmp'/node1/teacher-embeddings/*.safetensors"
check "... has the same training as the shared cache's" "within tolerance" compare "$tmp/two" "$tmp/pernode" 0 0

check "a run stopped on 2 ranks ..." "" mpi 2 run "$students/distilled.json" --runs "$runs" --out "$tmp/regrid" $same \
    --set train.checkpoint_every=4 --stop-after 5
check "... resumes in one process" "^run dir:  $tmp/regrid" clipkd run --resume "$tmp/regrid"
check "... to the 2-rank run's losses and weights" "within tolerance" compare "$tmp/two" "$tmp/regrid" 1e-5 1e-5

# -- a rank killed mid-run: the job stops, the checkpoint is intact, the job resumes
long="--set train.log_every=1 --set train.steps=400 --set train.checkpoint_every=5 --set threads=1"
( mpi 2 run "$students/distilled.json" --runs "$runs" --out "$tmp/killed" $long > "$tmp/killed.log" 2>&1; \
  echo $? > "$tmp/killed.status" ) &
# rank 1 is the process of this test whose environment says so
victim=
for _ in $(seq 1 600); do
    if [ -e "$tmp/killed/checkpoint.safetensors" ]; then
        for p in /proc/[0-9]*; do
            if tr '\0' '\n' 2> /dev/null < "$p/environ" | grep -qx 'OMPI_COMM_WORLD_RANK=1' &&
                tr '\0' ' ' 2> /dev/null < "$p/cmdline" | grep -q -- "$tmp/killed"; then
                victim=${p#/proc/}
            fi
        done
        [ -n "$victim" ] && break
    fi
    sleep 0.05
done
[ -n "$victim" ] && kill -9 "$victim"
wait
check "a rank killed mid-run ..." "" test -n "$victim"
check_status "... stops the whole job" 0 "" test "$(cat "$tmp/killed.status")" -ne 0
check "... and says which rank" "process rank 1 .*exited on signal 9" cat "$tmp/killed.log"
check "... leaving no finished run" "" test ! -e "$tmp/killed/results.json"
check "... and its checkpoint" "" test -s "$tmp/killed/checkpoint.safetensors"
check "the job resumes on 2 ranks" "^run dir:  $tmp/killed" mpi 2 run --resume "$tmp/killed"
check "an uninterrupted run on 2 ranks" "" \
    mpi 2 run "$students/distilled.json" --runs "$runs" --out "$tmp/whole" $long
check "... has the resumed run's weights and losses" "within tolerance" compare "$tmp/whole" "$tmp/killed" 0 0

# -- bad input: one message from rank 0, every rank exits
check_status "a global batch the ranks cannot split" 1 "train.batch_size: 16 is the global batch, to be split evenly over 3 ranks" \
    mpi 3 run "$students/baseline.json" --runs "$tmp/bad"
check "... said once" "" test "$(grep -c 'global batch' "$tmp/out")" -eq 1
check_status "ranks given different recipes" 1 "rank 1 resolved a different recipe than rank 0" \
    "$mpirun" -np 2 --oversubscribe sh -c \
    "exec '$builddir/clipkd' run '$students/baseline.json' --runs '$tmp/bad' --set seed=\$OMPI_COMM_WORLD_RANK"
check_status "ranks with different plugin sets" 1 "rank 1 runs a different clipkd build or plugin set than rank 0" \
    "$mpirun" -np 2 --oversubscribe sh -c \
    "[ \$OMPI_COMM_WORLD_RANK = 1 ] && CLIPKD_PLUGIN_PATH=\$CLIPKD_PLUGIN_PATH:'$builddir/tests/probe/.libs';
     export CLIPKD_PLUGIN_PATH; exec '$builddir/clipkd' run '$students/baseline.json' --runs '$tmp/bad'"
check_status "a rank that cannot see the run directory" 1 "rank 1: .*run.json: not visible from this rank" \
    "$mpirun" -np 2 --oversubscribe sh -c \
    "mkdir -p '$tmp/r'\$OMPI_COMM_WORLD_RANK && cd '$tmp/r'\$OMPI_COMM_WORLD_RANK &&
     exec '$builddir/clipkd' run '$students/baseline.json' --out run"
# the BLIS kernel set is rank 0's on every rank; a rank forced onto another is refused
own=$(clipkd info | sed -n 's/^kernels: *\([^ ]*\).*/\1/p')
for id in 3 6 7 8 0; do
    k=$(BLIS_ARCH_TYPE=$id clipkd info 2>/dev/null | sed -n 's/^kernels: *\([^ ]*\).*/\1/p')
    [ -n "$k" ] && [ "$k" != "$own" ] && break
done
check_status "a rank on other BLIS kernels ($k, rank 0: $own)" 1 "this rank uses $k, rank 0 uses $own" \
    "$mpirun" -np 2 --oversubscribe sh -c \
    "[ \$OMPI_COMM_WORLD_RANK = 1 ] && export BLIS_ARCH_TYPE=$id; exec '$builddir/clipkd' info"
if ! clipkd info | grep -q '^CPU:.*avx512f'; then
    check_status "rank 0's set that this CPU cannot run is refused, not run" 1 "skx cannot run on this CPU" \
        "$mpirun" -np 2 --oversubscribe sh -c \
        "[ \$OMPI_COMM_WORLD_RANK = 0 ] && export BLIS_ARCH_TYPE=0; exec '$builddir/clipkd' info"
fi
check "ranks timing in caches of their own use rank 0's choice" "^kernels: " "$mpirun" -np 2 --oversubscribe sh -c \
    "CLIPKD_KERNELS=auto CLIPKD_CACHE='$tmp/k'\$OMPI_COMM_WORLD_RANK exec '$builddir/clipkd' info"
check "... rank 0 alone timed them" "" sh -c "! ls '$tmp'/k1/kernels/*.json 2>/dev/null"
check_status "another command on several ranks" 2 "does not run on several MPI ranks" mpi 2 validate "$students/baseline.json"
finish
