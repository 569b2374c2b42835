#!/bin/sh
# Builds clipkd's Debian packages the way a distribution would: from the
# upstream tarball (make dist) as clipkd_VERSION.orig.tar.gz, with
# packaging/debian copied in as debian/, by dpkg-buildpackage (source and
# binaries, the test suite included unless DEB_BUILD_OPTIONS has nocheck),
# then checks them with lintian --pedantic, failing on any error or warning
# tag that is not overridden in debian/*.lintian-overrides.
#
#   packaging/build-deb.sh TARBALL [OUTDIR]        (make deb runs this)
#   packaging/build-deb.sh                          (from a fresh clone: makes the tarball first)
#
# OUTDIR (default: debs/) receives the .debs, the .dsc, the tarballs, the
# .changes, the build log and lintian's report. Needs: dpkg-dev, debhelper,
# fakeroot, lintian and the Build-Depends of debian/control.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dist= work=
trap 'rm -rf "$dist" "$work"' EXIT
if [ $# -eq 0 ]; then
    # No tarball: make one as a release would (autoreconf in a git checkout,
    # then configure and make dist in a scratch build directory).
    src=$(cd "$here/.." && pwd)
    [ -x "$src/configure" ] || (cd "$src" && autoreconf -i)
    dist=$(mktemp -d "${TMPDIR:-/tmp}/clipkd-dist-XXXXXX")
    echo "== make dist (in $dist)"
    (cd "$dist" && "$src/configure" -q && make -s dist) > "$dist/dist.log" 2>&1 ||
        { tail -30 "$dist/dist.log"; echo "build-deb.sh: make dist failed" >&2; exit 1; }
    set -- "$(ls "$dist"/clipkd-*.tar.gz)" "$src/debs"
fi
tarball=${1:?usage: build-deb.sh [TARBALL [OUTDIR]]}
out=${2:-debs}
tarball=$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")
[ -f "$tarball" ] || { echo "build-deb.sh: no tarball $tarball" >&2; exit 2; }

base=$(basename "$tarball" .tar.gz)            # clipkd-0.1.0
version=${base#clipkd-}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/clipkd-deb-XXXXXX")

cp "$tarball" "$work/clipkd_$version.orig.tar.gz"
tar -C "$work" -xzf "$tarball"
cp -r "$here/debian" "$work/$base/debian"
upstream_in_changelog=$(dpkg-parsechangelog -l "$work/$base/debian/changelog" -S Version | sed 's/-[^-]*$//')
if [ "$upstream_in_changelog" != "$version" ]; then
    echo "build-deb.sh: debian/changelog is for $upstream_in_changelog, the tarball is $version" >&2
    exit 2
fi

echo "== dpkg-buildpackage ($base, DEB_BUILD_OPTIONS='${DEB_BUILD_OPTIONS:-}')"
if ! (cd "$work/$base" && dpkg-buildpackage -us -uc) > "$work/build.log" 2>&1; then
    tail -80 "$work/build.log"
    cp "$work/build.log" "$out/"
    echo "build-deb.sh: dpkg-buildpackage failed (log: $out/build.log)" >&2
    exit 1
fi
grep -E '^# (TOTAL|PASS|SKIP|FAIL|ERROR):' "$work/build.log" | tr '\n' ' '; echo
for f in "$work"/*.deb "$work"/*.dsc "$work"/*.tar.* "$work"/*.changes "$work"/*.buildinfo "$work/build.log"; do
    cp "$f" "$out/"
done
changes=$(ls "$out"/clipkd_"$version"-*_*.changes | head -n 1)

echo "== lintian --pedantic -I $(basename "$changes")"
status=0
lintian --pedantic -I --fail-on error,warning "$changes" > "$out/lintian.txt" 2>&1 || status=$?
cat "$out/lintian.txt"
if [ "$status" -ne 0 ]; then
    echo "build-deb.sh: lintian found errors or warnings" >&2
    exit 1
fi
echo "lintian: no errors or warnings"
ls -1 "$out"/*.deb
