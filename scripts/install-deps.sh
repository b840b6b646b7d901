#!/usr/bin/env bash
# Installs what ecto-tunnel's build, tests and demo need on Debian 12 (bookworm). Idempotent: when
# everything is present it does nothing and needs no root. Works as root, or through sudo.
# Quiet unless something fails. It never downloads a Swift toolchain: it only checks for one.
set -euo pipefail

packages=(
    libssh2-1-dev pkg-config          # build: the CLibSSH2 system library (found by pkg-config)
    libssl-dev                        # build: the CLibCrypto system library (OpenSSL 3 libcrypto: user keys)
    git ca-certificates make          # build: SwiftPM fetches its dependencies with git over https
    gcc libc6-dev libstdc++-12-dev    # build: what the Swift toolchain links against
    tzdata
    openssh-server openssh-client     # tests and demo: a real sshd, ssh, ssh-keygen, ssh-agent, ssh-add
    dropbear-bin                      # tests: a second SSH server (accepts RSA user keys as ssh-rsa only)
    socat curl python3                # demo and test helpers
    python3-pip                       # the metrics test's parser (prometheus-client, below)
    iptables iproute2                 # fault tests: network namespaces, DROP/REJECT rules, tc
    procps psmisc lsof                # pgrep/pkill, fuser/killall, lsof
    util-linux                        # unshare, nsenter, setpriv
    passwd                            # useradd/usermod: the systemd --user tests run as user ectotest-sd
    systemd                           # `ecto-tunnel install` unit checks and the systemd --user tests
    dpkg-dev lintian                  # make deb: dpkg-shlibdeps computes Depends:, lintian checks the .deb
)

fail() {
    echo "install-deps: $*" >&2
    exit 1
}

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$package")
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        fail "need root (or sudo) to install: ${missing[*]}"
    fi
    log=$(mktemp /tmp/install-deps.XXXXXX)
    trap 'rm -f "$log"' EXIT
    export DEBIAN_FRONTEND=noninteractive
    if ! "${as_root[@]}" apt-get update -q >"$log" 2>&1; then
        cat "$log" >&2
        fail "apt-get update failed"
    fi
    if ! "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
        cat "$log" >&2
        fail "apt-get install failed for: ${missing[*]}"
    fi
fi

# The metrics test parses GET /v1/metrics with the real Prometheus text parser (prometheus_client
# from PyPI), in whichever python3 is first on PATH (Debian's, or a pyenv one).
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
    pip_log=$(mktemp /tmp/install-deps-pip.XXXXXX)
    if ! python3 -m pip install --quiet prometheus-client >"$pip_log" 2>&1 \
        && ! python3 -m pip install --quiet --user --break-system-packages prometheus-client >>"$pip_log" 2>&1; then
        cat "$pip_log" >&2
        rm -f "$pip_log"
        fail "cannot install the Python package prometheus-client (pip install prometheus-client)"
    fi
    rm -f "$pip_log"
fi

# The Swift toolchain is not a Debian package: it must already be on PATH or in /opt/swift.
if ! command -v swift >/dev/null 2>&1 && [ ! -x /opt/swift/usr/bin/swift ]; then
    fail "no Swift toolchain: put swift on PATH or unpack Swift 6 into /opt/swift (so that
/opt/swift/usr/bin/swift exists); see https://www.swift.org/install/linux/"
fi
