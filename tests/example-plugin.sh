#!/bin/sh
# The out-of-tree plugin kit, checked against the BUILD tree: compiles
# plugins/example/cosine.c and plugins/template.c as a plugin author would
# (public headers only, linked to the just-built libclipkd.so), then runs the
# just-built clipkd on them: `plugins show`, `gradcheck` with and without
# projections. Also checks that the headers a plugin includes do not pull in
# jansson.h (plugins must build without jansson's headers).
#
# Run by `make check` (mk/example.am passes CC, CFLAGS and the directories);
# writes only to a mktemp directory, so it works from a read-only srcdir
# (distcheck). Prints one line per check, then Criterion's totals line so
# that the CI summary counts them; exits 0 when all pass, 1 otherwise.
set -u

srcdir=${CKD_TEST_SRCDIR:?CKD_TEST_SRCDIR is not set (run this through make check)}
builddir=${CKD_TEST_BUILDDIR:?CKD_TEST_BUILDDIR is not set (run this through make check)}
CC=${CC:-cc}
CFLAGS=${CFLAGS:-}
WARN_CFLAGS=${CKD_WARN_CFLAGS:-}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ckd-example-XXXXXX") || { echo "cannot create a temporary directory"; exit 99; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

. "$srcdir/tests/sh-check.sh"

# A plugin: public headers, the build tree's library, warnings are errors.
build() {
    "$CC" $CFLAGS $WARN_CFLAGS -Werror -fPIC -fvisibility=hidden -shared -I"$srcdir/host/include" -o "$1" "$2" \
        -L"$builddir/.libs" -lclipkd
}

# Every header a plugin may include, preprocessed with only clipkd's include
# directory: the dependency list must not name jansson.h.
no_jansson() {
    printf '#include <clipkd/clipkd.h>\n#include <clipkd/plugin.h>\n' > "$tmp/headers.c"
    "$CC" -M -I"$srcdir/host/include" "$tmp/headers.c" > "$tmp/deps" || return 1
    cat "$tmp/deps"
    ! grep -q 'jansson' "$tmp/deps"
}

clipkd() {
    CLIPKD_PLUGIN_PATH=$tmp "$builddir/clipkd" "$@"
}

check "plugin headers without jansson" "" no_jansson
check "build cosine.so" "" build "$tmp/cosine.so" "$srcdir/plugins/example/cosine.c"
check "build template as my_loss.so" "" build "$tmp/my_loss.so" "$srcdir/plugins/template.c"
check "plugins show cosine" "^cosine (loss plugin" clipkd plugins show cosine
check "gradcheck cosine" "^PASS$" clipkd gradcheck cosine
check "gradcheck cosine, equal widths" "^PASS$" clipkd gradcheck cosine --s-dim 24
check "gradcheck cosine, weight_txt=0" "^PASS$" clipkd gradcheck cosine --set weight_txt=0
check "gradcheck cosine, weight_txt=0.5" "^PASS$" clipkd gradcheck cosine --set weight_txt=0.5
check "gradcheck my_loss (template)" "^PASS$" clipkd gradcheck my_loss

finish
