#!/usr/bin/env bash
# Builds ecto-tunnel_VERSION_ARCH.deb with Debian's own tools (dpkg-shlibdeps, dpkg-gencontrol,
# dpkg-deb) from a binary built with the Swift runtime linked in (`make deb` builds it first).
#
#   scripts/deb.sh --bin BINARY --man PAGE --backtracer SWIFT-BACKTRACE-STATIC [--work DIR] [--out DIR]
#
# Version: from Sources/EctoPlatform/Version.swift (scripts/version.sh); the binary's --version and
# the latest debian/changelog entry must say the same. Depends: computed by dpkg-shlibdeps from the
# ELF files in the package. Files: laid out by scripts/install.sh (the same list as `make install`)
# with --prefix /usr, units in /usr/lib/systemd/user; docs and copyright in /usr/share/doc/ecto-tunnel.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="" man="" backtracer="" work=.build-dist/deb out=.
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --man) man="$2"; shift 2 ;;
        --backtracer) backtracer="$2"; shift 2 ;;
        --work) work="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "deb.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done
fail() { echo "deb.sh: $*" >&2; exit 1; }
[[ -x "$bin" ]] || fail "--bin: $bin is not an executable"
[[ -f "$man" ]] || fail "--man: no man page at $man"
[[ -x "$backtracer" ]] || fail "--backtracer: $backtracer is not an executable (swift-backtrace-static of the toolchain)"

version=$(scripts/version.sh)
binary_version=$("$bin" --version)
[[ "$binary_version" == "$version" ]] \
    || fail "$bin --version says $binary_version, Sources/EctoPlatform/Version.swift says $version: rebuild"
changelog_version=$(dpkg-parsechangelog -l debian/changelog -S Version)
[[ "$changelog_version" == "$version" ]] \
    || fail "debian/changelog's latest entry is $changelog_version, Version.swift says $version: add an entry for $version"
if ldd "$bin" | grep -q 'libswift\|libFoundation'; then
    fail "$bin loads the Swift runtime from the toolchain: build it with --static-swift-stdlib"
fi
arch=$(dpkg --print-architecture)
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l debian/changelog -S Timestamp)
export SOURCE_DATE_EPOCH

rm -rf -- "$work"
stage="$work/ecto-tunnel"
mkdir -p -- "$stage"
umask 022
scripts/install.sh --bin "$bin" --prefix /usr --destdir "$stage" --unitdir /usr/lib/systemd/user \
    --zshdir /usr/share/zsh/vendor-completions --man "$man" --backtracer "$backtracer" --strip >/dev/null

# Documentation: operator docs, compressed when over 4 KiB (as dh_compress does); the changelog
# and the copyright file where Debian policy (and lintian) wants them.
doc="$stage/usr/share/doc/ecto-tunnel"
mkdir -p -- "$doc"
install -m 0644 debian/copyright "$doc/copyright"
gzip -9n -c debian/changelog > "$doc/changelog.gz"
for file in README.md docs/getting-started.md docs/config.md docs/systemd.md docs/troubleshooting.md \
    docs/security.md docs/migrating.md docs/control-protocol.md docs/reliability.md; do
    if [[ $(stat -c %s "$file") -gt 4096 ]]; then
        gzip -9n -c "$file" > "$doc/$(basename "$file").gz"
    else
        install -m 0644 "$file" "$doc/$(basename "$file")"
    fi
done
install -D -m 0644 debian/ecto-tunnel.lintian-overrides "$stage/usr/share/lintian/overrides/ecto-tunnel"

# Control file: Depends from the ELF files, the rest from debian/control and debian/changelog.
mkdir -p -- "$stage/DEBIAN"
elves=("$stage/usr/bin/ecto-tunnel" "$stage/usr/libexec/swift/linux/swift-backtrace")
dpkg-shlibdeps -T"$work/substvars" "${elves[@]/#/-e}" 2> >(grep -v 'binaries to analyze should already be installed' >&2)
dpkg-gencontrol -pecto-tunnel -v"$version" -P"$stage" -T"$work/substvars" -f"$work/files"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"
find "$stage" -type d -exec chmod 0755 {} +

deb="$out/ecto-tunnel_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
