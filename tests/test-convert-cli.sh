#!/bin/sh
# clipkd convert end to end: every PyTorch checkpoint fixture becomes the
# expected safetensors file, the pickle that would run a command is refused
# with status 2 and runs nothing, damaged files are refused without leaving
# output, and a model directory holding a .bin is used as it is. Run by
# `make check`; writes only to a mktemp directory.
set -u
srcdir=${CKD_TEST_SRCDIR:?run this through make check}
builddir=${CKD_TEST_BUILDDIR:?run this through make check}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ckd-convert-XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
. "$srcdir/tests/sh-check.sh"

export CLIPKD_PLUGIN_PATH="$builddir/losses/.libs:$builddir/models/.libs"
export CLIPKD_CACHE="$tmp/cache" CLIPKD_DATA_DIR="$srcdir/models/clip"
clipkd() { "$builddir/clipkd" "$@"; }
pt="$srcdir/tests/fixtures/pytorch-checkpoints"
tiny="$srcdir/tests/fixtures/hf-clip/tiny-clip-quickgelu"

check "convert --help" "^Usage: clipkd convert" clipkd convert --help
check "convert a ZIP checkpoint" "pytorch-zip, 62 tensors (62 F32)" clipkd convert "$pt/state_dict.pt" "$tmp/a.safetensors"
check "convert a legacy checkpoint" "pytorch-legacy, 62 tensors" clipkd convert "$pt/state_dict_legacy.pt" "$tmp/b.safetensors"
check "convert a training checkpoint names what it skipped" "skipped.*optimizer (dict)" \
    clipkd convert "$pt/training_checkpoint.pt" "$tmp/c.safetensors"
check "... and the prefix it removed" "prefix 'module.' removed" clipkd convert "$pt/training_checkpoint.pt" "$tmp/c.safetensors"
check "convert keeps dtypes" "1 F16, 1 BF16, 1 I64" clipkd convert "$pt/views.pt" "$tmp/v.safetensors"
# The converted tensors are OpenCLIP's weights: embedding with the converted
# file in a model directory gives what the safetensors fixture gives.
mkdir -p "$tmp/m-st" "$tmp/m-pt" "$tmp/m-bin"
cp "$tiny/config.json" "$tmp/m-st/" && cp "$tiny/config.json" "$tmp/m-pt/" && cp "$tiny/config.json" "$tmp/m-bin/"
cp "$tmp/c.safetensors" "$tmp/m-st/open_clip_model.safetensors"
cp "$tiny/open_clip_model.safetensors" "$tmp/m-pt/open_clip_model.safetensors"
cp "$pt/training_checkpoint.pt" "$tmp/m-bin/open_clip_pytorch_model.bin"
for d in m-st m-pt m-bin; do
    clipkd embed "$tmp/$d" --text "a photo of a cat" --out "$tmp/$d.safetensors" > "$tmp/$d.log" 2>&1
done
check "the converted file embeds like the original" "" cmp "$tmp/m-st.safetensors" "$tmp/m-pt.safetensors"
check "a model directory may hold open_clip_pytorch_model.bin" "" cmp "$tmp/m-bin.safetensors" "$tmp/m-pt.safetensors"

rm -f /tmp/clipkd-pickle-pwned
check_status "a malicious pickle is refused" 2 "refusing global 'posix.system'" \
    clipkd convert "$pt/malicious.pt" "$tmp/evil.safetensors"
check_status "... its command did not run" 1 "" test -e /tmp/clipkd-pickle-pwned
check_status "... and nothing was written" 1 "" test -e "$tmp/evil.safetensors"
head -c 100000 "$pt/state_dict.pt" > "$tmp/cut.pt"
check_status "a truncated checkpoint is refused" 2 "cut.pt: no ZIP end-of-central-directory record" \
    clipkd convert "$tmp/cut.pt" "$tmp/cut.safetensors"
check_status "... without output" 1 "" test -e "$tmp/cut.safetensors"
check_status "--key names a missing entry" 2 "has no key 'weights' (top-level keys: 'epoch', 'name', 'state_dict', 'optimizer')" \
    clipkd convert "$pt/training_checkpoint.pt" "$tmp/k.safetensors" --key weights
check_status "convert wants two files" 2 "expected IN and OUT" clipkd convert "$pt/views.pt"
finish
