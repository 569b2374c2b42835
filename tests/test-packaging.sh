#!/bin/sh
# What packagers rely on: every built plugin exports exactly one symbol, its
# entry point (ckd_plugin_entry; clipkd/plugin.h); clipkd.pc tells plugin
# authors where plugins go (plugindir, versioned by the plugin ABI) and that
# the headers need jansson; the README's list of Debian build dependencies
# is quickstart.sh's (which .ci/run uses). Run by `make check`.
set -u
builddir=${CKD_TEST_BUILDDIR:?run this through make check}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ckd-syms-XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
srcdir=${CKD_TEST_SRCDIR:?run this through make check}
. "$srcdir/tests/sh-check.sh"

# Prints the dynamic symbols a shared object defines (minus the linker's
# own); succeeds when that is ckd_plugin_entry alone.
only_entry() {
    syms=$(nm -D --defined-only "$1" | awk '{print $NF}' |
        grep -v -x -e _init -e _fini -e _edata -e _end -e __bss_start)
    echo "$syms"
    [ "$syms" = ckd_plugin_entry ]
}

n=0
for so in "$builddir"/models/.libs/*.so "$builddir"/losses/.libs/*.so; do
    [ -f "$so" ] || continue
    n=$((n + 1))
    check "$(basename "$so") exports only ckd_plugin_entry" "" only_entry "$so"
done
check "plugins were found" "" test "$n" -ge 14
check "clipkd.pc: plugindir is versioned by the plugin ABI" "^plugindir=.*/clipkd/plugins-1$" cat "$builddir/clipkd.pc"
check "clipkd.pc: the headers' jansson is required" "^Requires: jansson" cat "$builddir/clipkd.pc"
check "clipkd.pc: the home page (AC_INIT's URL)" "^URL: https://" cat "$builddir/clipkd.pc"
check "clipkd --help: where to report bugs" "^Report bugs: https://" "$builddir/clipkd" --help
# The package names in quickstart.sh's PACKAGES and in the README's
# indented list under "Dependencies, as Debian 12 packages", sorted, one per line.
packages_quickstart() {
    sed -n '/^PACKAGES="/,/"$/p' "$srcdir/quickstart.sh" | tr -d '"' | sed 's/^PACKAGES=//' | tr ' ' '\n' |
        grep . | sort
}
packages_readme() {
    sed -n '/^Dependencies, as Debian 12 packages/,/^[^ ]/p' "$srcdir/README.md" | grep '^    ' | tr ' ' '\n' |
        grep . | sort
}
packages_quickstart > "$tmp/quickstart"
packages_readme > "$tmp/readme"
check "the README lists quickstart.sh's Debian packages, no more, no less" "" diff "$tmp/quickstart" "$tmp/readme"
# debian/control's Build-Depends are the same packages, less the tool chain
# that debhelper brings (autotools, through dh-autoreconf) or Debian assumes.
build_depends() {
    sed -n '/^Build-Depends:/,/^[A-Z]/p' "$srcdir/packaging/debian/control" | sed 's/^Build-Depends://' |
        grep -v '^[A-Z]' | tr ',' '\n' | sed 's/[<(].*//; s/[[:space:]]//g' | grep . | grep -v -x debhelper-compat | sort
}
grep -v -x -e build-essential -e autoconf -e automake -e libtool "$tmp/quickstart" > "$tmp/quickstart-libs"
build_depends > "$tmp/build-depends"
check "packaging/debian/control's Build-Depends are quickstart.sh's packages (less the tool chain)" "" \
    diff "$tmp/quickstart-libs" "$tmp/build-depends"

# The library's exported symbols are the ones packaging/debian/libclipkd0.symbols
# lists: the Debian build (dh_makeshlibs -- -c4) fails on any difference, and
# this says so before a package is built. A new function gets a line
# " ckd_name@Base VERSION" with the upcoming release's version.
exports_library() {
    nm -D --defined-only "$builddir/.libs/libclipkd.so" | awk '{print $NF}' | grep '^ckd_' | sort
}
exports_symbols_file() {
    sed -n 's/^ \(ckd_[A-Za-z0-9_]*\)@Base .*/\1/p' "$srcdir/packaging/debian/libclipkd0.symbols" | sort
}
exports_library > "$tmp/lib-exports"
exports_symbols_file > "$tmp/symbols-file"
check "libclipkd exports ckd_ symbols" "" test -s "$tmp/lib-exports"
check "packaging/debian/libclipkd0.symbols lists exactly libclipkd's exports (< only in the library, > only in the file)" "" \
    diff "$tmp/lib-exports" "$tmp/symbols-file"
finish
