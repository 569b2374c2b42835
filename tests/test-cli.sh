#!/bin/sh
# The clipkd command line end to end, as a user types it: help for every
# command, exit statuses (0 ok, 1 a check failed, 2 bad usage or input), the
# error messages for bad recipes and bad plugins, gradcheck and loss-eval on
# the shipped losses, fetch into an empty cache from the local Fashion-MNIST
# copy, run --dry-run, and the cache commands on teacher embeddings. Run by
# `make check`; writes only to a mktemp directory.
set -u
srcdir=${CKD_TEST_SRCDIR:?run this through make check}
builddir=${CKD_TEST_BUILDDIR:?run this through make check}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ckd-cli-XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
. "$srcdir/tests/sh-check.sh"

export CLIPKD_PLUGIN_PATH="$builddir/losses/.libs:$builddir/models/.libs"
export CLIPKD_CACHE="$tmp/cache"
clipkd() { "$builddir/clipkd" "$@"; }
recipes="$srcdir/tests/fixtures/recipes"

# -- help and usage
check "clipkd --help lists commands" "^  gradcheck" clipkd --help
for cmd in info selftest plugins gradcheck loss-eval validate run fetch cache quickstart; do
    check "clipkd $cmd --help" "^Usage: clipkd" clipkd "$cmd" --help
done
check_status "unknown command" 2 "unknown command 'trian'" clipkd trian
check_status "bad --threads" 2 "not a thread count" clipkd --threads zero info
check "info names the kernels" "^kernels:" clipkd info

# -- plugins
check "plugins lists every loss" "^  crd " clipkd plugins
for loss in clip crd fd mfd gd icl afd kd ce l2 vl embed_kd; do
    check "plugins show $loss" "^needs:" clipkd plugins show "$loss"
done
check "plugins --json" '"kind": "loss"' clipkd plugins --json
check_status "bad plugins are reported" 2 "plugin ABI 2, this clipkd speaks ABI 1" \
    env CLIPKD_PLUGIN_PATH="$builddir/tests/plugins/.libs" "$builddir/clipkd" plugins

# -- gradcheck and loss-eval on the shipped losses
for loss in clip crd fd mfd icl afd kd ce l2 vl embed_kd; do
    check "gradcheck $loss" "^PASS$" clipkd gradcheck "$loss" --atol 1e-4
done
check "gradcheck gd" "^PASS$" clipkd gradcheck gd
check "gradcheck crd tau=2" "^PASS$" clipkd gradcheck crd --set tau=2
check_status "gradcheck with a bad enum" 2 'expected one of "multiply", "divide"' clipkd gradcheck gd --set scale=mul
check_status "gradcheck of an unknown loss" 2 'did you mean "crd"' clipkd gradcheck cdr
check "loss-eval writes loss and gradients" "^wrote" \
    clipkd loss-eval crd --inputs "$srcdir/tests/fixtures/kd/kd_losses_seed1.safetensors" --out "$tmp/crd.safetensors"
check_status "loss-eval of a missing file" 2 "nothing.safetensors" \
    clipkd loss-eval crd --inputs "$tmp/nothing.safetensors" --out "$tmp/x.safetensors"

# -- recipes
check "validate fills defaults and prints the hash" "^recipe hash: [0-9a-f]\{64\}$" \
    clipkd validate "$srcdir/tests/fixtures/cli/student.json"
check_status "malformed JSON names line and column" 2 "malformed.json:[0-9]*:[0-9]*:" clipkd validate "$recipes/malformed.json"
check_status "unknown key suggests" 2 'did you mean "losses"' clipkd validate "$recipes/typo.json"
check_status "extends cycle" 2 "cycle" clipkd validate "$recipes/cycle-a.json"
check_status "missing extends file" 2 "missing-extends.json" clipkd validate "$recipes/missing-extends.json"
check_status "wrong type" 2 'expected an integer, got "seven"' clipkd validate "$recipes/wrong-type.json"
check_status "out of range" 2 "expected a value ≥ 1, got 0" clipkd validate "$recipes/out-of-range.json"
check_status "bad plugin parameter" 2 "losses\[1\].params.tau" clipkd validate "$recipes/bad-params.json"
check_status "--set to an unknown key" 2 "unknown" clipkd validate "$srcdir/tests/fixtures/cli/student.json" --set optim.lrate=1
for example in examples/fmnist-kd examples/fmnist-embed-kd cifd/ibm cifd/assisted cifd/rdm-image-r10000 cifd/rdm-text-r1000; do
    check "validate recipes/$example.json" "^recipe hash: [0-9a-f]\{64\}$" \
        clipkd validate "$srcdir/recipes/$example.json"
done
named='student.config={"name": "ViT-T-16", "vision": {"layers": 6}}'
check "validate expands a named model configuration" '"embed_dim": 512' \
    env CLIPKD_DATA_DIR="$srcdir/models/clip" "$builddir/clipkd" validate \
    "$srcdir/tests/fixtures/cli/student.json" --set "$named"
check "... with the recipe's keys over it" '"embed_dim": 256' \
    env CLIPKD_DATA_DIR="$srcdir/models/clip" "$builddir/clipkd" validate \
    "$srcdir/tests/fixtures/cli/student.json" --set "$named" --set student.config.embed_dim=256
check_status "an unknown configuration name lists the shipped ones" 2 \
    'student.config.name: no shipped configuration "ViT-T-61" of model plugin "clip" (did you mean "ViT-T-16"?); shipped: RN101, RN50, ViT-B-16, ViT-B-32' \
    env CLIPKD_DATA_DIR="$srcdir/models/clip" "$builddir/clipkd" validate \
    "$srcdir/tests/fixtures/cli/student.json" --set 'student.config={"name": "ViT-T-61"}'
check "run --dry-run creates nothing" "not created" clipkd run "$srcdir/tests/fixtures/cli/student.json" --out "$tmp/run" --dry-run
check_status "dry run left no directory" 1 "" test -e "$tmp/run"

# -- fetch: Fashion-MNIST from the local copy into an empty cache, then offline
check "fetch fills the cache" "0 failed" clipkd fetch "$srcdir/tests/fixtures/cli/student.json" --offline
check "cache ls lists the files" "t10k-images" clipkd cache ls
check "cache verify" "0 bad" clipkd cache verify

# -- teacher embeddings in the cache: a run with a random teacher computes an
# entry; ls, verify and gc treat it as documented in clipkd(1)
teacher='{"model": "clip", "config": {"embed_dim": 32,
  "vision": {"image_size": 28, "patch_size": 7, "width": 32, "layers": 1, "heads": 2},
  "text": {"context_length": 32, "width": 32, "layers": 1, "heads": 2}}}'
check "a run computes teacher embeddings" "teacher embeddings: computing" \
    env CLIPKD_DATA_DIR="$srcdir/models/clip" "$builddir/clipkd" --threads 1 run \
    "$srcdir/tests/fixtures/cli/student.json" --out "$tmp/kd" --set "teacher=$teacher" \
    --set 'losses=[{"name": "clip"}, {"name": "fd"}]'
check "cache ls describes them" \
    "teacher embeddings: clip (random init, seed 1) on fashion-mnist/test, 10 samples" clipkd cache ls
check "cache ls counts them" "(2 artifacts, 1 teacher embeddings)" clipkd cache ls
check "cache verify checks them" "^ok .*teacher embeddings: clip" clipkd cache verify
entry=$(echo "$CLIPKD_CACHE"/teacher-embeddings/*.safetensors)
: > "$entry.tmp.4242"
check "cache gc removes an interrupted write" "safetensors.tmp.4242 .*stale partial" clipkd cache gc
check_status "... and only that" 0 "" test -e "$entry"
truncate -s -100 "$entry"
check_status "cache verify names a truncated entry" 1 "^BAD .*$entry: truncated: " clipkd cache verify
touch -d '40 days ago' "$entry"
check "cache gc --older-than --dry-run lists an unused entry" "unused for 40 days" \
    clipkd cache gc --older-than 30 --dry-run
check "cache gc --older-than removes it" "unused for 40 days" clipkd cache gc --older-than 30
check_status "... and it is gone" 1 "" test -e "$entry"

# -- quickstart on tiny recipes: the teacher first, two students per seed,
# the table with mean ± std; a second call reuses every run
qs="$srcdir/tests/fixtures/quickstart/students"
quickstart() {
    env CLIPKD_DATA_DIR="$srcdir/models/clip" "$builddir/clipkd" quickstart "$qs" --runs "$tmp/qs" "$@"
}
check "quickstart --seeds 2 prints the table" "^distilled .* ± " quickstart --seeds 2
cp "$tmp/out" "$tmp/table"
check "... with the teacher" "^teacher " cat "$tmp/table"
check "... over seeds 0 and 1" "over seeds 0-1" cat "$tmp/table"
check "... of two runs per student" "" test -n "$(ls -d "$tmp"/qs/tiny-baseline-* "$tmp"/qs/tiny-distilled-* | sed -n 4p)"
check "quickstart again reuses the runs" "already trained; reusing it" quickstart --seeds 2
check_status "quickstart --seeds 0" 2 "expected 1 to 32, got '0'" quickstart --seeds 0
finish
