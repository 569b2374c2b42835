#!/bin/sh
# Published weights by name and pinned downloads, end to end: clipkd models
# ls/show/fetch over a registry whose mirrors are file:// URLs, a recipe with
# {"pretrained": NAME} that dry-runs, refuses to fetch an unpinned artifact
# (and says how), pins it into RECIPE.lock.json with fetch --pin, then fetches
# and trains against the lock, and refuses the file once it changed. Run by
# `make check`; writes only to a mktemp directory.
set -u
srcdir=${CKD_TEST_SRCDIR:?run this through make check}
builddir=${CKD_TEST_BUILDDIR:?run this through make check}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ckd-models-XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
. "$srcdir/tests/sh-check.sh"

export CLIPKD_PLUGIN_PATH="$builddir/losses/.libs:$builddir/models/.libs"
export CLIPKD_CACHE="$tmp/cache" CLIPKD_DATA_DIR="$srcdir/models/clip"
clipkd() { "$builddir/clipkd" "$@"; }
ckpt=$(cd "$srcdir/tests/fixtures/pytorch-checkpoints" && pwd)
mkdir -p "$tmp/mirror" "$tmp/recipes/cli" "$tmp/recipes/pretrained"
cp "$ckpt/state_dict_legacy.pt" "$tmp/mirror/legacy.pt"
sed -e "s|@CKPT@|$ckpt|g" -e "s|@URL@|file://$tmp/mirror/legacy.pt|g" \
    "$srcdir/tests/fixtures/pretrained/registry.json.in" > "$tmp/registry.json"
cp "$srcdir/tests/fixtures/cli/student.json" "$tmp/recipes/cli/"
cp "$srcdir/tests/fixtures/pretrained/distill.json" "$tmp/recipes/pretrained/"
recipe="$tmp/recipes/pretrained/distill.json"

# -- the shipped registry
check "models --help" "^Usage: clipkd models" clipkd models --help
check "models ls lists the shipped weights" "^laion400m/ViT-B-16 .*prefix 55e67d44" clipkd models ls
check "... with a full hash where one is published" "^openai/ViT-B-32 .* sha256 " clipkd models ls
check "models show prints the entry" '"sha256_prefix": "55e67d44"' clipkd models show laion400m/ViT-B-16
check_status "an unknown name suggests" 2 'did you mean "laion400m/ViT-L-14"' clipkd models show laion400m/ViT-L-41
check_status "an unpinned download needs --pin" 2 "only its first digits, 55e67d44, are published.*--pin" \
    clipkd models fetch laion400m/ViT-B-16 --offline

# -- a registry of our own, over the shipped one
export CLIPKD_PRETRAINED="$tmp/registry.json"
check "CLIPKD_PRETRAINED adds entries" "^test/tiny-prefix .*prefix 19d5780b" clipkd models ls
check "a published hash is fetched as it is" "^ok  test/tiny-full" clipkd models fetch test/tiny-full
check_status "weights that cannot be used yet say why" 2 "a model plugin that does not exist yet" \
    clipkd models fetch test/not-yet
check_status "a wrong prefix is refused" 1 "its SHA-256 is [0-9a-f]*, the published one starts 19d5780b" \
    clipkd models fetch test/tiny-wrong-prefix --pin
check "models fetch --pin prints the hash" "pinned: sha256 19d5780bf938" clipkd models fetch test/tiny-prefix --pin

# -- a recipe naming its teacher by name
check "validate expands pretrained" '"sha256_prefix": "19d5780b"' clipkd validate "$recipe"
check_status "dry run: the teacher is not pinned yet" 2 "no SHA-256 is known.*clipkd fetch --pin RECIPE" \
    clipkd run "$recipe" --dry-run --runs "$tmp/runs"
check_status "fetch without --pin refuses and says how" 2 "clipkd fetch --pin RECIPE" clipkd fetch "$recipe"
check_status "... and wrote no lock" 1 "" test -e "$recipe.lock.json"
check "fetch --pin pins the teacher" "^pin state_dict-19d5780b.pt  sha256 19d5780bf93828a6" clipkd fetch "$recipe" --pin
check "... into RECIPE.lock.json" '"size": 3411371' cat "$recipe.lock.json"
check "later fetches verify against the lock" "^ok  state_dict-19d5780b.pt" clipkd fetch "$recipe"
check "validate shows the pinned hash" '"sha256": "19d5780bf93828a67ca3e7b62863bfb077ed59e3899a4452586d45cb0b23b43a"' \
    clipkd validate "$recipe"
check "the run uses the pinned teacher" "^run dir: " clipkd run "$recipe" --runs "$tmp/runs"

# -- a changed file behind a pinned URL
printf '{"extends": "distill.json", "teacher": {"pretrained": "test/tiny-unpublished"}}\n' \
    > "$tmp/recipes/pretrained/unpub.json"
check "an unpublished hash is pinned on first fetch" "^pin legacy.pt" clipkd fetch "$tmp/recipes/pretrained/unpub.json" --pin
rm -rf "$CLIPKD_CACHE"
printf 'X' | dd of="$tmp/mirror/legacy.pt" bs=1 seek=1000 conv=notrunc 2>/dev/null
check_status "a changed file is refused" 2 "sha256 mismatch: expected b69b4638" clipkd fetch "$tmp/recipes/pretrained/unpub.json"
check_status "... and not cached" 1 "" sh -c '"$0" cache ls | grep legacy.pt' "$builddir/clipkd"
printf 'tampered' >> "$tmp/mirror/legacy.pt"
check_status "a file of another size is refused too" 2 "size mismatch" clipkd fetch "$tmp/recipes/pretrained/unpub.json"
finish
