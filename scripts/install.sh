#!/usr/bin/env bash
# Lays out an ecto-tunnel installation: `make install` / `make uninstall` call it, and `make deb`
# fills the package's tree with it (--prefix /usr --destdir STAGE). One list of files for both.
#
#   scripts/install.sh --bin BINARY [--prefix P] [--destdir D] [--unitdir DIR] [--zshdir DIR]
#                      [--man PAGE] [--backtracer PATH] [--strip] [--uninstall]
#
#   --bin PATH         the ecto-tunnel binary to install (it also renders the units and completions)
#   --prefix P         where it will live (default /usr/local); ExecStart= is P/bin/ecto-tunnel
#   --destdir D        staging root: files go to D/P/... (default: none)
#   --unitdir DIR      systemd user units (default P/share/systemd/user, which a user manager
#                      searches for P = /usr/local, /usr and ~/.local; the package uses /usr/lib/systemd/user)
#   --zshdir DIR       zsh completion directory (default P/share/zsh/site-functions)
#   --man PAGE         the man page (ecto-tunnel.1) to install gzipped; skipped when not given
#   --backtracer PATH  swift-backtrace-static, installed as P/libexec/swift/linux/swift-backtrace,
#                      where a binary with the Swift runtime linked in looks for its crash
#                      backtracer (docs/performance.md, "Memory")
#   --strip            strip the debug info (DWARF) from the binary but keep its symbol table,
#                      so that crash and watchdog backtraces still name every function; strip
#                      the backtracer fully
#   --uninstall        remove what an install with the same options put there
#
# Installed: P/bin/ecto-tunnel; UNITDIR/ecto-tunnel.service, ecto-tunnel@.service (rendered by
# `ecto-tunnel unit-file`, ExecStart=P/bin/ecto-tunnel); P/share/man/man1/ecto-tunnel.1.gz;
# P/share/bash-completion/completions/ecto-tunnel; ZSHDIR/_ecto-tunnel;
# P/share/fish/vendor_completions.d/ecto-tunnel.fish; P/libexec/swift/linux/swift-backtrace.
set -euo pipefail

bin="" prefix=/usr/local destdir="" unitdir="" zshdir="" man="" backtracer="" strip=0 uninstall=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --prefix) prefix="$2"; shift 2 ;;
        --destdir) destdir="$2"; shift 2 ;;
        --unitdir) unitdir="$2"; shift 2 ;;
        --zshdir) zshdir="$2"; shift 2 ;;
        --man) man="$2"; shift 2 ;;
        --backtracer) backtracer="$2"; shift 2 ;;
        --strip) strip=1; shift ;;
        --uninstall) uninstall=1; shift ;;
        -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done
fail() { echo "install.sh: $*" >&2; exit 1; }
[[ "$prefix" == /* ]] || fail "--prefix must be absolute, got '$prefix'"
prefix="${prefix%/}"
unitdir="${unitdir:-$prefix/share/systemd/user}"
zshdir="${zshdir:-$prefix/share/zsh/site-functions}"

files=(
    "$prefix/bin/ecto-tunnel"
    "$unitdir/ecto-tunnel.service"
    "$unitdir/ecto-tunnel@.service"
    "$prefix/share/bash-completion/completions/ecto-tunnel"
    "$zshdir/_ecto-tunnel"
    "$prefix/share/fish/vendor_completions.d/ecto-tunnel.fish"
    "$prefix/share/man/man1/ecto-tunnel.1.gz"
    "$prefix/libexec/swift/linux/swift-backtrace"
)

if [[ $uninstall -eq 1 ]]; then
    for file in "${files[@]}"; do
        if [[ -e "$destdir$file" ]]; then rm -f -- "$destdir$file"; echo "removed $destdir$file"; fi
    done
    # Only the directories that hold nothing but ours.
    for directory in "$prefix/libexec/swift/linux" "$prefix/libexec/swift" "$prefix/share/fish/vendor_completions.d"; do
        rmdir --ignore-fail-on-non-empty -- "$destdir$directory" 2>/dev/null || true
    done
    exit 0
fi

[[ -n "$bin" ]] || fail "--bin BINARY is required (make install builds it)"
[[ -x "$bin" ]] || fail "$bin is not an executable (run make build first)"

put() {  # mode source destination
    install -D -m "$1" -- "$2" "$destdir$3"
    echo "installed $destdir$3"
}
generated() {  # destination command...
    local destination="$destdir$1"
    shift
    mkdir -p -- "$(dirname "$destination")"
    "$@" > "$destination.tmp"
    chmod 0644 "$destination.tmp"
    mv -- "$destination.tmp" "$destination"
    echo "installed $destination"
}

put 0755 "$bin" "$prefix/bin/ecto-tunnel"
[[ $strip -eq 0 ]] || strip --strip-debug --remove-section=.comment -- "$destdir$prefix/bin/ecto-tunnel"
for unit in ecto-tunnel.service ecto-tunnel@.service; do
    generated "$unitdir/$unit" "$bin" unit-file "$unit" --exec "$prefix/bin/ecto-tunnel"
done
# bash-completion sources the file: no #! line (lintian: bash-completion-with-hashbang).
generated "$prefix/share/bash-completion/completions/ecto-tunnel" \
    bash -c '"$1" --generate-completion-script bash | sed "1{/^#!/d}"' - "$bin"
generated "$zshdir/_ecto-tunnel" "$bin" --generate-completion-script zsh
generated "$prefix/share/fish/vendor_completions.d/ecto-tunnel.fish" "$bin" --generate-completion-script fish
if [[ -n "$man" ]]; then
    # generate-manual leaves blank lines between paragraphs, which mdoc warns about: .Pp instead.
    generated "$prefix/share/man/man1/ecto-tunnel.1.gz" bash -c 'sed "s/^\$/.Pp/" "$1" | gzip -9n -c' - "$man"
fi
if [[ -n "$backtracer" ]]; then
    put 0755 "$backtracer" "$prefix/libexec/swift/linux/swift-backtrace"
    [[ $strip -eq 0 ]] || strip --remove-section=.comment -- "$destdir$prefix/libexec/swift/linux/swift-backtrace"
fi
