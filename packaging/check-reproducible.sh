#!/bin/sh
# Is the build reproducible? Builds clipkd twice from the same tarball (make
# dist) in two directories of different names and depths, under different
# umasks, time zones and locales, installs each into its own DESTDIR (same
# prefix) and compares the installed trees: the same files, byte for byte,
# with the same permissions.
#
#   packaging/check-reproducible.sh TARBALL      (make check-reproducible runs this)
#
# As distributions do (dpkg-buildflags, rpm's macros), the compiler is told to
# record source paths relative to the build (-ffile-prefix-map); without it
# the debug information names the build directory and could not match.
set -eu
tarball=${1:?usage: check-reproducible.sh TARBALL}
tarball=$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")
base=$(basename "$tarball" .tar.gz)
work=$(mktemp -d "${TMPDIR:-/tmp}/clipkd-repro-XXXXXX")
trap 'rm -rf "$work"' EXIT
jobs=$(nproc 2>/dev/null || echo 2)

# build NAME DIR UMASK TZ LOCALE: unpack into DIR, configure, make, install
# into $work/NAME-root.
build() {
    name=$1 dir=$2 mask=$3 tz=$4 loc=$5
    mkdir -p "$dir"
    (
        umask "$mask"
        export TZ="$tz" LC_ALL="$loc"
        cd "$dir"
        tar -xzf "$tarball"
        cd "$base"
        src=$(pwd)
        ./configure -q --prefix=/usr CFLAGS="-g -O2 -ffile-prefix-map=$src=." > ../configure.log 2>&1
        make -s -j"$jobs" > ../make.log 2>&1
        make -s install DESTDIR="$work/$name-root" > ../install.log 2>&1
    ) || { echo "check-reproducible: build $name failed; logs in $dir" >&2; tail -20 "$dir"/*.log >&2; exit 1; }
    echo "built $name in $dir (umask $mask, TZ=$tz, LC_ALL=$loc)"
}

build first "$work/a" 0022 UTC C.UTF-8
build second "$work/build-two/deeper/path" 0002 Pacific/Kiritimati C

# Every file and link with its permissions, then each file's checksum.
manifest() {
    (cd "$1" && find . \( -type f -o -type l \) -printf '%M %p\n' | sort)
}
manifest "$work/first-root" > "$work/first.list"
manifest "$work/second-root" > "$work/second.list"
if ! diff "$work/first.list" "$work/second.list"; then
    echo "check-reproducible: the two installs differ in files or permissions (above)" >&2
    exit 1
fi
n=0 bad=0
while read -r mode path; do
    case $mode in l*) continue ;; esac
    n=$((n + 1))
    if ! cmp -s "$work/first-root/$path" "$work/second-root/$path"; then
        echo "differs: $path"
        bad=$((bad + 1))
    fi
done < "$work/first.list"
if [ "$bad" -ne 0 ]; then
    echo "check-reproducible: $bad of $n installed files differ" >&2
    exit 1
fi
echo "reproducible: $n installed files identical byte for byte (and in permissions)"
