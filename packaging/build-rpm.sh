#!/bin/sh
# Builds the RPMs of packaging/rpm/clipkd.spec from the upstream tarball
# (make dist), as a Fedora or openSUSE packager would start:
#
#   packaging/build-rpm.sh TARBALL [OUTDIR] [RPMBUILD OPTIONS...]   (make rpm runs this)
#
# On a system without the RPM build dependencies installed as RPMs (Debian:
# the rpm package provides rpmbuild) pass --nodeps; the libraries come from
# the system then. OUTDIR (default: rpms/) receives the .rpm files and the log.
set -eu
tarball=${1:?usage: build-rpm.sh TARBALL [OUTDIR] [RPMBUILD OPTIONS...]}
out=${2:-rpms}
shift; [ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")" && pwd)
tarball=$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")
spec=$here/rpm/clipkd.spec
version=$(basename "$tarball" .tar.gz); version=${version#clipkd-}
specversion=$(sed -n 's/^Version:[[:space:]]*//p' "$spec")
if [ "$specversion" != "$version" ]; then
    echo "build-rpm.sh: clipkd.spec is for $specversion, the tarball is $version" >&2
    exit 2
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
top=$(mktemp -d "${TMPDIR:-/tmp}/clipkd-rpm-XXXXXX")
trap 'rm -rf "$top"' EXIT
echo "== rpmbuild -bb $* ($(basename "$tarball"))"
if ! rpmbuild -bb "$@" --define "_topdir $top" --define "_sourcedir $(dirname "$tarball")" \
        "$spec" > "$out/rpmbuild.log" 2>&1; then
    tail -60 "$out/rpmbuild.log"
    echo "build-rpm.sh: rpmbuild failed (log: $out/rpmbuild.log)" >&2
    exit 1
fi
grep -E '^# (TOTAL|PASS|SKIP|FAIL|ERROR):' "$out/rpmbuild.log" | tr '\n' ' '; echo
find "$top/RPMS" -name '*.rpm' -exec cp {} "$out/" \;
for r in "$out"/*.rpm; do
    echo "$(basename "$r"): $(rpm -qlp "$r" 2>/dev/null | wc -l) files"
done
