#!/bin/sh
# The BLIS kernel set chosen by measurement, through `clipkd info`: timed in
# an empty cache, the figures kept and read back, the rule (fastest, BLIS's
# own choice kept within 2%) applied to figures written here, a damaged
# figures file named and replaced, and the user's overrides (BLIS_ARCH_TYPE,
# CLIPKD_KERNELS). The rest of make check runs with CLIPKD_KERNELS=blis, so
# this is the test of the default path. No timing is asserted: only which
# set the figures make clipkd choose.
set -u
srcdir=${CKD_TEST_SRCDIR:?run this through make check}
builddir=${CKD_TEST_BUILDDIR:?run this through make check}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ckd-kernels-XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
. "$srcdir/tests/sh-check.sh"

unset CLIPKD_KERNELS BLIS_ARCH_TYPE
export CLIPKD_CACHE="$tmp/cache"
clipkd() { "$builddir/clipkd" "$@"; }
field() { sed -n "s/^$1: *//p" "$tmp/info"; }

clipkd info > "$tmp/info" 2>&1 || { cat "$tmp/info"; exit 1; }
cat "$tmp/info"
own=$(field "BLIS alone")
if ! grep -q '^timed:' "$tmp/info"; then
    # One kernel set for this CPU's instructions (not x86, or no AVX2): nothing to choose.
    check "one candidate: nothing timed" "nothing else to time\|only kernel set" clipkd info
    finish
    exit
fi
file=$(echo "$CLIPKD_CACHE"/kernels/*.json)
names=$(sed -n 's/^timed: *//; s/ GFLOP.*//p' "$tmp/info" | tr ',' '\n' | awk '$2 != "(cannot" {print $1}')
other=$(echo "$names" | grep -vx "$own" | head -1)
echo "BLIS's own choice: $own; another candidate: $other; figures: $file"

check "an empty cache: the candidates are timed" "^timing: *measured now in .* kept in $file" cat "$tmp/info"
check "the figures are kept as JSON" '"gflops": {' cat "$file"
check "the second process reads them" "^timing: *figures kept in $file" clipkd info
check "and makes the same choice" "^kernels: *$(field kernels | cut -d" " -f1) " clipkd info

# figures NAME=GFLOPS...: a kept file with these figures (0 for the rest).
figures() {
    {
        printf '{"cpu": "test", "gflops": {'
        sep=
        for n in $names; do
            v=0
            for kv; do [ "${kv%%=*}" = "$n" ] && v=${kv#*=}; done
            printf '%s"%s": %s' "$sep" "$n" "$v"
            sep=', '
        done
        printf '}}\n'
    } > "$file"
}
if [ -n "$other" ]; then
    figures "$own=50" "$other=80"
    check "a set 60% faster than BLIS's choice is chosen" "^kernels: *$other (the fastest" clipkd info
    figures "$own=50" "$other=50.9"
    check "BLIS's choice is kept within 2%" "^kernels: *$own (the fastest.*BLIS's own choice" clipkd info
    figures "$own=0" "$other=10"
    check "a set that cannot run is shown so and not chosen" "$own (cannot run)" clipkd info
    check "  ... the one that ran is" "^kernels: *$other " clipkd info
    check "CLIPKD_KERNELS names a set" "^kernels: *$other (CLIPKD_KERNELS=$other set by the user)" \
        env CLIPKD_KERNELS="$other" "$builddir/clipkd" info
fi

printf '{"gflops": {' > "$file"
check "a damaged figures file is named, with the place" "$file: line 1, column .*timing the kernel sets again" \
    clipkd info
check "  ... and measured again" '"gflops": {' cat "$file"
printf '{"gflops": {"%s": "fast"}}\n' "$own" > "$file"
check "a figure that is not a number is named" "\"gflops\".\"$own\": expected a number" clipkd info

check "CLIPKD_KERNELS=blis: BLIS's choice, untimed" "^kernels: *$own (BLIS's own choice (CLIPKD_KERNELS=blis" \
    env CLIPKD_KERNELS=blis "$builddir/clipkd" info
check "an unknown CLIPKD_KERNELS is refused with the candidates" "CLIPKD_KERNELS=pentium4: not a kernel set.*($own" \
    env CLIPKD_KERNELS=pentium4 "$builddir/clipkd" info
check "BLIS_ARCH_TYPE wins" "set by the user" env BLIS_ARCH_TYPE=0 CLIPKD_KERNELS=blis "$builddir/clipkd" info
: > "$tmp/not-a-dir"
check "a cache that cannot be written: timed, not kept" "^timing: *measured now .*not kept" \
    env CLIPKD_CACHE="$tmp/not-a-dir/cache" "$builddir/clipkd" info
check "the cache commands accept the kernels folder" "" clipkd cache verify
finish
